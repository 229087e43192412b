"""Evaluate stage: raw vs baselines vs adapted retrieval, with paired bootstrap intervals and one report."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dinosearch.core.lazy import lazy_exports

# public name → the module that defines it (imported on first use: `--help` stays light)
_API = {
    "evaluate": "dinosearch.evaluate.ab",
    "evaluate_indexes": "dinosearch.evaluate.indexes",
    "summary": "dinosearch.evaluate.report",
    "write_report": "dinosearch.evaluate.report",
}
__all__ = [
    "evaluate",
    "evaluate_indexes",
    "summary",
    "write_report",
]

if TYPE_CHECKING:
    from dinosearch.evaluate.ab import evaluate
    from dinosearch.evaluate.indexes import evaluate_indexes
    from dinosearch.evaluate.report import summary, write_report

__getattr__ = lazy_exports(__name__, _API, globals())
