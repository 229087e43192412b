"""What one /v1/search request costs, step by step, in this process (no HTTP): where the time of a
request goes when the model is small. Untrained weights; numbers from this machine only.

    python scripts/profile_serve_request.py --indexes /tmp/bench_serve/tiny/indexes

``--indexes``: a folder ``scripts/bench_serve.py`` made (``WORK/tiny/indexes``) or any served one.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from bench_serve import CXR, request_bytes
from starlette.datastructures import Headers
from starlette.formparsers import MultiPartParser

from dinosearch.inputs.images import read_image
from dinosearch.inputs.records import load_records
from dinosearch.serve.config import ServeConfig
from dinosearch.serve.keys import load_keys
from dinosearch.serve.models import SearchParams, SearchResponse
from dinosearch.serve.service import Service, search_snapshot


def timed(name: str, fn: Callable[[], Any], n: int = 200, per: int = 1) -> None:
    """Mean milliseconds of ``fn()`` over ``n`` calls, divided by ``per`` (images a call)."""
    fn()  # warm
    start = time.perf_counter()
    for _ in range(n):
        fn()
    print(f"  {name:34s} {(time.perf_counter() - start) / n / per * 1e3:7.3f} ms")


def multipart(data: bytes) -> Callable[[], Any]:
    """Parsing one request body as the service does (starlette's MultiPartParser)."""
    head, body = request_bytes("http://127.0.0.1:1", data, 5).split(b"\r\n\r\n", 1)
    lines = [line.split(b": ", 1) for line in head.split(b"\r\n")[1:]]
    headers = Headers(raw=[(k.lower(), v) for k, v in lines])

    async def parse() -> Any:
        async def stream() -> Any:
            yield body

        return await MultiPartParser(headers, stream(), max_files=1, max_fields=4).parse()

    return lambda: asyncio.run(parse())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--indexes", required=True, help="folder of index folders")
    p.add_argument("--batch", type=int, default=6, help="images per forward pass (as under load)")
    args = p.parse_args()
    records, _ = load_records(str(CXR))
    data = Path(records["path"].iloc[0]).read_bytes()
    service = Service(
        ServeConfig(indexes=args.indexes), load_keys(None, {"DINOSEARCH_API_KEYS": "k" * 20}), {}
    )
    service.start()
    try:
        snap = next(iter(service.registry.snapshots.values()))
        model, params = snap.model, SearchParams.model_validate({"k": 5})
        image = read_image(data, name="q.jpg")
        batch = torch.cat([model.prepare([image])] * args.batch)
        with torch.inference_mode():
            features = model.backbone(batch)[:1].numpy()
        result = search_snapshot(snap, features, params)
        print(f"{snap.name} {snap.version}: one request, step by step (mean of 200)")
        timed("multipart body (server only)", multipart(data))
        timed("decode the JPEG", lambda: read_image(data, name="q.jpg"))
        timed("preprocess (eval_transform)", lambda: model.prepare([image]))
        with torch.inference_mode():
            forward = lambda: model.backbone(batch)  # noqa: E731
            timed(f"forward, per image (batch {args.batch})", forward, n=50, per=args.batch)
        timed("search one query (server only)", lambda: search_snapshot(snap, features, params))
        timed("answer + JSON (server only)", lambda: SearchResponse(
            request_id="x", versions={snap.name: snap.version}, answers=[service.answer(snap, result)]
        ).model_dump_json())  # fmt: skip
    finally:
        service.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
