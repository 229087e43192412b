"""Every ``DINOSEARCH_*`` environment variable, typed and documented in one table.

A variable changes a deployment without code or flags; a command-line flag given for the same
setting wins. ``dinosearch`` reads no other variable of its own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

MiB = 1024 * 1024


@dataclass(frozen=True)
class Variable:
    kind: Literal["int", "float", "path", "str"]
    default: int | float | str | None
    help: str


VARIABLES: dict[str, Variable] = {
    "DINOSEARCH_CACHE": Variable(
        "path", None, "cache root; views under it in views/ (default ~/.cache/dinosearch)"
    ),  # fmt: skip
    "DINOSEARCH_MAX_IMAGE_PIXELS": Variable(
        "int", 100_000_000, "width × height of one stored image, checked before decoding"
    ),  # fmt: skip
    "DINOSEARCH_MAX_ASPECT_RATIO": Variable("int", 20, "long side / short side of one image"),
    "DINOSEARCH_MAX_FILE_BYTES": Variable("int", 256 * MiB, "size of one image file or upload"),
    "DINOSEARCH_MAX_DICOM_DECODED_BYTES": Variable(
        "int", 256 * MiB, "decoded bytes of one DICOM frame (and inflated deflate data)"
    ),  # fmt: skip
    "DINOSEARCH_MAX_DECODED_BYTES": Variable(
        "int", 384 * MiB, "memory decoding one PNG/JPEG/TIFF may take, estimated from its header"
    ),  # fmt: skip
    "DINOSEARCH_MAX_MANIFEST_BYTES": Variable(
        "int", 1024 * MiB, "size of one CSV/Parquet image manifest"
    ),  # fmt: skip
    "DINOSEARCH_LOCK_TIMEOUT": Variable(
        "int", 600, "seconds a second writer of the same folder waits for the first"
    ),  # fmt: skip
    "DINOSEARCH_INDEXES": Variable(
        "path", "indexes", "the app's folder of indexes (flag --indexes wins)"
    ),  # fmt: skip
    "DINOSEARCH_REPORTS": Variable(
        "path", None, "the app's reports folder (default: reports/ beside the indexes and here)"
    ),  # fmt: skip
    "DINOSEARCH_SHOW_COLUMNS": Variable(
        "str", "", "metadata columns the app may show, comma-separated"
    ),  # fmt: skip
    "DINOSEARCH_HIDE_IDENTIFIERS": Variable(
        "str", "", "1: `dinosearch search` shows only what the app's cards show"
    ),  # fmt: skip
    "DINOSEARCH_VIEWER_URL": Variable(
        "str",
        None,
        "result → archive viewer link template, e.g. …?StudyInstanceUIDs={StudyInstanceUID}",
    ),  # fmt: skip
    "DINOSEARCH_ARCHIVE": Variable(
        "str", None, "the app's dicomweb+http… archive for queries by Study/SOP Instance UID"
    ),  # fmt: skip
    "DINOSEARCH_API_KEYS": Variable(
        "str", None, "`dinosearch serve`: accepted API keys, comma-separated (with --api-keys FILE)"
    ),  # fmt: skip
    "DINOSEARCH_API_KEY": Variable(
        "str", None, "the key a client (dinosearch.client, search --server, app --api) sends"
    ),  # fmt: skip
    "DINOSEARCH_API": Variable(
        "str", None, "the app's `dinosearch serve` URL answering its queries (flag --api wins)"
    ),  # fmt: skip
    "DINOSEARCH_DICOMWEB_TOKEN": Variable("str", None, "bearer token for the DICOMweb archive"),
    "DINOSEARCH_DICOMWEB_USER": Variable("str", None, "basic-auth user for the DICOMweb archive"),
    "DINOSEARCH_DICOMWEB_PASSWORD": Variable("str", None, "basic-auth password (with …_USER)"),
    "DINOSEARCH_DICOMWEB_TIMEOUT": Variable(
        "float", 30.0, "seconds to connect and between bytes of a DICOMweb answer (0: the default)"
    ),  # fmt: skip
    "DINOSEARCH_DICOMWEB_RETRIES": Variable(
        "float", 3, "retries with back-off of a DICOMweb request on 5xx or a dropped connection"
    ),  # fmt: skip
}


def _variable(name: str, kind: str) -> Variable:
    var = VARIABLES.get(name)
    if var is None or var.kind != kind:
        raise KeyError(f"{name} is no {kind} variable of core.env.VARIABLES; add it there first")
    return var


def env_int(name: str, env: Mapping[str, str] | None = None) -> int:
    """A positive integer variable, or its default when unset/empty; ValueError naming it otherwise."""
    var = _variable(name, "int")
    raw = (os.environ if env is None else env).get(name)
    if raw is None or not raw.strip():
        return int(var.default or 0)
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(
            f"{name}={raw!r} is not a positive integer; unset it or give e.g. {var.default}"
        )
    return value


def env_float(name: str, env: Mapping[str, str] | None = None) -> float:
    """A number ≥ 0, or its default when unset/empty; ValueError naming it otherwise."""
    var = _variable(name, "float")
    raw = ((os.environ if env is None else env).get(name) or "").strip()
    try:
        value = float(raw) if raw else float(var.default or 0)
    except ValueError:
        value = -1.0
    if value < 0:
        raise ValueError(f"{name}={raw!r} is not a number ≥ 0; unset it or give {var.default}")
    return value


def env_str(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """A text or path variable as set (None when unset or empty, then the caller's default)."""
    var = VARIABLES.get(name)
    if var is None or var.kind in ("int", "float"):
        raise KeyError(f"{name} is no text variable of core.env.VARIABLES; add it there first")
    raw = (os.environ if env is None else env).get(name)
    return raw if raw else None


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    """``$DINOSEARCH_CACHE``, else ``~/.cache/dinosearch``."""
    return Path(env_str("DINOSEARCH_CACHE", env) or Path.home() / ".cache" / "dinosearch")
