"""Malformed files the tool loads (issue 13, item 9): each gives one line on stderr naming the file,
the field and what to do, and exit status 2; adapter.json is checked against the weights' header
before anything is allocated (item 6)."""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_CLI, edit_json

import dinosearch.adapt.adapter as adapter_module
from dinosearch.adapt.adapter import AdapterConfig, DomainAdapter, expected_shapes, load_adapter
from dinosearch.cli import main
from dinosearch.core.storage import sha256_file


def set_weights(folder: Path, data: bytes) -> None:
    """Replace adapter.safetensors and record its checksum, as a careful forger would."""
    (folder / "adapter.safetensors").write_bytes(data)
    digest = sha256_file(folder / "adapter.safetensors")
    edit_json(folder / "adapter.json", lambda d: d.update(sha256=digest))


def version_manifest(index: Path) -> Path:
    return index / "versions" / "v000001" / "manifest.json"


def adapter_case(change: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def setup(w: Path) -> list[str]:
        change(w / "adapter")
        return ["index", "--features", str(w / "features"), "--adapter", str(w / "adapter")]

    return setup


def index_case(change: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def setup(w: Path) -> list[str]:
        change(version_manifest(w / "adapted"))
        return ["search", "--index", str(w / "adapted"), "--image", str(w / "query.png")]

    return setup


def features_case(change: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def setup(w: Path) -> list[str]:
        change(w / "features")
        return ["index", "--features", str(w / "features")]

    return setup


def weights_case(write: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def setup(w: Path) -> list[str]:
        write(w / "x.safetensors")
        images = w / "images"
        images.mkdir()
        shutil.copy(w / "query.png", images / "a.png")
        args = [*TINY_CLI[:2], "--weights", str(w / "x.safetensors"), *TINY_CLI[4:]]
        return ["embed", "--images", str(images), *args]

    return setup


def misfit_weights(path: Path) -> None:
    from safetensors.torch import save_file

    from dinosearch.backbones import load_backbone

    state = load_backbone("dinov2_tiny_test", "random", image_size=56).model.state_dict()
    state = {k: v.contiguous() for k, v in state.items()}
    state["blocks.0.attn.qkv.weight"] = torch.zeros(10, 32)
    save_file(state, str(path))


def pickle_bytes() -> bytes:
    """A torch pickle: what a careless or hostile user saves under a .safetensors name."""
    buffer = io.BytesIO()
    torch.save({"weights": torch.zeros(3)}, buffer)
    return buffer.getvalue()


def adapter_json(change: Callable[[dict], object]) -> Callable[[Path], list[str]]:
    return adapter_case(lambda a: edit_json(a / "adapter.json", change))


def config(**values: object) -> Callable[[dict], object]:
    return lambda d: d["adapter_config"].update(values)


def index_json(change: Callable[[dict], object]) -> Callable[[Path], list[str]]:
    return index_case(lambda m: edit_json(m, change))


def features_json(change: Callable[[dict], object]) -> Callable[[Path], list[str]]:
    return features_case(lambda f: edit_json(f / "manifest.json", change))


def features_npy(array: np.ndarray) -> Callable[[Path], list[str]]:
    return features_case(lambda f: np.save(f / "features.npy", array, allow_pickle=True))


# edits of a JSON file → words the error line must hold (besides the file's name and a fix)
ADAPTER_JSON: dict[str, tuple[Callable[[dict], object], str]] = {
    "in_dim text": (config(in_dim="32"), "'adapter_config.in_dim' is '32'"),
    "without adapter_config": (lambda d: d.pop("adapter_config"), "adapter_config.in_dim"),
    "without backbone_fingerprint": (lambda d: d.pop("backbone_fingerprint"), "backbone_fing"),
    "a list": (lambda d: [d], "JSON object"),
    "bottleneck 1e8": (config(bottleneck=10**8), "'adapter_config.bottleneck' is 100000000"),
    "dropout 2": (config(dropout=2), "'adapter_config.dropout' is 2"),
}
INDEX_JSON: dict[str, tuple[Callable[[dict], object], str]] = {
    "without checksums": (lambda d: d.pop("checksums"), "'checksums.index.faiss' is missing"),
    "load_args unknown key": (
        lambda d: d["backbone"]["load_args"].update(colour=1),
        "unknown keys ['colour']",
    ),
    "count text": (lambda d: d.update(count="20x"), "'count' is '20x'"),
    "a list": (lambda d: [d], "JSON object"),
    "adapter without path": (lambda d: d["adapter"].pop("path"), "'adapter.path' is missing"),
}
FEATURES_JSON: dict[str, tuple[Callable[[dict], object], str]] = {
    "dim a list": (lambda d: d.update(dim=[32]), "'dim' is [32]"),
    "count text": (lambda d: d.update(count="abc"), "'count' is 'abc'"),
}
# other files: how to break a copy of the reliability folders (→ CLI argv), file named, words
FILES = {
    "pickle as adapter.safetensors": (
        adapter_case(lambda a: set_weights(a, pickle_bytes())),
        "adapter.safetensors",
        "not a safetensors file",
    ),
    "truncated adapter.safetensors": (
        adapter_case(lambda a: set_weights(a, (a / "adapter.safetensors").read_bytes()[:200])),
        "adapter.safetensors",
        "not a safetensors file",
    ),
    "pickle as --weights x.safetensors": (
        weights_case(lambda p: p.write_bytes(pickle_bytes())),
        "x.safetensors",
        "not a safetensors file",
    ),
    "weights of other shapes": (weights_case(misfit_weights), "x.safetensors", "do not fit"),
    "features.npy of objects": (
        features_npy(np.array([{"a": 1}] * 20)),
        "features.npy",
        "not a .npy array",
    ),
    "features.npy of text": (features_npy(np.full((20, 32), "x")), "features.npy", "(N, D)"),
    "metadata.parquet garbage": (
        features_case(lambda f: (f / "metadata.parquet").write_bytes(b"PAR1 junk")),
        "metadata.parquet",
        "unreadable",
    ),
}
CASES = [
    *(pytest.param(*case, id=name) for name, case in FILES.items()),
    *(
        pytest.param(adapter_json(edit), "adapter.json", words, id=f"adapter.json {name}")
        for name, (edit, words) in ADAPTER_JSON.items()
    ),
    *(
        pytest.param(index_json(edit), "manifest.json", words, id=f"index manifest {name}")
        for name, (edit, words) in INDEX_JSON.items()
    ),
    *(
        pytest.param(features_json(edit), "manifest.json", words, id=f"features manifest {name}")
        for name, (edit, words) in FEATURES_JSON.items()
    ),
]
FIXES = ("rebuild", "re-run", "re-embed", "retrain", "restore", "check --weights", "pick the")


@pytest.mark.parametrize(("setup", "named", "words"), CASES)
def test_malformed_file_is_one_line_naming_it(
    setup: Callable, named: str, words: str, reliability_folders: Path, tmp_path: Path, capsys
) -> None:
    work = Path(shutil.copytree(reliability_folders, tmp_path / "w"))
    argv = setup(work)
    if argv[0] == "index":
        argv += ["--out", str(work / "new-index")]
    else:
        argv += ["--out", str(work / "new-features")] if argv[0] == "embed" else []
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert named in err and words in err, err
    assert any(fix in err for fix in FIXES), err


def test_adapter_config_checked_before_allocating(
    reliability_folders: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = Path(shutil.copytree(reliability_folders / "adapter", tmp_path / "a"))
    edit_json(adapter / "adapter.json", lambda d: d["adapter_config"].update(bottleneck=10**12))

    def never(*args: object) -> None:
        raise AssertionError("DomainAdapter built before adapter.json was checked")

    monkeypatch.setattr(adapter_module.DomainAdapter, "__init__", never)
    with pytest.raises(ValueError, match=r"adapter_config.bottleneck' is 1000000000000 but"):
        load_adapter(adapter)


def test_expected_shapes_are_the_state_dict() -> None:
    config = AdapterConfig(in_dim=12, bottleneck=5)
    state = DomainAdapter(config).state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == expected_shapes(config)
