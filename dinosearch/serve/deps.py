"""FastAPI dependencies: the service (settings, registry) and the key check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from dinosearch.serve.config import LOOPBACK
from dinosearch.serve.errors import ApiError
from dinosearch.serve.service import Service


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


def require_key(request: Request, service: ServiceDep) -> None:
    """401 without a bearer key, 403 with a wrong one; with --no-auth, loopback callers only."""
    if not service.keys:
        client = request.client.host if request.client else ""
        if client not in LOOPBACK:
            raise ApiError(403, "this server runs without keys and answers loopback callers only")
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "send an API key: Authorization: Bearer KEY")
    if not service.keys.accepts(token.strip()):
        raise ApiError(403, "this API key is not accepted")
