"""A request's parameters and image: JSON body, or multipart with a ``file`` and a ``params`` JSON field.

The body is read in chunks and refused (413) past the upload limit before anything is parsed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import PurePath
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from dinosearch.serve.errors import ApiError, validation_reason

P = TypeVar("P", bound=BaseModel)
UPLOAD_TYPES = ("png", "jpg", "jpeg", "dcm", "dicom")


@dataclass(frozen=True)
class Upload:
    data: bytes
    name: str  # the client's file name, last part only (used in error lines)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, or 413 as soon as it passes ``max_bytes``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, _too_big(int(declared), max_bytes))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, _too_big(size, max_bytes))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_big(size: int, limit: int) -> str:
    return f"request is over {size / 2**20:.1f} MB; the upload limit is {limit / 2**20:.1f} MB"


async def read_request(request: Request, model: type[P], max_bytes: int) -> tuple[P, Upload | None]:
    """(validated parameters, the uploaded file or None); 413/415/422 with a one-line reason."""
    body = await read_body(request, max_bytes)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        fields, upload = await _multipart(request, body)
    elif kind in ("application/json", ""):
        fields, upload = (body.decode("utf-8", "replace") or "{}"), None
    else:
        raise ApiError(415, f"send application/json or multipart/form-data, not {kind!r}")
    try:
        return model.model_validate(json.loads(fields)), upload
    except json.JSONDecodeError as e:
        raise ApiError(422, f"params: not JSON ({e.msg} at character {e.pos})") from e
    except ValidationError as e:
        raise ApiError(422, validation_reason(e.errors())) from e


async def _multipart(request: Request, body: bytes) -> tuple[str, Upload | None]:
    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    try:
        form = await MultiPartParser(request.headers, stream(), max_files=1, max_fields=4).parse()
    except MultiPartException as e:
        raise ApiError(422, f"multipart body: {e.message}") from e
    params = form.get("params") or "{}"
    file = form.get("file")
    if not isinstance(params, str):
        raise ApiError(422, "params: send it as a form field holding JSON, not a file")
    if file is None:
        return params, None
    if not isinstance(file, UploadFile):
        raise ApiError(422, "file: send the image as a file part")
    name = PurePath(file.filename or "upload").name[-80:] or "upload"
    suffix = PurePath(name).suffix.lower().lstrip(".")
    if suffix and suffix not in UPLOAD_TYPES:
        raise ApiError(
            415, f"a .{suffix} file is not a chest film (upload {', '.join(UPLOAD_TYPES)})"
        )
    data = await file.read()
    await file.close()
    return params, Upload(data, name)
