"""The domain adapter: a small residual bottleneck MLP on standardised backbone features; save/load it.

An adapter folder holds ``adapter.safetensors`` (weights and the standardisation buffers) and
``adapter.json`` (its config, the backbone it belongs to, how it was trained, on what, and how it scored).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dinosearch.core.fields import Kind, check_fields
from dinosearch.core.runtime import package_version
from dinosearch.core.storage import read_json, remove_dir, replace_dir, sha256_file, write_json

WEIGHTS_FILE = "adapter.safetensors"
CONFIG_FILE = "adapter.json"
RETRAIN = "restore the adapter folder or retrain it with `dinosearch train`"
INFO_FIELDS: dict[str, Kind] = {  # what loading reads from adapter.json, checked before use
    "fingerprint": "str",
    "sha256": "str",
    "backbone_fingerprint": "str",
    "adapter_config.in_dim": "positive",
    "adapter_config.bottleneck": "positive",
    "adapter_config.dropout": "fraction",
    "adapter_config.residual_init": "number",
}


@dataclass(frozen=True)
class AdapterConfig:
    """Shape of a ``DomainAdapter``; 768 → 512 → 768 has about 0.79M parameters."""

    in_dim: int  # backbone feature width (Backbone.embed_dim)
    bottleneck: int = 512
    dropout: float = 0.1
    residual_init: float = (
        0.1  # the MLP branch starts as a small correction to the standardised input
    )

    def __post_init__(self) -> None:
        if self.in_dim < 1 or self.bottleneck < 1:
            raise ValueError(
                f"adapter in_dim {self.in_dim} and bottleneck {self.bottleneck} must be ≥ 1"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"adapter dropout {self.dropout} must be in [0, 1)")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class DomainAdapter(nn.Module):
    """(B, in_dim) raw backbone features → (B, in_dim) unit vectors.

    ``z = (x - mean) / std``, then ``y = z + alpha * MLP(z)`` with
    ``MLP = Linear(in, bottleneck) → LayerNorm → GELU → Dropout → Linear(bottleneck, in)`` and a learnable
    ``alpha`` starting at ``residual_init``; the output is ``y / ||y||``. ``mean``/``std`` are buffers set
    from the training features (``set_standardization``) and saved with the weights.
    """

    mean: torch.Tensor  # (in_dim,) buffers
    std: torch.Tensor

    def __init__(self, config: AdapterConfig) -> None:
        super().__init__()
        self.config = config
        self.in_dim = config.in_dim
        self.out_dim = config.in_dim
        self.fingerprint: str | None = None  # set by save_adapter / load_adapter
        self.backbone_fingerprint: str | None = None
        self.register_buffer("mean", torch.zeros(config.in_dim))
        self.register_buffer("std", torch.ones(config.in_dim))
        self.mlp = nn.Sequential(
            nn.Linear(config.in_dim, config.bottleneck),
            nn.LayerNorm(config.bottleneck),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.bottleneck, config.in_dim),
        )
        self.alpha = nn.Parameter(torch.tensor(float(config.residual_init)))

    def set_standardization(self, features: np.ndarray | torch.Tensor, eps: float = 1e-6) -> None:
        """Store the per-dimension mean and std of (N, in_dim) training features."""
        x = (
            torch.as_tensor(np.asarray(features, dtype=np.float32))
            .reshape(-1, self.in_dim)
            .double()
        )
        self.mean.copy_(x.mean(0).float())
        self.std.copy_(x.std(0, unbiased=False).clamp_min(eps).float())

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) → (B, in_dim) L2-normalised."""
        z = self.standardize(x.float())
        return F.normalize(z + self.alpha * self.mlp(z), dim=-1)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def save_adapter(
    adapter: DomainAdapter,
    folder: str | Path,
    *,
    backbone_fingerprint: str,
    train_config: dict[str, Any],
    data: dict[str, Any],
    metrics: dict[str, Any],
    backbone_info: dict[str, Any] | None = None,
    extra: dict[str, dict[str, Any]] | None = None,
    config: dict[str, Any] | None = None,
) -> str:
    """Write ``folder`` whole: ``adapter.safetensors``, ``adapter.json`` (naming the weights' checksum)
    and each ``extra`` JSON file (e.g. ``{"history.json": {...}}``); return the fingerprint.

    The files are written in ``.FOLDER.tmp-PID`` and swapped in with ``replace_dir``: a kill or a
    write error (``OSError``) at any instant leaves the previous adapter folder, whole, or the new one.

    ``config``: the job's settings (``core.config.job_record``), recorded under ``"config"``.
    """
    from safetensors.torch import save

    root = Path(folder)
    state = {k: v.detach().cpu().contiguous() for k, v in adapter.state_dict().items()}
    staged = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    remove_dir(staged)
    staged.mkdir(parents=True)
    try:
        (staged / WEIGHTS_FILE).write_bytes(save(state))  # Python I/O: errors keep their errno
        digest = sha256_file(staged / WEIGHTS_FILE)
        fingerprint = digest[:16]
        write_json(
            staged / CONFIG_FILE,
            {
                "kind": "adapter",
                "fingerprint": fingerprint,
                "sha256": digest,
                "adapter_config": asdict(adapter.config),
                "parameters": adapter.num_parameters(),
                "backbone_fingerprint": backbone_fingerprint,
                "backbone": backbone_info,
                "train_config": train_config,
                "data": data,
                "metrics": metrics,
                "dinosearch_version": package_version(),
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                **({"config": config} if config else {}),
            },
        )
        for name, content in (extra or {}).items():
            write_json(staged / name, content)
        replace_dir(staged, root)
    finally:
        remove_dir(staged)  # gone already when swapped in
    adapter.fingerprint = fingerprint
    adapter.backbone_fingerprint = backbone_fingerprint
    return fingerprint


def read_adapter_info(folder: str | Path) -> dict[str, Any]:
    """The ``adapter.json`` of an adapter folder, its fields checked (ValueError naming the field)."""
    root = Path(folder)
    if not (root / CONFIG_FILE).is_file() or not (root / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(
            f"{root} is not an adapter folder (needs {CONFIG_FILE} and {WEIGHTS_FILE}); "
            "train one with `dinosearch train`"
        )
    info = read_json(root / CONFIG_FILE)
    check_fields(info, INFO_FIELDS, root / CONFIG_FILE, RETRAIN)
    return info


def expected_shapes(config: AdapterConfig) -> dict[str, tuple[int, ...]]:
    """The state dict of ``DomainAdapter(config)``: tensor name → shape, without building it."""
    d, b = config.in_dim, config.bottleneck
    return {
        "mean": (d,),
        "std": (d,),
        "mlp.0.weight": (b, d),
        "mlp.0.bias": (b,),
        "mlp.1.weight": (b,),
        "mlp.1.bias": (b,),
        "mlp.4.weight": (d, b),
        "mlp.4.bias": (d,),
        "alpha": (),
    }


def check_weights(root: Path, config: AdapterConfig) -> None:
    """The safetensors header of ``root/adapter.safetensors`` fits ``config``: checked before allocating.

    Raises:
        ValueError: not a safetensors file, other tensors, or a shape that disagrees with adapter.json
            (the message names the field).
    """
    from safetensors import safe_open

    weights = root / WEIGHTS_FILE
    try:
        with safe_open(str(weights), framework="pt") as f:  # reads the header only
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except Exception as e:  # SafetensorError: a pickle, a truncated or foreign file
        raise ValueError(f"{weights}: not a safetensors file ({e}); {RETRAIN}") from e
    want = expected_shapes(config)
    if set(shapes) != set(want):
        odd = sorted(set(shapes) ^ set(want))
        raise ValueError(f"{weights}: tensors {odd[:4]} missing or unexpected; {RETRAIN}")
    held = {"in_dim": shapes["mean"], "bottleneck": shapes["mlp.0.bias"]}
    for name, shape in held.items():
        if shape != (getattr(config, name),):
            raise ValueError(
                f"{root / CONFIG_FILE}: field 'adapter_config.{name}' is {getattr(config, name)} "
                f"but {weights} holds {name} {shape[0] if len(shape) == 1 else shape}; {RETRAIN}"
            )
    wrong = [k for k in want if shapes[k] != want[k]]
    if wrong:
        raise ValueError(
            f"{weights}: tensor {wrong[0]!r} has shape {shapes[wrong[0]]}, "
            f"{CONFIG_FILE} needs {want[wrong[0]]}; {RETRAIN}"
        )


def load_adapter(
    folder: str | Path,
    *,
    backbone_fingerprint: str | None = None,
    device: str | torch.device = "cpu",
    fingerprint: str | None = None,
) -> DomainAdapter:
    """Rebuild a saved adapter in eval mode; refuse one trained on another backbone (the one
    adapter loader: ``IndexHandle.load_adapter`` and ``build_index`` call it).

    Every field of adapter.json is checked against the weights' header before anything is allocated.
    ``fingerprint``: the adapter must be this one (e.g. the one an index was built with).

    Raises:
        FileNotFoundError: ``folder`` lacks adapter.json or adapter.safetensors.
        ValueError: the backbone fingerprints differ, the weights do not match adapter.json, or
            the adapter is not ``fingerprint``.
    """
    from safetensors.torch import load_file

    root = Path(folder)
    info = read_adapter_info(root)
    if backbone_fingerprint is not None and info["backbone_fingerprint"] != backbone_fingerprint:
        raise ValueError(
            f"adapter {root} was trained on backbone {info['backbone_fingerprint']!r}, not "
            f"{backbone_fingerprint!r}; use the backbone it was trained on or train a new adapter"
        )
    if fingerprint is not None and info["fingerprint"] != fingerprint:
        raise ValueError(
            f"adapter {root} is now {info['fingerprint']} but {fingerprint} was expected (it "
            "changed since); pass the adapter that was used, or rebuild with this one"
        )
    digest = sha256_file(root / WEIGHTS_FILE)
    if digest != info["sha256"]:
        raise ValueError(
            f"{root / WEIGHTS_FILE}: checksum differs from {CONFIG_FILE} (interrupted save or edited "
            "file); retrain the adapter"
        )
    config = AdapterConfig.from_dict(info["adapter_config"])
    check_weights(root, config)
    adapter = DomainAdapter(config)
    try:
        adapter.load_state_dict(load_file(str(root / WEIGHTS_FILE), device="cpu"), strict=True)
    except Exception as e:  # SafetensorError on a damaged body, RuntimeError on a misfit
        raise ValueError(f"{root / WEIGHTS_FILE}: weights do not fit {CONFIG_FILE} ({e})") from e
    adapter.fingerprint = digest[:16]
    adapter.backbone_fingerprint = info["backbone_fingerprint"]
    return adapter.to(device).eval()
