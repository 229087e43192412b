"""GET /healthz (the process answers), /readyz (indexes open, models warm), /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dinosearch.serve.deps import ServiceDep, require_key
from dinosearch.serve.models import Health, Ready

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready}})
async def readyz(service: ServiceDep) -> JSONResponse:
    live = service.registry.snapshots
    ready = bool(live) and service.warm
    body = Ready(
        ready=ready,
        indexes={n: s.version for n, s in live.items()},
        models_warm=service.warm,
        problems={n: "cannot be opened" for n in service.registry.problems},
    )
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", dependencies=[Depends(require_key)], response_class=Response)
async def metrics(service: ServiceDep) -> Response:
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
