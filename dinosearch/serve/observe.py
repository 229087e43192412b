"""Metrics (Prometheus) and JSON logs with a request id: what the service did, never whom it was about.

Logs name the route template (``/v1/items/{index}/{row}``), never the filled URL, query or metadata.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


def route_template(scope: Scope) -> str:
    """``/v1/items/{index}/{row}``: the matched route's template (the prefix added where the
    FastAPI version keeps it apart), ``unmatched`` for a 404 — never the filled URL."""
    path = getattr(scope.get("route"), "path", None)
    if not isinstance(path, str):
        return "unmatched"
    for prefix in PREFIXES:
        if str(scope.get("path", "")).startswith(prefix + "/") and not path.startswith(
            prefix + "/"
        ):
            return prefix + path
    return path


class RequestObserver:
    """ASGI middleware: give each request an id (``X-Request-ID``), count it, time it, log one line.

    Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``, whose extra task and streams per
    request cost the event loop a fifth of its time under load (scripts/bench_serve.py).
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id  # request.state.request_id
        status = 500  # unless a response starts
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, request_id, status, time.perf_counter() - start)

    def _record(self, scope: Scope, request_id: str, status: int, took: float) -> None:
        endpoint, method = route_template(scope), str(scope.get("method", ""))
        self.metrics.requests.labels(endpoint, method, str(status)).inc()
        self.metrics.latency.labels(endpoint).observe(took)
        fields = {"request_id": request_id, "method": method, "endpoint": endpoint,
                  "status": status, "seconds": round(took, 4)}  # fmt: skip
        log.info("request", extra=fields)
