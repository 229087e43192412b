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


class ArchiveError(ValueError):
    """The image archive cannot be reached or refused us: the run stops (a later run resumes).

    Unlike ``ImageReadError`` (one film skipped), this ends the job with one line. PyTorch's
    DataLoader re-raises a worker's exception with the worker's traceback as its text; only the
    last line of it, our message, is kept.
    """

    def __init__(self, message: str) -> None:
        last = message.strip().splitlines()[-1] if message.strip() else message
        prefix = f"{__name__}.ArchiveError: "
        super().__init__(last.removeprefix(prefix).removeprefix("ArchiveError: "))
