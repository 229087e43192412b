"""The app factory: ``create_app(config)`` → a FastAPI app under /v1; ``run_server`` runs it with uvicorn.

Layout as FastAPI's "bigger applications": routers per resource (``routers/``), dependencies for the
service and the key check (``deps``), Pydantic models (``models``), the work itself (``service``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from dinosearch.core.config import to_dict
from dinosearch.serve.config import API_KEYS_ENV, LOOPBACK, ServeConfig
from dinosearch.serve.deps import require_key
from dinosearch.serve.errors import install_error_handlers
from dinosearch.serve.keys import KeyRing, load_keys
from dinosearch.serve.observe import RequestObserver, log, setup_logging
from dinosearch.serve.routers import explain, health, indexes, search
from dinosearch.serve.service import Service


def check_access(config: ServeConfig, keys: KeyRing) -> None:
    """Keys, or --no-auth on a loopback address; anything else is refused before listening."""
    if keys and config.no_auth:
        raise ValueError("--no-auth with API keys given: drop one of them")
    if not keys and not config.no_auth:
        raise ValueError(
            f"no API keys: give --api-keys FILE or {API_KEYS_ENV}, or --no-auth on 127.0.0.1"
        )
    if config.no_auth and config.host not in LOOPBACK:
        raise ValueError(
            f"--no-auth serves without keys, so only on a loopback address, not --host "
            f"{config.host}; give API keys or put an authenticating proxy in front (docs/serve.md)"
        )


def create_app(config: ServeConfig, env: Mapping[str, str] | None = None) -> FastAPI:
    """The service for ``config``; indexes open and models warm in the app's startup.

    Raises:
        ValueError / FileNotFoundError: no keys without --no-auth, --no-auth off loopback, a bad
            key file, no indexes folder.
    """
    env = os.environ if env is None else env
    keys = load_keys(config.api_keys, env)
    check_access(config, keys)
    service = Service(config, keys, env)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("starting", extra={"endpoint": "startup"})
        await run_in_threadpool(service.start)
        yield
        service.close()

    app = FastAPI(title="dinosearch", version="1", lifespan=lifespan)
    app.state.service = service
    app.state.config = to_dict(config)
    install_error_handlers(app)
    if config.cors_origin:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origin),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        )
    app.add_middleware(RequestObserver, metrics=service.metrics)  # added last: the outermost
    auth = [Depends(require_key)]
    for router in (search.router, indexes.router, explain.router):
        app.include_router(router, prefix="/v1", dependencies=auth)
    app.include_router(health.router)
    return app


def run_server(config: ServeConfig) -> int:
    """Serve ``config`` with uvicorn until stopped (SIGINT/SIGTERM); JSON logs on stderr."""
    import uvicorn

    setup_logging()
    app = create_app(config)  # refuses unsafe access settings before anything listens
    print(
        f"dinosearch serve: http://{config.host}:{config.port}/docs (Ctrl+C stops it)", flush=True
    )
    uvicorn.run(app, host=config.host, port=config.port, access_log=False, log_level="warning")
    return 0
