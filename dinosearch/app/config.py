"""``dinosearch app`` settings: one frozen dataclass (stdlib only, so ``--help`` stays instant)."""

from __future__ import annotations

from dataclasses import dataclass

from dinosearch.core.config import opt


@dataclass(frozen=True)
class AppConfig:
    """Where the app finds indexes and reports, where it listens, and which columns cards show."""

    indexes: str = opt("folder holding the index folders (indexes/NAME)", default="indexes")
    reports: str | None = opt(
        "folder scanned for **/report.json; unset: reports/ beside --indexes and in the working "
        "folder",
        default=None,
    )
    host: str = opt(
        "address to listen on; keep 127.0.0.1 and put an authenticating proxy in front to share "
        "it (docs/reliability.md)",
        default="127.0.0.1",
    )
    port: int = opt("port to listen on", default=8501)
    show_columns: tuple[str, ...] = opt(
        "metadata columns cards may show on top of label, view, source_repo (e.g. id,patient_id; "
        "comma-separated)",
        default=(),
    )
    viewer_url: str | None = opt(
        "link each result to the archive's viewer, e.g. "
        "'https://pacs/viewer?StudyInstanceUIDs={StudyInstanceUID}' (or $DINOSEARCH_VIEWER_URL)",
        default=None,
    )
    archive: str | None = opt(
        "dicomweb+http… archive whose films can be the query by Study/SOP Instance UID "
        "(or $DINOSEARCH_ARCHIVE)",
        default=None,
    )
