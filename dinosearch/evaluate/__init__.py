"""Evaluate stage: raw vs baselines vs adapted retrieval, with paired bootstrap intervals and one report."""

from dinosearch.evaluate.ab import evaluate
from dinosearch.evaluate.indexes import evaluate_indexes
from dinosearch.evaluate.report import summary, write_report

__all__ = ["evaluate", "evaluate_indexes", "summary", "write_report"]
