"""POST /v1/explain: why an indexed result is similar to the query, as a PNG figure or JSON."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from PIL import Image
from starlette.concurrency import run_in_threadpool

from dinosearch.serve.deps import ServiceDep
from dinosearch.serve.errors import ApiError
from dinosearch.serve.models import ErrorBody, ExplainParams, ExplainResponse
from dinosearch.serve.service import Service, png_bytes
from dinosearch.serve.uploads import read_request

router = APIRouter(tags=["explain"])
_ERRORS = {c: {"model": ErrorBody} for c in (401, 403, 404, 409, 413, 415, 422)}
_PNG = {200: {"content": {"image/png": {}}, "description": "the figure, with format=png"}}


@router.post("/explain", response_model=ExplainResponse, responses={**_ERRORS, **_PNG})  # type: ignore[dict-item]
async def explain(request: Request, service: ServiceDep) -> Any:
    """Per-patch map of (query, result) in the result index's space; JSON or ``format=png``."""
    limit = int(service.config.max_upload_mb * 2**20)
    params, upload = await read_request(request, ExplainParams, limit)
    snap = service.snapshot(params.result.index)
    service.item_row(snap, params.result)  # 404/409 before any work
    query = await service.query_image(params.item, params.sop_instance_uid, upload)
    result = await run_in_threadpool(service.item_image, params.result)
    explained = await run_in_threadpool(_explain, service, params, query, result)
    if params.format == "png":
        from dinosearch.explain.draw import figure

        title = f"{snap.name} {snap.version} row {params.result.row}"
        data = await run_in_threadpool(lambda: png_bytes(figure(explained, title)))
        return Response(data, media_type="image/png")
    return ExplainResponse(index=snap.name, version=snap.version, explanation=explained.to_json())


def _explain(
    service: Service, params: ExplainParams, query: Image.Image, result: Image.Image
) -> Any:
    from dinosearch.explain import Explainer, TokenCache

    snap = service.snapshot(params.result.index)
    if service.tokens is None:
        service.tokens = TokenCache()
    explainer = Explainer(snap.model.backbone, snap.embedder.adapter, cache=service.tokens)
    try:
        with snap.model.lock:
            return explainer.explain(
                query, result, method=params.method, steps=params.steps, matches=params.matches
            )
    except ValueError as e:
        raise ApiError(422, str(e)) from e
