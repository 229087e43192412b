"""POST /v1/search: an upload, an indexed item or an archive UID → top-k of each index asked for."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from dinosearch.serve.deps import ServiceDep
from dinosearch.serve.errors import ApiError
from dinosearch.serve.models import ErrorBody, SearchParams, SearchResponse
from dinosearch.serve.uploads import read_request

router = APIRouter(tags=["search"])
_FORM = {
    "requestBody": {
        "content": {
            "application/json": {"schema": SearchParams.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "params": {"type": "string", "description": "SearchParams as JSON"},
                    },
                }
            },
        }
    }
}
_ERRORS = {c: {"model": ErrorBody} for c in (401, 403, 404, 409, 413, 415, 422, 503)}


@router.post("/search", response_model=SearchResponse, openapi_extra=_FORM, responses=_ERRORS)  # type: ignore[arg-type]
async def search(request: Request, service: ServiceDep) -> Response:
    """Top-k of each index for one query image (upload PNG/JPEG/16-bit PNG/DICOM as ``file``)."""
    config = service.config
    params, upload = await read_request(request, SearchParams, int(config.max_upload_mb * 2**20))
    if params.k > config.max_k:
        raise ApiError(422, f"k: {params.k} is over this server's limit of {config.max_k}")
    if service.registry.due():  # a look at the folders only every --refresh-s
        await run_in_threadpool(service.registry.maybe_refresh)
    snaps = service.snapshots(params.indexes)  # taken once: one version per index
    load = await service.query_loader(params.item, params.sop_instance_uid, upload)
    answers = await service.search(params, load, snaps)
    body = SearchResponse(
        request_id=request.state.request_id,
        versions={a.index: a.version for a in answers},
        answers=answers,
    )  # serialised here, once: FastAPI would validate the model again first
    return Response(body.model_dump_json(), media_type="application/json")
