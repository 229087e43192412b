"""What the service answers from: one shared, batched model per backbone and immutable index snapshots.

A ``Snapshot`` is one opened index version with its query embedder; it never changes. ``Registry``
swaps in a new snapshot when ``current`` moves (checked at most every ``refresh_s``), so a request
that took its snapshots at the start answers from one version per index however long it runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from dinosearch.backbones import backbone_from_info
from dinosearch.backbones.transforms import eval_transform
from dinosearch.index import current_version
from dinosearch.search import QueryEmbedder, VectorSearcher
from dinosearch.serve.batcher import ModelBatcher

if TYPE_CHECKING:
    from dinosearch.backbones import Backbone

log = logging.getLogger("dinosearch.serve")


class Model:
    """One backbone: its preprocessing (run by the request's thread) and its batched forward."""

    def __init__(self, backbone: Backbone, batcher_args: dict[str, Any]) -> None:
        self.backbone = backbone
        self.transform = eval_transform(backbone.preprocess)
        self.device = next(backbone.parameters()).device
        self.lock = threading.Lock()  # explanations (gradients) run one at a time
        self.batcher = ModelBatcher(self._forward, **batcher_args)

    def _forward(self, batch: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return self.backbone(batch.to(self.device)).float().cpu().numpy()  # (B, D)

    def prepare(self, images: list[Image.Image]) -> torch.Tensor:
        """PIL images → (B, 3, S, S) model inputs."""
        return torch.stack([self.transform(i) for i in images])

    def warm(self) -> None:
        """One forward pass, so the first query does not pay for lazy initialisation."""
        blank = Image.new("L", (64, 64))
        self.batcher.submit(self.prepare([blank])).result(timeout=300)


@dataclass(frozen=True)
class Snapshot:
    """One index version as served: never refreshed in place."""

    name: str
    version: str
    searcher: VectorSearcher
    embedder: QueryEmbedder
    model: Model

    @property
    def manifest(self) -> dict[str, Any]:
        return self.searcher.manifest


class Registry:
    """The index folders under ``root`` and the models their queries need.

    Args:
        root: folder of index folders (each with a ``current`` pointer).
        device: where models run.
        batcher_args: ``max_batch``, ``max_wait_s``, ``on_batch`` for each model's worker.
        refresh_s: at most how often ``maybe_refresh`` looks for new versions.
        on_change: called with the snapshots after each change (metrics).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        device: torch.device,
        batcher_args: dict[str, Any],
        refresh_s: float = 1.0,
        on_change: Callable[[dict[str, Snapshot]], None] | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: no such folder; pass --indexes DIR of indexes")
        self.device, self.batcher_args, self.refresh_s = device, batcher_args, refresh_s
        self.on_change = on_change
        self.models: dict[str, Model] = {}  # backbone fingerprint → model
        self.snapshots: dict[str, Snapshot] = {}  # replaced whole, never mutated
        self.problems: dict[str, str] = {}
        self._lock = threading.Lock()
        self._checked = 0.0

    def get(self, name: str) -> Snapshot:
        """The live snapshot of index ``name``; KeyError when it is not served."""
        return self.snapshots[name]

    def due(self) -> bool:
        """Whether ``refresh_s`` passed since the last look for new versions."""
        return time.monotonic() - self._checked >= self.refresh_s

    def maybe_refresh(self) -> None:
        """``refresh`` unless one ran within ``refresh_s`` (another thread's counts)."""
        if self.due():
            self.refresh()

    def refresh(self) -> list[str]:
        """Open every index whose ``current`` moved (or is new); names of those that changed."""
        with self._lock:
            self._checked = time.monotonic()
            live, changed = dict(self.snapshots), []
            folders = sorted(p for p in self.root.iterdir() if (p / "current").is_file())
            for folder in folders:
                try:
                    if folder.name in live and current_version(folder) == live[folder.name].version:
                        continue
                    live[folder.name] = self._open(folder)
                    changed.append(folder.name)
                    self.problems.pop(folder.name, None)
                except (OSError, ValueError, KeyError) as e:
                    self.problems[folder.name] = str(e)
                    log.warning("index %s not (re)opened: %s", folder.name, e)
            for gone in set(live) - {f.name for f in folders}:
                del live[gone]
                changed.append(gone)
            if changed:
                self.snapshots = dict(sorted(live.items()))
                if self.on_change is not None:
                    self.on_change(live)
            return changed

    def _open(self, folder: Path) -> Snapshot:
        searcher = VectorSearcher(folder)
        info = searcher.manifest["backbone"]
        model = self.models.get(info["fingerprint"])
        if model is None:
            backbone = backbone_from_info(
                info, device=self.device, source=searcher.handle.manifest_path
            )
            model = self.models[info["fingerprint"]] = Model(backbone, self.batcher_args)
        embedder = QueryEmbedder.for_index(
            searcher.handle, backbone=model.backbone, device=self.device
        )
        return Snapshot(folder.name, searcher.handle.version, searcher, embedder, model)

    def warm(self) -> None:
        for model in list(self.models.values()):
            model.warm()

    def close(self) -> None:
        """Stop the model workers; a later ``refresh`` opens everything anew."""
        with self._lock:
            for model in self.models.values():
                model.batcher.close()
            self.models, self.snapshots = {}, {}
