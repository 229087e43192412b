"""Backbones: names, preprocessing pinned by a golden test, weights from files, fingerprints, errors."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY, TINY_SIZE
from PIL import Image

from dinosearch.backbones import (
    Backbone,
    Preprocess,
    backbone_from_info,
    list_backbones,
    load_backbone,
    read_state_dict,
    register_backbone,
    register_family,
    registry,
)
from dinosearch.backbones.backbone import Pooling
from dinosearch.backbones.transforms import eval_transform

REPO = Path(__file__).resolve().parents[1]


def batch(size: int = TINY_SIZE, n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_family_is_complete() -> None:
    names = list_backbones()
    for size in ("s", "b", "l", "g"):
        assert f"dinov2_vit{size}14" in names and f"dinov2_vit{size}14_reg" in names
    assert TINY in names and names == sorted(names)


def test_no_module_named_dinov2_shadows_torch_hub() -> None:
    assert importlib.util.find_spec("dinov2") is None
    assert not list(REPO.glob("**/dinov2")) and not list(REPO.glob("**/dinov2.py"))


def test_vits14_preprocessing_is_the_retrieval_recipe() -> None:
    """Mean/std/interpolation come from timm's DINOv2 config; 224 crop of a 256 resize by default."""
    bb = load_backbone("dinov2_vits14", "random")
    assert bb.embed_dim == 384
    assert bb.preprocess == Preprocess(
        image_size=224,
        resize_size=256,
        interpolation="bicubic",
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    )
    assert load_backbone("dinov2_vits14", "random", image_size=518).preprocess.resize_size == 592


def test_eval_transform_golden() -> None:
    """Pin the exact pipeline: PIL bicubic resize of the short side to 256, centre crop 224, normalise."""
    pre = load_backbone(TINY, "random", image_size=224).preprocess
    rng = np.random.default_rng(7)
    img = Image.fromarray(rng.integers(0, 256, (300, 400), dtype=np.uint8))
    out = eval_transform(pre)(img)
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    # Independent construction with Pillow and NumPy alone.
    resized = img.convert("RGB").resize((341, 256), Image.Resampling.BICUBIC)
    left, top = round((341 - 224) / 2), round((256 - 224) / 2)
    crop = np.asarray(resized.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255.0
    expected = (crop - np.array(pre.mean, np.float32)) / np.array(pre.std, np.float32)
    np.testing.assert_allclose(out.permute(1, 2, 0).numpy(), expected, atol=1e-5)
    # Grayscale input is fed as three identical channels (before normalisation).
    unnorm = out * torch.tensor(pre.std)[:, None, None] + torch.tensor(pre.mean)[:, None, None]
    torch.testing.assert_close(unnorm[0], unnorm[2], atol=1e-5, rtol=0)
    # Golden numbers, so any change to the recipe is noticed.
    assert float(out.mean()) == pytest.approx(0.23287, abs=1e-4)
    assert float(out[0, 0, 0]) == pytest.approx(float(expected[0, 0, 0]), abs=1e-5)


def test_random_weights_are_seeded() -> None:
    x = batch()
    a = load_backbone(TINY, "random", image_size=TINY_SIZE, seed=0)
    b = load_backbone(TINY, "random", image_size=TINY_SIZE, seed=0)
    c = load_backbone(TINY, "random", image_size=TINY_SIZE, seed=1)
    with torch.inference_mode():
        assert torch.equal(a(x), b(x))
        assert not torch.allclose(a(x), c(x))
    assert a.fingerprint == f"{TINY}|random(seed=0)|{TINY_SIZE}px|cls" != c.fingerprint
    assert a.random_init and not any(p.requires_grad for p in a.parameters())


def test_pooling_cls_plus_patch_mean_doubles_dim() -> None:
    bb = load_backbone(TINY, "random", image_size=TINY_SIZE, pooling="cls+mean")
    with torch.inference_mode():
        assert bb(batch()).shape == (2, 64)
    assert bb.embed_dim == 64


def test_local_weights_file_reloads_identically(tmp_path: Path) -> None:
    """A timm safetensors file and a Meta-style .pth (with mask_token) both give identical features."""
    from safetensors.torch import save_file

    src = load_backbone(TINY, "random", image_size=TINY_SIZE, seed=3)
    state = {k: v.contiguous() for k, v in src.model.state_dict().items()}
    save_file(state, tmp_path / "tiny.safetensors")
    meta_style = dict(state, mask_token=torch.zeros(1, 32))  # what Meta's checkpoints carry
    torch.save(meta_style, tmp_path / "dinov2_tiny_pretrain.pth")
    x = batch()
    with torch.inference_mode():
        expected = src(x)
        for name in ("tiny.safetensors", "dinov2_tiny_pretrain.pth"):
            bb = load_backbone(TINY, str(tmp_path / name), image_size=TINY_SIZE, seed=99)
            assert torch.equal(bb(x), expected), name
            assert bb.weights.startswith("sha256:") and not bb.random_init
            rebuilt = backbone_from_info(bb.info())
            assert torch.equal(rebuilt(x), expected)


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="other.safetensors.*do not fit"):
        load_backbone(TINY, str(tmp_path / "other.safetensors"), image_size=TINY_SIZE)


class NotWeights:
    pass


def test_pickled_objects_are_never_unpickled(tmp_path: Path) -> None:
    torch.save({"x": NotWeights()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="evil.pth.*safely"):
        read_state_dict(tmp_path / "evil.pth")


def test_missing_weights_file() -> None:
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_backbone(TINY, "/nope.pth", image_size=TINY_SIZE)


def test_bad_names_and_sizes() -> None:
    with pytest.raises(ValueError, match="unknown backbone 'dinov3'.*dinov2_vits14"):
        load_backbone("dinov3")
    with pytest.raises(ValueError, match="multiple of the patch size 14"):
        load_backbone(TINY, "random", image_size=225)


def test_pretrained_offline_without_cache_fails_fast_and_clearly(tmp_path: Path) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    Image.new("L", (32, 32)).save(tmp_path / "x.png")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dinosearch",
            "embed",
            "--images",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "--backbone",
            "dinov2_vitb14",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in ("dinov2_vitb14", str(tmp_path / "hf"), "--weights PATH", "--weights random"):
        assert needle in proc.stderr, (needle, proc.stderr)


def test_openclip_backbone_random_and_errors() -> None:
    bb = load_backbone("openclip:ViT-S-32", "random")
    with torch.inference_mode():
        assert bb(batch(224, n=1)).shape == (1, bb.embed_dim)
    assert bb.fingerprint.startswith("openclip:ViT-S-32|random(seed=0)|224px")
    assert bb.preprocess.mean[0] == pytest.approx(
        0.48145466
    )  # CLIP statistics, from its own config
    with pytest.raises(ValueError, match="hf-hub"):
        load_backbone("openclip:ViT-S-32", "pretrained")


class Flat(torch.nn.Module):
    """The smallest backbone model: flatten a (B, 3, 4, 4) image into (B, 48) features."""

    output_dim = 48

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)


FLAT = Preprocess(
    image_size=4, resize_size=4, interpolation="bilinear", mean=(0, 0, 0), std=(1, 1, 1)
)


@pytest.fixture
def empty_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by a test vanish after it; the built-in ones stay."""
    monkeypatch.setattr(registry, "_backbones", dict(registry._backbones))
    monkeypatch.setattr(registry, "_families", dict(registry._families))


def test_a_registered_backbone_loads_by_name(empty_registry: None) -> None:
    @register_backbone("flat_test", description="flattens the pixels")
    def flat(name: str, weights: str, *, image_size: int, pooling: Pooling, seed: int) -> Backbone:
        return Backbone(Flat(), name=name, weights=f"random(seed={seed})", preprocess=FLAT)

    bb = load_backbone("flat_test", "random", seed=5)
    assert (
        "flat_test" in list_backbones() and registry.describe("flat_test") == "flattens the pixels"
    )
    assert bb.embed_dim == 48 and bb(batch(4, n=3)).shape == (3, 48)
    assert bb.fingerprint == "flat_test|random(seed=5)|4px|cls"
    assert bb.load_args == {
        "name": "flat_test",
        "weights": "random",
        "image_size": 224,
        "pooling": "cls",
        "seed": 5,
    }
    assert backbone_from_info(bb.info()).fingerprint == bb.fingerprint


def test_a_registered_family_receives_the_rest_of_the_name(empty_registry: None) -> None:
    seen = []

    @register_family("tiny:", arg="seed")
    def tiny(rest: str, weights: str, *, image_size: int, pooling: Pooling, seed: int) -> Backbone:
        seen.append(rest)  # a family may read anything from its part of the name
        bb = load_backbone(TINY, weights, image_size=image_size, pooling=pooling, seed=int(rest))
        bb.name = f"tiny:{rest}"
        return bb

    bb = load_backbone("tiny:7", "random", image_size=TINY_SIZE, pooling="cls+mean")
    assert seen == ["7"] and bb.embed_dim == 64
    assert bb.fingerprint == f"tiny:7|random(seed=7)|{TINY_SIZE}px|cls+mean"
    assert bb.load_args["name"] == "tiny:7" and bb.load_args["seed"] == 0
    assert "tiny:<seed>" in registry.list_families()
    with pytest.raises(
        ValueError, match=r"unknown backbone 'tinyx'.*or openclip:<model> or tiny:<seed>"
    ):
        load_backbone("tinyx")


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(ValueError) as e:
        load_backbone("dinov3", "random")
    known = ", ".join(list_backbones())
    assert str(e.value) == f"unknown backbone 'dinov3'; known: {known} or openclip:<model>"
    with pytest.raises(ValueError, match="pooling 'gem' must be 'cls' or 'cls\\+mean'"):
        load_backbone(TINY, "random", image_size=TINY_SIZE, pooling="gem")  # type: ignore[arg-type]


def test_cli_lists_every_backbone_and_family(capsys: pytest.CaptureFixture[str]) -> None:
    from dinosearch.cli import backbones

    assert backbones.run(argparse.Namespace()) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("dinov2_tiny_test       timm:vit_small_patch14_dinov2      ")
    assert lines[-2] == (
        "dinov2_vits14_reg      timm:vit_small_patch14_reg4_dinov2      "
        "timm/vit_small_patch14_reg4_dinov2.lvd142m"
    )
    assert lines[-1].startswith(
        "openclip:<model>       OpenCLIP image tower, e.g. openclip:hf-hub:"
    )


@pytest.mark.parametrize(
    "module", ["dinosearch.backbones.openclip", "dinosearch.backbones.backbone"]
)
def test_import_needs_neither_open_clip_nor_timm(module: str) -> None:
    """In a fresh interpreter: no import cycle, and the heavy libraries wait for a backbone to be built."""
    code = (
        f"import sys, {module}, dinosearch.backbones as b; "
        "assert 'openclip:<model>' in b.list_families() and 'dinov2_vits14' in b.list_backbones(); "
        "print(sorted({'open_clip', 'timm'} & set(sys.modules)))"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
