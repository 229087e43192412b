"""``dinosearch serve`` settings: one frozen dataclass (stdlib only, so ``--help`` stays instant)."""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from dataclasses import dataclass

from dinosearch.core.config import opt

API_KEYS_ENV = "DINOSEARCH_API_KEYS"  # comma-separated plain keys (a secret store fills it)
LOOPBACK = ("127.0.0.1", "::1", "localhost")
SERVER_ENV = {
    # OpenMP threads that spin after each parallel region take the cores the request threads
    # (decode, preprocess, search, HTTP) need; sleeping instead gave 1.4-1.7x more requests/s with
    # ViT-S/14 and 16 clients on 2 cores (docs/serve.md, "Under load"). A value already set wins.
    "OMP_WAIT_POLICY": "PASSIVE",
}


def server_environment(env: MutableMapping[str, str] = os.environ) -> None:
    """Set ``SERVER_ENV`` where unset; call before torch is imported (OpenMP reads it once)."""
    for name, value in SERVER_ENV.items():
        env.setdefault(name, value)


@dataclass(frozen=True)
class ServeConfig:
    """Which indexes the service answers from, where it listens, who may ask and what it shows."""

    indexes: str = opt("folder holding the index folders (indexes/NAME)", default="indexes")
    host: str = opt(
        "address to listen on; keep 127.0.0.1 behind an authenticating proxy (docs/serve.md)",
        default="127.0.0.1",
    )
    port: int = opt("port to listen on", default=8000)
    api_keys: str | None = opt(
        f"file of salted key hashes, one a line (`dinosearch serve --hash-key`); plain keys may "
        f"also come from {API_KEYS_ENV}=k1,k2",
        default=None,
        metavar="FILE",
    )
    no_auth: bool = opt(
        "serve without keys: refused unless --host is a loopback address", default=False
    )
    cors_origin: tuple[str, ...] = opt(
        "origins a browser page may call from (comma-separated); none: CORS off", default=()
    )
    show_columns: tuple[str, ...] = opt(
        "metadata columns responses may show on top of label, view, source_repo (e.g. "
        "id,patient_id); also DINOSEARCH_SHOW_COLUMNS",
        default=(),
    )
    viewer_url: str | None = opt(
        "viewer link template, e.g. https://pacs/viewer?StudyInstanceUIDs={StudyInstanceUID}; "
        "also DINOSEARCH_VIEWER_URL",
        default=None,
    )
    archive: str | None = opt(
        "DICOMweb archive URL queried for a SOP Instance UID; also DINOSEARCH_ARCHIVE",
        default=None,
    )
    device: str = opt("where the model runs: auto, cpu, cuda or cuda:N", default="cpu")
    max_batch: int = opt("most query images in one model forward pass", default=32)
    max_wait_ms: float = opt(
        "how long a forward pass waits for queries still being decoded (a lone query: none)",
        default=5.0,
    )
    max_upload_mb: float = opt("largest upload accepted (413 above)", default=64.0)
    refresh_s: float = opt(
        "how often (at most) a request checks for a newly published index version", default=1.0
    )
    cpu_workers: int = opt(
        "threads decoding, preprocessing and searching at once (0: one per CPU core)", default=0
    )
    max_k: int = opt("largest k a request may ask for", default=1000)
