"""Metrics (Prometheus) and JSON logs with a request id: what the service did, never whom it was about.

Logs name the route template (``/v1/items/{index}/{row}``), never the filled URL, query or metadata.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.requests import Request
from starlette.responses import Response

log = logging.getLogger("dinosearch.serve")
PREFIXES = ("/v1",)
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class Metrics:
    """This app's own registry (two apps in one process never collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "dinosearch_requests", "HTTP requests", ["endpoint", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "dinosearch_request_seconds", "request latency", ["endpoint"], registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )  # fmt: skip
        self.batch = Histogram(
            "dinosearch_model_batch_size", "images per model forward pass", registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        )  # fmt: skip
        self.version = Gauge(
            "dinosearch_index_version_info", "1 for the index version served", ["index", "version"],
            registry=r,
        )  # fmt: skip
        self.size = Gauge(
            "dinosearch_index_size", "vectors in the served version", ["index"], registry=r
        )

    def served(self, versions: Mapping[str, tuple[str, int]]) -> None:
        """Index name → (version, size) now served."""
        self.version.clear()
        self.size.clear()
        for name, (version, size) in versions.items():
            self.version.labels(name, version).set(1)
            self.size.labels(name).set(size)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the request fields given."""

    FIELDS = ("request_id", "method", "endpoint", "status", "seconds")

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update({f: getattr(record, f) for f in self.FIELDS if hasattr(record, f)})
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)  # the log only, never a body
        return json.dumps(out)


def setup_logging(level: int = logging.INFO) -> None:
    """JSON lines on stderr for the ``dinosearch.serve`` logger (uvicorn's access log is off)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def route_template(request: Request) -> str:
    """``/v1/items/{index}/{row}``: the matched route's template (the prefix added where the
    FastAPI version keeps it apart), ``unmatched`` for a 404 — never the filled URL."""
    path = getattr(request.scope.get("route"), "path", None)
    if not isinstance(path, str):
        return "unmatched"
    for prefix in PREFIXES:
        if request.url.path.startswith(prefix + "/") and not path.startswith(prefix + "/"):
            return prefix + path
    return path


def request_middleware(
    metrics: Metrics,
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """Give each request an id (``X-Request-ID``), count it, time it, log one line."""

    async def middleware(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        given = request.headers.get("x-request-id", "")
        request.state.request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        start = time.perf_counter()
        response = await call_next(request)
        took = time.perf_counter() - start
        endpoint = route_template(request)
        metrics.requests.labels(endpoint, request.method, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(took)
        response.headers["X-Request-ID"] = request.state.request_id
        fields = {"request_id": request.state.request_id, "method": request.method,
                  "endpoint": endpoint, "status": response.status_code, "seconds": round(took, 4)}  # fmt: skip
        log.info("request", extra=fields)
        return response

    return middleware
