"""Error bodies: one line of reason and the request id; never a stack trace or a server path."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("dinosearch.serve")
_PATH = re.compile(r"(?<![\w.])/(?:[\w.@+-]+/)+[\w.@+-]*")  # an absolute POSIX path
MAX_REASON = 300


class ApiError(Exception):
    """A refusal with its HTTP status and a one-line reason meant for the caller."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def one_line(text: str) -> str:
    """``text`` on one line, server paths replaced by their last part, cut to MAX_REASON characters."""
    text = _PATH.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1] or "/", str(text))
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def error_response(request: Request, status: int, reason: str) -> JSONResponse:
    request_id = getattr(request.state, "request_id", "-")
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    body = {"error": one_line(reason), "request_id": request_id}
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return error_response(request, e.status, e.reason)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return error_response(request, e.status_code, str(e.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        return error_response(request, 422, validation_reason(e.errors()))

    @app.exception_handler(Exception)
    async def crash(request: Request, e: Exception) -> JSONResponse:
        log.exception("unhandled error (%s)", type(e).__name__)
        return error_response(request, 500, "internal error; the server log has the request id")


def validation_reason(errors: object) -> str:
    """Pydantic's first error as ``field: message``."""
    first: dict[str, Any] = {}
    if isinstance(errors, list | tuple) and errors and isinstance(errors[0], dict):
        first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
    return f"{where or 'request'}: {first.get('msg', 'invalid request')}"
