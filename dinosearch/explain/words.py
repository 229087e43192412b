"""What a map may be trusted for, in words: the one statement the app, the CLI and the PNG all show.

Completeness (``PatchMap.completeness``) is the share of the score that the patch shares sum to,
``1 − |score − Σ shares| / |score|`` per film, clipped to [0, 1]; a map states the smaller of its two
films' values. Below ``READ_WITH_CARE`` it says to read with care, below ``EXPLAINS_LITTLE`` not to
read it at all.
"""

from __future__ import annotations

from dinosearch.explain.maps import PatchMap, Side

EXPLAINS_LITTLE = 0.5  # below: "explains little of this score: don't read it"
READ_WITH_CARE = 0.8  # below: "accounts for only …: read it with care"
SIDES: tuple[Side, Side] = ("query", "result")


def statement(m: PatchMap) -> str:
    """One sentence for a radiologist: how much of the score this map accounts for."""
    c = m.completeness()
    percent = f"{c:.0%}" if c >= 0.01 or c == 0 else "<1%"
    if c < EXPLAINS_LITTLE:
        return (
            f"This map explains little of this score ({percent}): don't read it. The score is "
            "mostly in what no patch carries."
        )
    if c < READ_WITH_CARE:
        return f"This map accounts for only {percent} of the score: read it with care."
    return f"This map accounts for {percent} of the score."


def sums(m: PatchMap) -> list[str]:
    """Per film: Σ patch shares + rest + gap = score, with the film's completeness.

    The same numbers ``PairExplanation.to_json`` gives (``sum``, ``rest``, ``gap``, ``completeness``).
    """
    return [
        f"{side}: Σ patch shares {m.shares(side).sum():+.4f} + rest {m.rest(side):+.4f} "
        f"+ gap {m.gap(side):+.4f} = score {m.score:.4f}; patches account for "
        f"{m.completeness(side):.0%}"
        for side in SIDES
    ]


def describe(m: PatchMap) -> list[str]:
    """The statement, the method, and the per-film sums: what every surface prints, in order."""
    return [statement(m), f"method: {m.label}", *sums(m)]
