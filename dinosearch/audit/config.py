"""The settings of ``dinosearch audit`` (stdlib + core.config only, so ``--help`` stays instant)."""

from __future__ import annotations

from dataclasses import dataclass

from dinosearch.core.config import opt


@dataclass(frozen=True)
class AuditConfig:
    index: str = opt("index folder written by `dinosearch index`", required=True)
    out: str = opt("report folder (written aside, then swapped in whole)", required=True)
    label_column: str | None = opt(
        "metadata column of the label ('' = none)", default=None, group="columns"
    )
    group_column: str | None = opt(
        "metadata column of the patient ('' = none)", default=None, group="columns"
    )
    split_column: str | None = opt(
        "metadata column of the split (default: 'split' when present; '' = none)",
        default=None,
        group="columns",
    )
    source_column: str | None = opt(
        "metadata column of the source collection (default: 'source_repo' when present)",
        default=None,
        group="columns",
    )
    write_manifest: bool = opt(
        "also write manifest.csv: one film per duplicate cluster, leaking groups in one split",
        default=False,
    )
    pixel_threshold: float | None = opt(
        "aligned thumbnail correlation that makes two films near-duplicates; omitted: calibrated on planted copies",
        default=None,
        group="thresholds",
    )
    embedding_threshold: float | None = opt(
        "inner product that makes two index vectors near-duplicates; omitted: calibrated on planted copies",
        default=None,
        group="thresholds",
    )
    plant: int = opt(
        "films copied (7 edits each, in memory) to calibrate the thresholds", default=24
    )
    k: int = opt("neighbours per film for label agreement and outliers", default=10)
    chunk: int = opt("queries per range-search chunk (bounds memory)", default=4096)
    sheet_rows: int = opt("rows per contact sheet", default=20)
    seed: int = opt("seed of the planted copies", default=0)
    device: str = opt("device for embedding the planted copies", default="cpu")
