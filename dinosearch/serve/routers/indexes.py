"""GET /v1/indexes (what is served) and GET /v1/items/{index}/{row} (one indexed image)."""

from __future__ import annotations

import base64

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from dinosearch.serve.deps import ServiceDep
from dinosearch.serve.errors import ApiError
from dinosearch.serve.models import IndexList, IndexSummary, Item, ItemRef
from dinosearch.serve.service import Service, png_bytes
from dinosearch.serve.state import Snapshot

router = APIRouter(tags=["indexes"])
THUMBNAIL = 128


def summary(snap: Snapshot) -> IndexSummary:
    m = snap.manifest
    adapter = (m.get("adapter") or {}).get("fingerprint")
    return IndexSummary(
        name=snap.name,
        version=snap.version,
        backbone=str(m["backbone"].get("name")),
        fingerprint=snap.searcher.fingerprint,
        adapter=adapter,
        size=snap.searcher.handle.count,
        dim=snap.searcher.handle.dim,
        untrained=snap.searcher.random_init,
    )


@router.get("/indexes", response_model=IndexList)
async def indexes(service: ServiceDep) -> IndexList:
    """Every served index: name, live version, backbone, size, whether its backbone is untrained."""
    if service.registry.due():  # a look at the folders only every --refresh-s
        await run_in_threadpool(service.registry.maybe_refresh)
    live = service.registry.snapshots
    problems = {n: "cannot be opened; the server log says why" for n in service.registry.problems}
    return IndexList(indexes=[summary(s) for s in live.values()], problems=problems)


@router.get("/items/{index}/{row}", response_model=Item)
async def item(
    index: str,
    row: int,
    service: ServiceDep,
    version: str | None = Query(None, description="409 when the index moved on"),
    thumbnail: bool = Query(True, description="include a 128 px PNG thumbnail"),
) -> Item:
    """One indexed image: its allowed metadata, viewer link and a thumbnail."""
    snap = service.snapshot(index)
    if row < 0:
        raise ApiError(404, f"{index} has no row {row}")
    ref = ItemRef(index=index, row=row, version=version)
    return await run_in_threadpool(_item, service, snap, ref, thumbnail)


def _item(service: Service, snap: Snapshot, ref: ItemRef, thumbnail: bool) -> Item:
    record = service.item_row(snap, ref)
    thumb = None
    if thumbnail:
        image = service.item_image(ref)
        image.thumbnail((THUMBNAIL, THUMBNAIL))
        thumb = base64.b64encode(png_bytes(image)).decode()
    return Item(
        index=snap.name,
        version=snap.version,
        row=ref.row,
        metadata=service.visible(record),
        viewer_url=service.link(record),
        thumbnail_png=thumb,
    )
