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
            return self._check(self.http.post(path, json=params))
        data, name = (
            (image, "query.png")
            if isinstance(image, bytes)
            else (Path(image).read_bytes(), Path(image).name)
        )
        files = {"file": (name, data, "application/octet-stream")}
        return self._check(self.http.post(path, files=files, data={"params": json.dumps(params)}))

    def search(self, image: str | Path | bytes | None = None, **params: Any) -> dict[str, Any]:
        """POST /v1/search with an image file/bytes, or ``item={"index", "row"}`` / ``sop_instance_uid``."""
        answer: dict[str, Any] = self._post("/v1/search", params, image).json()
        return answer

    def explain(self, image: str | Path | bytes | None = None, **params: Any) -> Any:
        """POST /v1/explain: JSON (a dict), or PNG bytes with ``format="png"``."""
        response = self._post("/v1/explain", params, image)
        return response.content if params.get("format") == "png" else response.json()

    def indexes(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._check(self.http.get("/v1/indexes")).json()["indexes"]
        return found

    def item(self, index: str, row: int, *, thumbnail: bool = True) -> dict[str, Any]:
        params = {"thumbnail": str(thumbnail).lower()}
        found: dict[str, Any] = self._check(
            self.http.get(f"/v1/items/{index}/{row}", params=params)
        ).json()
        return found

    def ready(self) -> bool:
        return self.http.get("/readyz").status_code == 200

    def metrics(self) -> str:
        return self._check(self.http.get("/metrics")).text
