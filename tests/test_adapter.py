"""DomainAdapter shape and output, save/load round trip, fingerprints and refusals."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from dinosearch.adapt.adapter import AdapterConfig, DomainAdapter, load_adapter, save_adapter
from dinosearch.adapt.vectors import to_vectors

FP = "dinov2_tiny_test|random(seed=0)|56px|cls"


def _adapter(seed: int = 0) -> DomainAdapter:
    torch.manual_seed(seed)
    adapter = DomainAdapter(AdapterConfig(in_dim=32, bottleneck=16))
    feats = np.random.default_rng(seed).normal(3.0, 2.0, (100, 32)).astype(np.float32)
    adapter.set_standardization(feats)
    return adapter


def _save(adapter: DomainAdapter, folder) -> str:  # type: ignore[no-untyped-def]
    return save_adapter(
        adapter,
        folder,
        backbone_fingerprint=FP,
        train_config={"epochs": 1},
        data={"count": 100, "images": "abc"},
        metrics={"val_loss": 1.0},
        backbone_info={"fingerprint": FP, "load_args": {"name": "x"}},
    )


def test_reference_size_has_about_079m_parameters() -> None:
    adapter = DomainAdapter(AdapterConfig(in_dim=768))
    assert 0.78e6 < adapter.num_parameters() < 0.80e6
    out = adapter.eval()(torch.randn(3, 768))
    assert out.shape == (3, 768)  # 768 → 512 → 768 with the residual: same width out as in
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))


def test_forward_standardises_and_returns_unit_vectors() -> None:
    adapter = _adapter().eval()
    assert adapter.alpha.item() == pytest.approx(0.1)
    assert adapter.mean.mean().item() == pytest.approx(3.0, abs=0.3)
    x = torch.randn(5, 32) * 2 + 3
    y = adapter(x)
    assert y.shape == (5, 32) and torch.allclose(y.norm(dim=1), torch.ones(5), atol=1e-5)
    adapter.alpha.data.zero_()  # without the MLP branch: standardise and normalise only
    z = (x - adapter.mean) / adapter.std
    assert torch.allclose(adapter(x), z / z.norm(dim=1, keepdim=True), atol=1e-6)


def test_round_trip_gives_identical_outputs(tmp_path) -> None:
    adapter = _adapter()
    fingerprint = _save(adapter, tmp_path / "ad")
    digest = hashlib.sha256((tmp_path / "ad" / "adapter.safetensors").read_bytes()).hexdigest()
    assert fingerprint == digest[:16] == adapter.fingerprint
    loaded = load_adapter(tmp_path / "ad", backbone_fingerprint=FP)
    assert loaded.fingerprint == fingerprint and loaded.backbone_fingerprint == FP
    assert not loaded.training
    feats = np.random.default_rng(1).normal(3, 2, (20, 32)).astype(np.float32)
    assert np.array_equal(to_vectors(feats, adapter), to_vectors(feats, loaded))
    info = json.loads((tmp_path / "ad" / "adapter.json").read_text())
    assert info["adapter_config"] == {
        "in_dim": 32,
        "bottleneck": 16,
        "dropout": 0.1,
        "residual_init": 0.1,
    }
    assert info["backbone"]["load_args"] == {"name": "x"} and info["data"]["count"] == 100
    assert {"train_config", "metrics", "dinosearch_version", "created"} <= info.keys()
    assert _save(adapter, tmp_path / "again") == fingerprint  # same weights, same fingerprint


def test_refuses_another_backbone(tmp_path) -> None:
    _save(_adapter(), tmp_path / "ad")
    with pytest.raises(ValueError) as e:
        load_adapter(tmp_path / "ad", backbone_fingerprint="dinov2_vits14|random(seed=0)|224px|cls")
    assert str(tmp_path / "ad") in str(e.value) and FP in str(e.value) and "vits14" in str(e.value)


def test_not_an_adapter_and_tampered_weights(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="not an adapter folder"):
        load_adapter(tmp_path)
    _save(_adapter(), tmp_path / "ad")
    _save(_adapter(seed=1), tmp_path / "other")
    (tmp_path / "ad" / "adapter.safetensors").write_bytes(
        (tmp_path / "other" / "adapter.safetensors").read_bytes()
    )
    with pytest.raises(ValueError, match="checksum"):
        load_adapter(tmp_path / "ad")


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="dropout"):
        AdapterConfig(in_dim=8, dropout=1.5)
