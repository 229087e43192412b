"""The uint8 loader gives the features of the float path; fp16 / compile only on CUDA, in the fingerprint.

Tolerances. On CPU the uint8 route equals the float route exactly for grayscale and RGB images:
both resize with Pillow's bicubic on 8-bit pixels (the float route converts to RGB first, and
Pillow resizes each channel alike), then apply the same float32 operations in the same order. The
tests allow ``atol=1e-5, rtol=1e-4`` for BLAS rounding between batch shapes only (measured: 0.0 on
the dev X-rays, ViT-S/14). Large JPEGs are decoded at reduced size (Pillow's draft mode): the
pixels change (mean |Δ| ≈ 2 grey levels), so those features are held to cosine ≥ 0.999 instead
(measured 0.99997). On CUDA, fp16 autocast, fp16 weights and ``torch.compile`` round differently
from fp32: features are held to cosine ≥ 0.999 with the fp32 ones.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY, TINY_CLI, TINY_SIZE
from PIL import Image

from dinosearch.backbones import Backbone, load_backbone
from dinosearch.backbones.transforms import Normalizer, eval_transform, uint8_transform
from dinosearch.cli import main
from dinosearch.features.extract import default_batch_size, extract_features
from dinosearch.features.loader import collate, read_reduced
from dinosearch.inputs.images import ImageReadError, read_image

EXACT = {"rtol": 1e-4, "atol": 1e-5}


def float_route(paths: list[str], backbone: Backbone, batch: int = 32) -> np.ndarray:
    """The old path: read_image → eval_transform → backbone, (n, D) float32."""
    transform = eval_transform(backbone.preprocess)
    x = torch.stack([transform(read_image(p)) for p in paths])
    with torch.inference_mode():
        return torch.cat([backbone(x[i : i + batch]) for i in range(0, len(x), batch)]).numpy()


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def xrays(cxr_dir: Path) -> list[str]:
    """24 dev X-rays: the shared set where ../shared exists, else the bundled sample."""
    return [str(p) for p in sorted((cxr_dir / "images").glob("*.jpg"))[:24]]


@pytest.mark.parametrize("workers", [0, 2])
def test_uint8_route_equals_float_route_on_synthetic_images(
    image_folder: Path, tiny_backbone: Backbone, workers: int
) -> None:
    paths = sorted(str(p) for p in image_folder.rglob("*.*"))
    pos, feats, failures = extract_features(
        paths, tiny_backbone, batch_size=5, num_workers=workers, progress=False
    )
    assert failures == [] and pos.tolist() == list(range(len(paths)))
    np.testing.assert_allclose(feats, float_route(paths, tiny_backbone, 5), **EXACT)


def test_uint8_route_equals_float_route_on_real_xrays(xrays: list[str]) -> None:
    """At 224 px (resize 256), as the dev X-rays are embedded: no draft decoding, same pixels."""
    backbone = load_backbone(TINY, "random", image_size=224)
    _, feats, failures = extract_features(xrays, backbone, num_workers=0, progress=False)
    assert failures == [] and len(feats) == len(xrays) > 0
    np.testing.assert_allclose(feats, float_route(xrays, backbone), **EXACT)


def test_grayscale_and_colour_share_a_batch(tiny_backbone: Backbone) -> None:
    pre = tiny_backbone.preprocess
    rng = np.random.default_rng(0)
    gray = Image.fromarray(rng.integers(0, 256, (70, 90), dtype=np.uint8))
    colour = Image.fromarray(rng.integers(0, 256, (80, 64, 3), dtype=np.uint8))
    to_uint8 = uint8_transform(pre)
    assert to_uint8(gray).shape == (1, TINY_SIZE, TINY_SIZE) and to_uint8(gray).dtype == torch.uint8
    batch = collate([(0, to_uint8(gray), None), (1, None, "bad"), (2, to_uint8(colour), None)])
    assert batch.images is not None and batch.images.shape == (2, 3, TINY_SIZE, TINY_SIZE)
    assert batch.indices.tolist() == [0, 2] and batch.failures == [(1, "bad")]
    want = torch.stack([eval_transform(pre)(gray), eval_transform(pre)(colour)])
    assert torch.equal(Normalizer(pre)(batch.images), want)


def test_bad_files_are_reported_as_before(tmp_path: Path, image_folder: Path) -> None:
    """The same reasons as read_image's, whichever reader the loader picks."""
    files = {"corrupt.jpg": b"\xff\xd8\xff\xe0 garbage", "empty.jpg": b"", "notes.txt": b"text"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    paths = [str(tmp_path / n) for n in files] + [str(tmp_path / "missing.png")]
    want = []
    for i, path in enumerate(paths):
        with pytest.raises(ImageReadError) as e:
            read_image(path)
        want.append((i, e.value.reason))
    good = str(next(image_folder.rglob("*.png")))
    backbone = load_backbone(TINY, "random", image_size=TINY_SIZE)
    pos, _, failures = extract_features([*paths, good], backbone, num_workers=0, progress=False)
    assert pos.tolist() == [len(paths)] and failures == want


def test_large_jpegs_decode_at_reduced_size(tmp_path: Path, xrays: list[str]) -> None:
    backbone = load_backbone(TINY, "random", image_size=224)
    pre = backbone.preprocess
    big = []
    for i, path in enumerate(xrays[:4]):
        img = read_image(path)
        img = img.resize((2048, round(2048 * img.height / img.width)), Image.Resampling.BICUBIC)
        img.save(tmp_path / f"big{i}.jpg", quality=90)
        big.append(str(tmp_path / f"big{i}.jpg"))
    reduced = read_reduced(pre.resize_size)(big[0])
    assert min(reduced.size) >= 2 * pre.resize_size and reduced.width < 2048
    small = str(tmp_path / "small.jpg")
    shutil.copy(xrays[0], small)
    assert read_reduced(pre.resize_size)(small).size == read_image(small).size  # left alone
    _, feats, _ = extract_features(big, backbone, num_workers=0, progress=False)
    assert cosine(feats, float_route(big, backbone)).min() >= 0.999


def test_speedups_need_cuda_and_leave_the_default_fingerprint_alone(
    tiny_backbone: Backbone, capsys: pytest.CaptureFixture[str]
) -> None:
    assert tiny_backbone.fingerprint == f"{TINY}|random(seed=0)|{TINY_SIZE}px|cls"
    assert set(tiny_backbone.load_args) == {"name", "weights", "image_size", "pooling", "seed"}
    with pytest.raises(ValueError, match="--half and --compile needs a CUDA device, not cpu"):
        load_backbone(TINY, "random", image_size=TINY_SIZE, half=True, compile=True)
    argv = ["embed", "--images", "x", "--out", "y", *TINY_CLI, "--device", "cpu", "--half"]
    assert main(argv) == 2 and "--half needs a CUDA device" in capsys.readouterr().err
    assert default_batch_size(torch.device("cpu")) == 32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name,size", [(TINY, 224), ("dinov2_vits14", 224)], ids=["tiny", "vits14"])
def test_cuda_variants_agree_with_fp32(xrays: list[str], name: str, size: int) -> None:
    """Default (fp16 autocast), fp16 weights, compile: cosine ≥ 0.999 with the CPU fp32 features."""
    reference = extract_features(
        xrays, load_backbone(name, "random", image_size=size), num_workers=0, progress=False
    )[1]
    variants: dict[str, Callable[[], Backbone]] = {
        "": lambda: load_backbone(name, "random", image_size=size, device="cuda"),
        "|fp16w": lambda: load_backbone(name, "random", image_size=size, device="cuda", half=True),
    }
    if name == TINY:  # compiling ViT-S/14 takes a minute; scripts/bench_embed.py --compile does it
        variants["|compiled"] = lambda: load_backbone(
            name, "random", image_size=size, device="cuda", compile=True
        )
    for suffix, make in variants.items():
        backbone = make()
        assert backbone.fingerprint.endswith(f"|{size}px|cls{suffix}")
        pos, feats, _ = extract_features(xrays, backbone, batch_size=16, progress=False)
        assert pos.tolist() == list(range(len(xrays)))
        assert cosine(feats, reference).min() >= 0.999, suffix
