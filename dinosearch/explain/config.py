"""``dinosearch explain``'s settings (standard library only: ``--help`` never waits for torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dinosearch.core.config import opt

Method = Literal["auto", "decomposition", "token-ig", "input-ig"]


@dataclass(frozen=True)
class ExplainConfig:
    """Why an indexed film is similar to a query, as a PNG map and/or JSON."""

    index: str = opt("index folder written by `dinosearch index`", required=True)
    image: str = opt("query image file", required=True)
    result: str = opt("id of the indexed film (the `id` column)", required=True)
    out: str | None = opt("PNG to write the side-by-side map to", default=None)
    json: bool = opt("print the patch grid and sums as JSON", default=False)
    method: Method = opt("auto: exact decomposition for a raw mean-pooled index, integrated gradients over patch tokens through an adapter, gradient × input for CLS pooling (docs/explain.md)", default="auto")  # fmt: skip
    steps: int | None = opt("integration steps (default by method)", default=None)
    matches: int = opt("draw N best-match lines (0: none)", default=0, metavar="N")
    device: str = opt("auto, cpu, cuda or cuda:N", default="cpu")

    def __post_init__(self) -> None:
        if self.out is None and not self.json:
            raise ValueError("nothing to write: give --out map.png, --json, or both")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"--steps {self.steps}: must be ≥ 1 (or leave it out)")
        if self.matches < 0:
            raise ValueError(f"--matches {self.matches}: must be ≥ 0")
