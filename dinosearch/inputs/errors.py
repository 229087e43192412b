"""The one error type of the inputs stage, and file names safe to print."""

from __future__ import annotations

import os
from pathlib import Path


def display_path(path: str | Path) -> str:
    """``path`` as printable text: bytes that are not UTF-8 appear as ``\\xe9`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


class ImageReadError(ValueError):
    """An image could not be read; names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = display_path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
