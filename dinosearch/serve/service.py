"""The service behind the routers: settings, keys, metrics, the registry, and ONE search function.

Routers parse and answer; everything they compute is here, so the API and tests call the same code.
"""

from __future__ import annotations

import asyncio
import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from functools import partial
from typing import Any, TypeVar

import numpy as np
from anyio import to_thread
from PIL import Image

from dinosearch.core.privacy import (
    SHOW_COLUMNS_ENV,
    allowed_columns,
    parse_columns,
    visible_record,
)
from dinosearch.core.runtime import resolve_device
from dinosearch.core.viewer import viewer_template, viewer_url
from dinosearch.inputs.images import ImageReadError, read_image
from dinosearch.search import SearchResult
from dinosearch.serve.config import ServeConfig
from dinosearch.serve.errors import ApiError
from dinosearch.serve.fields import (
    PATIENT_COLUMN,
    check_columns,
    check_marks,
    cropped,
    marks_of,
)
from dinosearch.serve.keys import KeyRing
from dinosearch.serve.models import Hit, IndexAnswer, ItemRef, SearchParams
from dinosearch.serve.observe import Metrics
from dinosearch.serve.state import Registry, Snapshot
from dinosearch.serve.uploads import Upload

T = TypeVar("T")
NEVER_SHOWN = ("rank", "score", "path", "more_films")  # path: a server path, never shown


class Service:
    """Everything one app instance serves from (``app.state.service``)."""

    def __init__(self, config: ServeConfig, keys: KeyRing, env: Mapping[str, str]) -> None:
        self.config, self.keys = config, keys
        self.metrics = Metrics()
        self.allowed = config.show_columns or parse_columns(env.get(SHOW_COLUMNS_ENV))
        self.viewer = viewer_template(config.viewer_url, env)
        self.archive = config.archive or env.get("DINOSEARCH_ARCHIVE") or None
        self.registry = Registry(
            config.indexes,
            device=resolve_device(config.device),
            batcher_args={
                "max_batch": config.max_batch,
                "max_wait_s": config.max_wait_ms / 1000,
                "on_batch": self.metrics.batch.observe,
            },
            refresh_s=config.refresh_s,
            on_change=lambda live: self.metrics.served(
                {n: (s.version, s.searcher.handle.count) for n, s in live.items()}
            ),
        )
        self.warm = False
        # CPU work (decode, preprocess, search) on as many threads as cores: more only thrash the GIL.
        # A plain executor: anyio's run_sync with a limiter cost the event loop 3x more a hop.
        self.cpu = ThreadPoolExecutor(
            config.cpu_workers or os.cpu_count() or 1, thread_name_prefix="dinosearch-cpu"
        )
        self.tokens: Any = None  # the explainers' shared token cache, made on first use

    def start(self) -> None:
        """Open every index and run each model once (blocking: the app's startup)."""
        self.registry.refresh()
        self.registry.warm()
        self.warm = True

    def snapshots(self, names: Sequence[str] | None) -> list[Snapshot]:
        """The live snapshots asked for, taken once: a request answers from these versions only."""
        live = self.registry.snapshots
        if not live:
            raise ApiError(503, "no index is served yet; see /readyz")
        if not names:
            return list(live.values())
        chosen: list[str] = []
        for name in names:
            chosen += _resolve_name(name, live)
        return [live[n] for n in dict.fromkeys(chosen)]

    def snapshot(self, name: str) -> Snapshot:
        try:
            return self.registry.get(name)
        except KeyError:
            raise ApiError(404, f"no index named {name!r}; GET /v1/indexes lists them") from None

    async def query_image(
        self, item: ItemRef | None, uid: str | None, upload: Upload | None
    ) -> Image.Image:
        """The query as an image: exactly one of an upload, an indexed item or an archive UID."""
        return await self.work(await self.query_loader(item, uid, upload))

    async def query_loader(
        self, item: ItemRef | None, uid: str | None, upload: Upload | None
    ) -> Callable[[], Image.Image]:
        """What reads the query image (CPU work, for ``work``): exactly one of an upload, an indexed
        item or an archive UID (fetched here, on a thread that waits on the network, not a core)."""
        given = [x is not None for x in (item, uid, upload)]
        if sum(given) != 1:
            raise ApiError(422, "send exactly one query: a file, an item or a sop_instance_uid")
        if upload is not None:
            return partial(_decode, upload.data, upload.name)
        if item is not None:
            return partial(self.item_image, item)
        data = await to_thread.run_sync(self._fetch, str(uid))
        return partial(_decode, data, f"{uid}.dcm")

    def item_image(self, item: ItemRef) -> Image.Image:
        snap = self.snapshot(item.index)
        path = str(self.item_row(snap, item)["path"])
        try:
            return read_image(path)
        except ImageReadError:
            raise ApiError(
                404, f"the image of {item.index} row {item.row} is not readable here"
            ) from None

    def item_row(self, snap: Snapshot, item: ItemRef) -> dict[str, Any]:
        if item.version is not None and item.version != snap.version:
            raise ApiError(
                409,
                f"{snap.name} is now at version {snap.version}, not {item.version}; search again",
            )
        if item.row >= snap.searcher.handle.count:
            raise ApiError(
                404, f"{snap.name} has no row {item.row} ({snap.searcher.handle.count} rows)"
            )
        return snap.searcher.handle.rows(np.array([item.row])).to_dict("records")[0]

    def _fetch(self, uid: str) -> bytes:
        if not self.archive:
            raise ApiError(422, "this server has no --archive; upload the image instead")
        from dinosearch.inputs.dicomweb import fetch_instance  # requests, dicomweb-client

        try:
            return fetch_instance(self.archive, uid)
        except (ValueError, OSError) as e:
            raise ApiError(404, f"the archive has no instance {uid}: {e}") from e

    async def search(
        self, params: SearchParams, load: Callable[[], Image.Image], snaps: list[Snapshot]
    ) -> list[IndexAnswer]:
        """Top-k of each snapshot for the image ``load()`` reads: one batched forward per backbone.

        Two hops to a worker thread (read + preprocess, then every search and answer) and one wait
        for the model: each hop costs the event loop a wake-up, and under load those add up.
        """
        models = {id(s.model): s.model for s in snaps}
        check_marks(params, [s.name for s in snaps])  # before any work
        shown = allowed_columns(self.allowed)
        for snap in snaps:
            check_columns(params, shown, snap.searcher.handle.table.column_names)

        def prepare() -> dict[int, Future[np.ndarray]]:
            with ExitStack() as announced:  # the model's batch waits for this query meanwhile
                for m in models.values():
                    announced.enter_context(m.batcher.coming())
                image = load()
                if params.region is not None:  # the box as a film of its own ("crop")
                    image = cropped(image, params.region)
                return {k: m.batcher.submit(m.prepare([image])) for k, m in models.items()}

        submitted = await self.work(prepare)  # (1, 3, S, S) each, queued for its model
        waiting = [asyncio.wrap_future(f) for f in submitted.values()]
        features = dict(zip(submitted, await asyncio.gather(*waiting), strict=True))
        return await self.work(
            lambda: [self.search_one(s, features[id(s.model)], params) for s in snaps]
        )

    async def work(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a worker thread, at most ``cpu_workers`` at once (off the event loop)."""
        return await asyncio.get_running_loop().run_in_executor(self.cpu, partial(fn, *args))

    def close(self) -> None:
        """Stop the model workers and the CPU threads (the app's shutdown)."""
        self.registry.close()
        self.cpu.shutdown(wait=False, cancel_futures=True)

    def search_one(self, snap: Snapshot, features: np.ndarray, params: SearchParams) -> IndexAnswer:
        return self.answer(snap, search_snapshot(snap, features, params))

    def answer(self, snap: Snapshot, result: SearchResult) -> IndexAnswer:
        hits = [
            Hit(rank=r["rank"], score=r["score"], row=int(i), metadata=self.visible(r),
                viewer_url=self.link(r), more_films=r.get("more_films"))
            for r, i in zip(result.records(), result.ids, strict=True)
        ]  # fmt: skip
        return IndexAnswer(
            index=snap.name, version=snap.version, untrained=snap.searcher.random_init, hits=hits
        )

    def visible(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The allowed metadata of one row, JSON-safe (NaN → None), never a server path."""
        shown = visible_record(row, self.allowed)
        return {c: _plain(v) for c, v in shown.items() if c not in NEVER_SHOWN}

    def link(self, row: Mapping[str, Any]) -> str | None:
        if self.viewer is None:
            return None
        return viewer_url(self.viewer, row)


def search_snapshot(snap: Snapshot, features: np.ndarray, params: SearchParams) -> SearchResult:
    """THE search of the service: (1, D_backbone) features → top-k of one index snapshot, refined
    as the CLI's ``search_vectors`` refines (filter, group, like/unlike, collapse, MMR)."""
    exclude = None
    if params.exclude_group is not None:
        exclude = (params.exclude_group.column, params.exclude_group.value)
    like, unlike = marks_of(params, snap.name)
    collapse = PATIENT_COLUMN if params.collapse is True else params.collapse or None
    vectors = snap.embedder.embed_features(features)  # (1, D)
    try:
        return snap.searcher.search_vectors(
            vectors, params.k, filters=params.filter, exclude_group=exclude,
            like=like, unlike=unlike, collapse=collapse, diversity=params.diversity,
        )[0]  # fmt: skip
    except (ValueError, KeyError) as e:
        raise ApiError(422, f"{snap.name}: {e}") from e


def _resolve_name(name: str, live: Mapping[str, Snapshot]) -> list[str]:
    if name in live:
        return [name]
    if name not in ("raw", "adapted", "both"):
        raise ApiError(404, f"no index named {name!r}; GET /v1/indexes lists them")
    raw = [n for n, s in live.items() if s.embedder.adapter is None]
    adapted = [n for n, s in live.items() if s.embedder.adapter is not None]
    picked = {"raw": [raw], "adapted": [adapted], "both": [raw, adapted]}[name]
    if any(len(p) != 1 for p in picked):
        raise ApiError(
            422,
            f"{name!r} is ambiguous here ({len(raw)} raw, {len(adapted)} adapted); name the indexes",
        )
    return [p[0] for p in picked]


def _decode(data: bytes, name: str) -> Image.Image:
    try:
        return read_image(data, name=name)
    except ImageReadError as e:
        status = 413 if "limit" in str(e) else 415
        raise ApiError(status, str(e)) from e


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes | bytearray):
        return None
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(v) for v in value]
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def environment() -> Mapping[str, str]:
    return os.environ
