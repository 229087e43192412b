"""Device resolution, seeding and the installed version: what every stage may ask of its runtime."""

from __future__ import annotations

import os
import random
from typing import Literal

import numpy as np
import torch

DeviceName = Literal["auto", "cpu", "cuda"] | str


def resolve_device(device: DeviceName = "auto") -> torch.device:
    """Turn "auto" into "cuda" when a GPU is visible, else "cpu"; validate anything else."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} was asked for but CUDA is not available; use --device cpu"
        )
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so CPU runs repeat exactly."""
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def package_version() -> str:
    """The installed dinosearch version ("0+unknown" when run from a bare checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dinosearch")
    except PackageNotFoundError:
        return "0+unknown"
