"""The Ray engine of ``embed``: the missing shards as a Ray Data pipeline over a pool of model replicas.

    records (position, path) ─► ray.data.from_arrow (one block per shard)
        ─► map_batches(Embedder, concurrency=actors, num_gpus=1 per actor on GPU clusters)
        ─► iter_batches on the driver ─► OUT.partial/shards/NNNNN.npz as each shard completes

Each ``Embedder`` actor loads the backbone once from its ``load_args`` and calls
``extract.extract_features`` — the local engine's code — on its batch, so features, failure
reasons and the folder written match the local engine's. Shards are written by the driver only,
so workers need to read the images (a shared or object-store path) but not the output folder.
Install with ``pip install "dinosearch[ray]"``; nothing else in dinosearch imports ray.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from dinosearch.backbones import Backbone, load_backbone
from dinosearch.features.extract import extract_features
from dinosearch.features.remote import fetch, temporary_folder
from dinosearch.features.shards import shard_path, write_shard


class Embedder:
    """One model replica: a batch of {position, path} → {position, features (b, D), reason}."""

    def __init__(
        self, load_args: dict[str, Any], fingerprint: str, batch_size: int, num_workers: int
    ) -> None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.backbone = load_backbone(**load_args, device=device)
        if self.backbone.fingerprint != fingerprint:
            raise ValueError(
                f"a Ray worker built backbone {self.backbone.fingerprint!r}, the driver "
                f"{fingerprint!r}: give the workers the same weights file (same path)"
            )
        self.batch_size, self.num_workers = batch_size, num_workers

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [str(p) for p in batch["path"]]
        features = np.zeros((len(paths), self.backbone.embed_dim), np.float32)
        reasons = np.full(len(paths), "", dtype=object)  # "" = embedded
        notes = np.full(len(paths), "", dtype=object)  # "" = no warning
        warned: list[tuple[int, str]] = []
        with temporary_folder() as tmp:
            local, unfetched = fetch(paths, tmp)
            pos, feats, failures = extract_features(
                local,
                self.backbone,
                batch_size=self.batch_size,
                num_workers=self.num_workers,
                progress=False,
                warnings=warned,
            )
        features[pos] = feats
        for i, reason in [*failures, *unfetched.items()]:  # a fetch failure names the real cause
            reasons[i] = reason
        for i, note in warned:
            notes[i] = note
        return {
            "position": batch["position"],
            "features": features,
            "reason": reasons,
            "warning": notes,
        }


def embed_shards(
    paths: list[str],
    starts: list[int],
    shard_size: int,
    partial: Path,
    backbone: Backbone,
    *,
    address: str | None = None,
    actors: int | None = None,
    batch_size: int = 32,
    num_workers: int | None = None,
    progress: bool = True,
) -> None:
    """Embed the shards beginning at ``starts`` on a Ray cluster and save each as it completes.

    Args:
        paths: every record's image path or URI; position i is record i.
        starts: first positions of the shards still missing.
        address: the cluster (``auto``, ``ray://head:10001``); None joins the cluster this process
            is already connected to, or starts a local one.
        actors: model replicas; default one per GPU, else one per CPU of the cluster.
        num_workers: decoding processes per replica; default: the replica's CPUs on GPU clusters
            (up to 8 per GPU, each call then takes up to 1,024 images), none on CPU clusters.
    """
    if not starts:
        return
    _connect(address)
    import ray
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    results = _map_embedder(
        _tables(paths, starts, shard_size), backbone, shard_size, actors, batch_size, num_workers
    )
    expected = {s: min(shard_size, len(paths) - s) for s in starts}
    _collect(
        results.iter_batches(batch_size=None, batch_format="numpy"),
        expected,
        shard_size,
        partial,
        progress,
    )


def _tables(paths: list[str], starts: list[int], shard_size: int) -> list[pa.Table]:
    """One Arrow table (position, path) per missing shard: one Ray block each."""
    return [
        pa.table(
            {
                "position": np.arange(s, min(s + shard_size, len(paths))),
                "path": paths[s : s + shard_size],
            }
        )
        for s in starts
    ]


def _map_embedder(
    tables: list[pa.Table],
    backbone: Backbone,
    shard_size: int,
    actors: int | None,
    batch_size: int,
    num_workers: int | None,
) -> Any:
    """The lazy Ray Dataset of ``tables`` run through a pool of ``Embedder`` replicas sized to the
    cluster (see ``embed_shards``)."""
    import ray
    import ray.data

    gpus, cpus = (int(ray.cluster_resources().get(r, 0)) for r in ("GPU", "CPU"))
    size = actors or gpus or max(1, cpus)
    cpus_each = max(1, min(8, cpus // gpus)) if gpus else 1
    workers = num_workers if num_workers is not None else (cpus_each if gpus else 0)
    per_call = min(shard_size, 1024) if gpus else batch_size  # DataLoader start-up, amortised
    return ray.data.from_arrow(tables).map_batches(
        Embedder,
        fn_constructor_kwargs={
            "load_args": backbone.load_args,
            "fingerprint": backbone.fingerprint,
            "batch_size": batch_size,
            "num_workers": workers,
        },
        batch_size=per_call,
        concurrency=size,
        num_gpus=1 if gpus else 0,
        num_cpus=cpus_each,
        batch_format="numpy",
    )


def _collect(
    batches: Any, expected: dict[int, int], shard_size: int, partial: Path, progress: bool
) -> None:
    """Group result rows by shard; write a shard the moment its last row arrives."""
    pending: dict[int, list[dict[str, np.ndarray]]] = {s: [] for s in expected}
    got = dict.fromkeys(expected, 0)
    with tqdm(
        total=sum(expected.values()), desc="embed (ray)", unit="img", disable=not progress
    ) as bar:
        for batch in batches:
            shard_of = batch["position"] // shard_size * shard_size
            for start in np.unique(shard_of):
                rows = shard_of == start
                pending[int(start)].append({k: v[rows] for k, v in batch.items()})
                got[int(start)] += int(rows.sum())
                if got[int(start)] == expected[int(start)]:
                    _save(pending.pop(int(start)), shard_path(partial, int(start), shard_size))
            bar.update(len(batch["position"]))
    if pending:
        raise RuntimeError(f"the Ray pipeline ended with shards {sorted(pending)} incomplete")


def _save(parts: list[dict[str, np.ndarray]], shard: Path) -> None:
    """Rows of one shard (any order) → ``shards.write_shard`` in position order."""
    position = np.concatenate([p["position"] for p in parts]).astype(np.int64)
    features = np.concatenate([p["features"] for p in parts])
    reason = np.concatenate([p["reason"] for p in parts]).astype(str)
    note = np.concatenate([p["warning"] for p in parts]).astype(str)
    order = np.argsort(position, kind="stable")
    position, features, reason, note = position[order], features[order], reason[order], note[order]
    ok = reason == ""
    failures = [(int(i), str(r)) for i, r in zip(position[~ok], reason[~ok], strict=True)]
    warned = ok & (note != "")
    warnings = [(int(i), str(w)) for i, w in zip(position[warned], note[warned], strict=True)]
    features = np.ascontiguousarray(features[ok], np.float32)
    write_shard(shard, position[ok], features, failures, warnings)


def _connect(address: str | None) -> None:
    """Join the cluster at ``address`` (or stay on the current one, or start a local one)."""
    if address is None:  # a cluster of this machine alone: keep its traffic on the loopback
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError as e:
        raise ValueError(
            '--engine ray needs Ray: pip install "dinosearch[ray]" (or use --engine local)'
        ) from e
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    except ConnectionError as e:
        raise ValueError(
            f"cannot reach a Ray cluster at --address {address} ({e}); start one with "
            "`ray start --head` and pass the address it prints, or leave out --address"
        ) from e
