"""A small client of ``dinosearch serve`` (httpx): search, indexes, items, explain, health.

>>> from dinosearch.client import Client
>>> with Client("http://127.0.0.1:8000", api_key="…") as c:
...     answer = c.search(image="query.png", k=5, indexes=["both"])
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx

API_KEY_ENV = "DINOSEARCH_API_KEY"  # the key a client sends (not the server's list)


class ServerError(ValueError):
    """The server refused a request: its status and one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"server answered {status}: {reason}")
        self.status = status
        self.reason = reason


class ServerUnreachable(ValueError):
    """No answer at all: the server is down, the address wrong, or it timed out."""


class Client:
    """Talks to one server; ``api_key`` defaults to ``DINOSEARCH_API_KEY``."""

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 60.0) -> None:
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; no answer at all is one line naming the server, not a traceback."""
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise ServerUnreachable(
                f"no answer from {self.http.base_url} ({type(e).__name__}: {e}); "
                "is `dinosearch serve` running there?"
            ) from e

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.is_success:
            return response
        try:
            reason = str(response.json().get("error"))
        except (ValueError, AttributeError):
            reason = response.text[:200]
        raise ServerError(response.status_code, reason)

    def _post(
        self, path: str, params: dict[str, Any], image: str | Path | bytes | None
    ) -> httpx.Response:
        if image is None:
            return self._check(self._send("POST", path, json=params))
        data, name = (
            (image, "query.png")
            if isinstance(image, bytes)
            else (Path(image).read_bytes(), Path(image).name)
        )
        files = {"file": (name, data, "application/octet-stream")}
        form = {"params": json.dumps(params)}
        return self._check(self._send("POST", path, files=files, data=form))

    def search(self, image: str | Path | bytes | None = None, **params: Any) -> dict[str, Any]:
        """POST /v1/search with an image file/bytes, or ``item={"index", "row"}`` / ``sop_instance_uid``."""
        answer: dict[str, Any] = self._post("/v1/search", params, image).json()
        return answer

    def explain(self, image: str | Path | bytes | None = None, **params: Any) -> Any:
        """POST /v1/explain: JSON (a dict), or PNG bytes with ``format="png"``."""
        response = self._post("/v1/explain", params, image)
        return response.content if params.get("format") == "png" else response.json()

    def indexes(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._check(self._send("GET", "/v1/indexes")).json()[
            "indexes"
        ]
        return found

    def item(self, index: str, row: int, *, thumbnail: bool = True) -> dict[str, Any]:
        params = {"thumbnail": str(thumbnail).lower()}
        found: dict[str, Any] = self._check(
            self._send("GET", f"/v1/items/{index}/{row}", params=params)
        ).json()
        return found

    def ready(self) -> bool:
        """Whether the server answers /readyz with 200 (False when it does not answer at all)."""
        try:
            return self._send("GET", "/readyz").status_code == 200
        except ServerUnreachable:
            return False

    def metrics(self) -> str:
        return self._check(self._send("GET", "/metrics")).text
