"""The one wording of the "untrained backbone" warning every command and the app print."""

from __future__ import annotations


def untrained_note(fingerprint: str, consequence: str = "features are untrained") -> str:
    """``warning: backbone FP is randomly initialised (untrained): CONSEQUENCE``."""
    return f"warning: backbone {fingerprint} is randomly initialised (untrained): {consequence}"
