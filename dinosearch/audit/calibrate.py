"""Thresholds calibrated on planted copies: a few films of the collection are edited in memory
(``plant.edits``) and scored against their originals by each signal; the threshold is the score that
keeps 99 % of the planted copies, less a small margin, and is printed with what it flags."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from dinosearch.audit.pixels import aligned_score, thumbnails
from dinosearch.audit.plant import edits
from dinosearch.inputs.images import ImageReadError, read_image

QUANTILE = 0.01  # the share of planted copies a threshold may miss
MARGIN = {"pixel": 0.003, "embedding": 0.0005}  # below the 1 % quantile: room for unseen edits
Embed = Callable[[Sequence[Image.Image]], np.ndarray]  # images → (B, D) unit vectors


@dataclass
class Calibration:
    """Planted-copy scores of one signal, and the threshold chosen (or given) for it."""

    signal: str
    threshold: float | None
    given: bool
    scores: dict[str, list[float]] = field(default_factory=dict)  # edit name → copy scores
    distinct_above: float | None = None  # share of films whose nearest *other* film is ≥ threshold

    def recall(self) -> float | None:
        """Share of planted copies scoring ≥ the threshold."""
        values = [s for v in self.scores.values() for s in v]
        if self.threshold is None or not values:
            return None
        return float(np.mean(np.asarray(values) >= self.threshold))

    def by_edit(self) -> dict[str, float]:
        """Lowest copy score of each edit (the edit names carry their drawn strengths)."""
        return {k: round(float(min(v)), 4) for k, v in self.scores.items() if v}

    def summary(self) -> dict[str, object]:
        return {
            "threshold": self.threshold,
            "given": self.given,
            "planted_copies": sum(len(v) for v in self.scores.values()),
            "planted_recall": self.recall(),
            "lowest_score_by_edit": self.by_edit(),
            "films_whose_nearest_other_is_above": self.distinct_above,
        }


def _choose(scores: dict[str, list[float]], signal: str) -> float | None:
    values = [s for v in scores.values() for s in v]
    if not values:
        return None
    return float(np.quantile(values, QUANTILE)) - MARGIN[signal]


def plant_scores(
    paths: Sequence[str],
    rows: Sequence[int],
    vectors: np.ndarray | None,
    embed: Embed | None,
    seed: int,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(pixel, embedding) copy scores by edit family for the films ``rows`` of ``paths``."""
    rng = np.random.default_rng(seed)
    pixel: dict[str, list[float]] = {}
    embedding: dict[str, list[float]] = {}
    for row in rows:
        try:
            original = read_image(paths[row]).convert("L")
        except ImageReadError:
            continue
        planted = edits(rng)
        copies = [edit(original) for edit in planted.values()]
        base = thumbnails(original)
        families = [name.split(" ")[0] for name in planted]
        for family, copy in zip(families, copies, strict=True):
            pixel.setdefault(family, []).append(aligned_score(base, thumbnails(copy)))
        if embed is not None and vectors is not None:
            sims = embed(copies) @ vectors[row]
            for family, s in zip(families, sims, strict=True):
                embedding.setdefault(family, []).append(float(s))
    return pixel, embedding


def calibrate(
    signal: str,
    scores: dict[str, list[float]],
    given: float | None,
    nearest_other: np.ndarray | None,
) -> Calibration:
    """The threshold (``given`` or chosen from ``scores``) and the share of films it would flag.

    ``nearest_other``: (N,) each film's best score against any other film of the collection.
    """
    threshold = given if given is not None else _choose(scores, signal)
    cal = Calibration(signal, threshold, given is not None, scores)
    if threshold is not None and nearest_other is not None and len(nearest_other):
        cal.distinct_above = round(float(np.mean(nearest_other >= threshold)), 4)
    return cal
