"""dinosearch serve under load: 1, 4, 16 concurrent clients vs the bare batched forward + search rate.

For each backbone (tiny DINOv2 and ViT-S/14, random weights: UNTRAINED numbers), builds an index of
``--gallery`` real X-rays, starts ``dinosearch serve`` as a subprocess on 127.0.0.1 (a free port),
and measures, with a fixed number of image queries per run:
  - the bare rate: decode + preprocess + one forward per 16 images + search, in this process,
    right before and after every client run (each run's ratio is to the mean of those two);
  - requests/s and p50/p95/p99 latency with 1, 4 and 16 clients (``--rounds`` runs of 16; one
    keep-alive HTTP connection per client), and the CPU each request cost server and clients;
  - 16 clients again while the index is republished 5 times: failed requests and responses whose
    results come from another version than the one they name (versions alternate labels a:/b:).
Every loop is bounded in count and time; the server is stopped by its PID.

    python scripts/bench_serve.py --queries 128
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx  # only to wait for /readyz
import numpy as np
import pandas as pd
from filelock import FileLock

from dinosearch.backbones import Backbone, load_backbone
from dinosearch.features.folder import embed_to_folder
from dinosearch.index import build_index
from dinosearch.inputs.images import read_image
from dinosearch.inputs.records import load_records
from dinosearch.search import Searcher
from dinosearch.serve.config import SERVER_ENV, server_environment

CXR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cxr" / "manifest.parquet"
KEY = "bench-key-0123456789abcdef"
BACKBONES = {"tiny": ("dinov2_tiny_test", 56), "vits14": ("dinov2_vits14", 224)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(work: Path, backbone: Backbone, records: pd.DataFrame) -> tuple[Path, Path, Path]:
    """Features with labels prefixed a: and b: (to tell versions apart), and the index (a: live)."""
    folders = []
    for tag in ("a", "b"):
        tagged = records.assign(label=f"{tag}:" + records["label"].astype(str))
        out = work / f"features-{tag}"
        if not (out / "manifest.json").is_file():
            embed_to_folder(tagged, backbone, out, batch_size=16, num_workers=0, progress=False)
        folders.append(out)
    index = work / "indexes" / "cxr"
    shutil.rmtree(index, ignore_errors=True)  # start from one a: version
    build_index(folders[0], index)
    return folders[0], folders[1], index


def start_server(indexes: Path, port: int, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "dinosearch", "serve", "--indexes", str(indexes), "--port",
           str(port), "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms),
           "--refresh-s", "0.2"]  # fmt: skip
    env = {**os.environ, "DINOSEARCH_API_KEYS": KEY}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
        if proc.poll() is not None:
            raise RuntimeError(f"dinosearch serve exited with {proc.returncode}")
    proc.terminate()
    raise TimeoutError("dinosearch serve not ready in 300 s")


def bare_rate(searcher: Searcher, queries: list[bytes], k: int, batch: int = 16) -> float:
    """Queries/s of decode + preprocess + batched forward + search in this process (one pass)."""
    start = time.perf_counter()
    for i in range(0, len(queries), batch):
        images = [read_image(q, name="q.jpg") for q in queries[i : i + batch]]
        vectors = searcher.embed_features(searcher.image_features(images))
        searcher.search_vectors(vectors, k)
    return len(queries) / (time.perf_counter() - start)


def load(
    url: str, queries: list[bytes], clients: int, k: int
) -> tuple[float, list[float], list[dict[str, Any] | None]]:
    """(requests/s, latencies ms, bodies or None for a failure): ``clients`` concurrent clients
    (one keep-alive connection each) share the queries."""
    return asyncio.run(_load(url, queries, clients, k))


def request_bytes(url: str, query: bytes, k: int) -> bytes:
    """One POST /v1/search as bytes: multipart with the image and its params, built once."""
    host = url.split("//", 1)[1]
    boundary = "dinosearch-bench-boundary"
    body = b"".join([
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"params\"\r\n\r\n".encode(),
        json.dumps({"k": k}).encode(),
        f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"q.jpg\"\r\n"
        "Content-Type: image/jpeg\r\n\r\n".encode(),
        query,
        f"\r\n--{boundary}--\r\n".encode(),
    ])  # fmt: skip
    head = (
        f"POST /v1/search HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    """Send one request on a kept-alive connection; (status, body) of its answer."""
    writer.write(request)
    await writer.drain()
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    fields = dict(line.lower().split(": ", 1) for line in head[1:] if ": " in line)
    if "content-length" not in fields:
        raise ValueError("the answer has no Content-Length")
    return status, await reader.readexactly(int(fields["content-length"]))


async def _load(
    url: str, queries: list[bytes], clients: int, k: int
) -> tuple[float, list[float], list[dict[str, Any] | None]]:
    """A small load generator (as ``wrk`` would be): requests are built before the clock starts
    and answers read with asyncio streams, so the clients take little of the CPU they share with
    the server (httpx took as much CPU per request as the server did)."""
    host, port = url.split("//", 1)[1].split(":")
    requests = [request_bytes(url, q, k) for q in queries]
    results: list[tuple[float, dict[str, Any] | None]] = [(0.0, None)] * len(queries)

    async def client(c: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for i in range(c, len(queries), clients):
                start = time.perf_counter()
                body = None
                try:
                    status, data = await asyncio.wait_for(
                        _exchange(reader, writer, requests[i]), 120
                    )
                    body = json.loads(data) if status == 200 else None
                except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError):
                    writer.close()  # a broken connection: count the failure, open another
                    reader, writer = await asyncio.open_connection(host, int(port))
                results[i] = ((time.perf_counter() - start) * 1000, body)
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    wall = time.perf_counter() - start
    return len(queries) / wall, [t for t, _ in results], [b for _, b in results]


def measured(pid: int, url: str, run: Any) -> tuple[Any, tuple[float, float, float]]:
    """``run()``'s value and the CPU milliseconds per query it cost the server (``pid``) and this
    process (the clients), from /proc and getrusage: where the two share cores, what each took;
    and the mean images per forward pass."""
    ticks = os.sysconf("SC_CLK_TCK")

    def server() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime

    def clients() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    s0, c0, b0 = server(), clients(), batches(url)
    value = run()
    n, (b1, f1) = len(value[1]), batches(url)
    per_batch = (b1 - b0[0]) / max(f1 - b0[1], 1)
    return value, ((server() - s0) * 1000 / n, (clients() - c0) * 1000 / n, per_batch)


def batches(url: str) -> tuple[float, float]:
    """(images, forward passes) so far, from the server's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {KEY}"}, timeout=30).text
    family = next(
        f for f in text_string_to_metric_families(text) if f.name == "dinosearch_model_batch_size"
    )
    values = {s.name: s.value for s in family.samples}
    return values["dinosearch_model_batch_size_sum"], values["dinosearch_model_batch_size_count"]


def mixed(body: dict[str, Any], tags: dict[str, str]) -> bool:
    """Whether a response's hits come from another version than the one it names."""
    for answer in body["answers"]:
        tag = tags.get(answer["version"])
        if tag is None or body["versions"][answer["index"]] != answer["version"]:
            return True
        if any(not str(h["metadata"]["label"]).startswith(f"{tag}:") for h in answer["hits"]):
            return True
    return False


def republish_under_load(
    url: str, feats: tuple[Path, Path], index: Path, queries: list[bytes], k: int, spacing: float
) -> tuple[int, int, int]:
    """(failed, mixed, versions published) for 16 clients while 5 new versions are published."""
    tags = {_live(index): "a"}
    done = threading.Event()

    def publisher() -> None:
        for n in range(5):
            time.sleep(spacing)
            tag = "b" if n % 2 == 0 else "a"
            handle = build_index(feats[0] if tag == "a" else feats[1], index, keep=3)
            tags[handle.version] = tag
        done.set()

    thread = threading.Thread(target=publisher)
    thread.start()
    _, _, bodies = load(url, queries, 16, k)
    thread.join(600)
    failed = sum(b is None for b in bodies)
    bad = sum(mixed(b, tags) for b in bodies if b is not None)
    return failed, bad, len(tags) - 1


def _live(index: Path) -> str:
    from dinosearch.index import current_version

    return current_version(index)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def run_backbone(
    name: str, args: argparse.Namespace, records: pd.DataFrame, queries: list[bytes]
) -> None:
    model, size = BACKBONES[name]
    backbone = load_backbone(model, "random", image_size=size, seed=0)
    work = Path(args.work) / name
    feats_a, feats_b, index = prepare(work, backbone, records)
    port = free_port()
    proc = start_server(index.parent, port, args)
    url = f"http://127.0.0.1:{port}"
    try:
        load(url, queries[:8], 4, 5)  # warm connections and code paths
        searcher = Searcher(index, backbone=backbone)
        bare_rate(searcher, queries[:16], 5)  # warm
        # the bare rate right before and after every client run (2 shared cores drift by ±15% in
        # a minute): each run's ratio is to the mean of the two that bracket it
        bares = [bare_rate(searcher, queries, 5)]
        runs = []
        for clients in (1, 4, *[16] * args.rounds):
            runs.append(
                (clients, *measured(proc.pid, url, lambda c=clients: load(url, queries, c, 5)))
            )
            bares.append(bare_rate(searcher, queries, 5))
        print(f"\n{name} ({model}, {size} px, random weights: UNTRAINED), {len(records)} indexed, "
              f"{len(queries)} queries per run")  # fmt: skip
        print("  bare batched forward + search, before and after each run: "
              + ", ".join(f"{b:.1f}" for b in bares) + " queries/s")  # fmt: skip
        ratios = []
        for i, (clients, (rate, lat, bodies), (server_ms, client_ms, per_batch)) in enumerate(runs):
            fails = sum(b is None for b in bodies)
            ratio = rate / ((bares[i] + bares[i + 1]) / 2)
            ratios += [ratio] if clients == 16 else []
            print(f"  {clients:2d} clients: {rate:8.1f} req/s ({ratio:.2f}x bare)  p50 "
                  f"{pct(lat, 50):7.1f} ms  p95 {pct(lat, 95):7.1f} ms  p99 {pct(lat, 99):7.1f} ms  failed {fails}  "
                  f"CPU/request: server {server_ms:.1f} ms, clients {client_ms:.1f} ms; "
                  f"{per_batch:.1f} images a forward pass")  # fmt: skip
        print(f"  16 clients over {len(ratios)} runs: median {np.median(ratios):.2f}x bare, "
              f"lowest {min(ratios):.2f}x")  # fmt: skip
        spacing = len(queries) / max(rate, 1e-6) / 6  # spread 5 publishes over one 16-client run
        failed, bad, published = republish_under_load(
            url, (feats_a, feats_b), index, queries, 5, spacing
        )
        print(f"  16 clients during {published} republishes: failed {failed}, mixed versions {bad}")
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> int:
    if any(name not in os.environ for name in SERVER_ENV):  # torch is loaded: start again with
        server_environment()  # the server's settings, so that the bare rate runs under them too
        os.execv(sys.executable, [sys.executable, *sys.argv])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", default=str(CXR), help="manifest of X-rays")
    p.add_argument("--gallery", type=int, default=200, help="images indexed")
    p.add_argument("--queries", type=int, default=128, help="queries per run (other images)")
    p.add_argument("--rounds", type=int, default=3, help="16-client runs (each between bare runs)")
    p.add_argument("--work", default="/tmp/bench_serve")
    p.add_argument("--backbones", default="tiny,vits14")
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    args = p.parse_args()
    records, _ = load_records(args.images)
    records = records.sample(n=min(args.gallery + args.queries, len(records)), random_state=0)
    gallery = records.iloc[: args.gallery].reset_index(drop=True)
    queries = [Path(p).read_bytes() for p in records.iloc[args.gallery :]["path"]]
    print(
        f"torch threads {__import__('torch').get_num_threads()}, cpus {os.cpu_count()}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')} (server and bare rate)"
    )
    Path(args.work).mkdir(parents=True, exist_ok=True)
    with FileLock(Path(args.work) / ".bench.lock", timeout=0):  # two runs would mix their publishes
        for name in args.backbones.split(","):
            run_backbone(name.strip(), args, gallery, queries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
