"""Metadata shown as text: cut long values, escape Markdown, table cells and plot labels, hide paths.

Labels, views, sources and ids come from manifests and DICOM headers: they are data, never markup.
Every place that shows one (app, report.md, plots) passes it through one of these first.
"""

from __future__ import annotations

import os
import re
from typing import Any

MAX_SHOWN = 80  # characters of one metadata value on a page, in a report table or on a plot
ELLIPSIS = "…"
# Inline Markdown, Streamlit's directives (:red[…], :emoji:), LaTeX ($), HTML and entities (&):
# CommonMark lets a backslash make any ASCII punctuation literal; these are the ones that act inline.
_MARKDOWN_SPECIAL = frozenset("\\`*_{}[]()<>#!|~$:&")
# An absolute POSIX or Windows path (or a file: URL's path) inside a message.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/])(?:[A-Za-z]:[\\/]|/)[^\s'\"`,;()<>\[\]]*")


def cut(value: Any, limit: int = MAX_SHOWN) -> str:
    """``str(value)`` on one line, at most ``limit`` characters (the last one an ellipsis).

    Cuts before anything else looks at the text, so a 20 MB label costs ``limit`` characters of
    work downstream. Control characters (newlines, tabs) become spaces.
    """
    text = value if isinstance(value, str) else str(value)
    head = text[: limit + 1]
    head = "".join(" " if not ch.isprintable() else ch for ch in head)
    return head if len(head) <= limit else head[: limit - 1] + ELLIPSIS


def escape_markdown(value: Any, limit: int = MAX_SHOWN) -> str:
    """``value`` cut, then every ASCII punctuation character backslash-escaped (literal in Markdown).

    ``![x](http://h/p.png)``, ``:red[**x**]``, backticks, ``$x$`` and ``<b>`` all show as typed.
    """
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in cut(value, limit))


def table_cell(value: Any, limit: int = MAX_SHOWN) -> str:
    """``value`` as one Markdown table cell: one line, cut, Markdown escaped (so ``|`` too)."""
    return escape_markdown(value, limit)


def plot_text(value: Any, limit: int = MAX_SHOWN) -> str:
    """``value`` as a matplotlib label: one line, cut. Draw it under
    ``matplotlib.rc_context({"text.usetex": False, "text.parse_math": False})`` (no mathtext)."""
    return cut(value, limit)


def hide_paths(message: Any) -> str:
    """``message`` with every absolute path replaced by its last part (server paths stay private)."""

    def last_part(m: re.Match[str]) -> str:
        path = m.group(0).rstrip(".:")
        name = os.path.basename(path.rstrip("/\\").replace("\\", "/")) or "…"
        return f"…/{name}" + m.group(0)[len(path) :]

    return _ABSOLUTE_PATH.sub(last_part, str(message))
