"""Pydantic models of every request and response body (the OpenAPI schema at /docs comes from these)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Scalar = str | int | float | bool
Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Ids = Annotated[list[Id], Field(max_length=1000)]
Marks = Ids | dict[str, Ids]  # one list for every index asked, or per index name
Column = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]


class ItemRef(BaseModel):
    """An indexed image: its row (vector id) in an index, optionally pinned to the version it came from."""

    model_config = ConfigDict(extra="forbid")
    index: str
    row: int = Field(ge=0)
    version: str | None = Field(None, description="refused (409) when the index moved on")


class GroupExclusion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    column: str = Field(examples=["patient_id"])
    value: Scalar


class SearchParams(BaseModel):
    """What to search with and how; the image comes as an upload, ``item`` or ``sop_instance_uid``."""

    model_config = ConfigDict(extra="forbid")
    item: ItemRef | None = None
    sop_instance_uid: str | None = Field(None, max_length=64, pattern=r"^[0-9.]+$")
    k: int = Field(10, ge=1)
    indexes: list[str] | None = Field(
        None, description='index names, or "raw", "adapted", "both"; none: every index'
    )
    filter: str | dict[str, Scalar | list[Scalar]] | None = Field(
        None, examples=['view == "PA"', {"view": "PA"}]
    )
    exclude_group: GroupExclusion | None = None
    region: tuple[float, float, float, float] | None = Field(
        None, description="search with this box (x0, y0, x1, y1) of the query, in its pixels (crop)"
    )
    like: Marks = Field(
        default_factory=list,
        description="metadata ids to move towards (Rocchio); a list for every index, "
        "or {index: [ids]}",
    )
    unlike: Marks = Field(default_factory=list, description="ids to move away from, as ``like``")
    collapse: bool | Column = Field(
        False, description='one result per patient: true (column "patient_id") or a column name'
    )
    diversity: float | None = Field(
        None, ge=0.0, le=1.0, description="MMR λ over 4k candidates: 1 none, lower more diverse"
    )


class Hit(BaseModel):
    rank: int
    score: float
    row: int = Field(description="vector id = metadata row of this index version")
    metadata: dict[str, Any] = Field(description="the columns this server allows")
    viewer_url: str | None = None
    more_films: int | None = Field(
        None, description="with collapse: this group's other rows that pass the filter"
    )


class IndexAnswer(BaseModel):
    index: str
    version: str
    untrained: bool
    hits: list[Hit]


class SearchResponse(BaseModel):
    request_id: str
    versions: dict[str, str] = Field(description="index → version that answered")
    answers: list[IndexAnswer]


class IndexSummary(BaseModel):
    name: str
    version: str
    backbone: str
    fingerprint: str
    adapter: str | None
    size: int
    dim: int
    untrained: bool


class IndexList(BaseModel):
    indexes: list[IndexSummary]
    problems: dict[str, str] = Field(default_factory=dict)


class Item(BaseModel):
    index: str
    version: str
    row: int
    metadata: dict[str, Any]
    viewer_url: str | None = None
    thumbnail_png: str | None = Field(None, description="base64 PNG, 128 px square")


class ExplainParams(BaseModel):
    """Why ``result`` is similar to the query (upload, ``item`` or ``sop_instance_uid``)."""

    model_config = ConfigDict(extra="forbid")
    item: ItemRef | None = None
    sop_instance_uid: str | None = Field(None, max_length=64, pattern=r"^[0-9.]+$")
    result: ItemRef
    format: Literal["png", "json"] = "json"
    method: Literal["auto", "decomposition", "token-ig", "input-ig"] = "auto"
    steps: int | None = Field(None, ge=1, le=64)
    matches: bool = True  # each query patch's best-matching result patch (a forward pass more)


class ExplainResponse(BaseModel):
    index: str
    version: str
    explanation: dict[str, Any]


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    ready: bool
    indexes: dict[str, str]
    models_warm: bool
    problems: dict[str, str] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    error: str
    request_id: str
