"""``embed --engine ray``: a local 2-CPU Ray cluster gives the local engine's folder; resume by shard."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import TINY_CLI

from dinosearch.cli import main
from dinosearch.features.folder import load_features

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # one-machine cluster on loopback
ray = pytest.importorskip("ray", reason='Ray is an optional extra: pip install "dinosearch[ray]"')
ARGS = [*TINY_CLI, "--no-progress", "--shard-size", "4"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """One local Ray cluster for the module (starting one takes seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def films(tmp_path_factory: pytest.TempPathFactory, image_folder: Path) -> Path:
    """The dozen test images plus a corrupt PNG, an empty JPEG and a text file (14 records)."""
    folder = tmp_path_factory.mktemp("ray") / "films"
    shutil.copytree(image_folder, folder)
    (folder / "normal" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (folder / "empty.jpg").touch()
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def local(films: Path) -> Path:
    out = films.parent / "local"
    assert main(["embed", "--images", str(films), "--out", str(out), "--workers", "0", *ARGS]) == 0
    return out


def _same_folder(ray_out: Path, local_out: Path, strip: str = "") -> None:
    a, b = load_features(ray_out, verify=True), load_features(local_out, verify=True)
    np.testing.assert_allclose(a.features, b.features, rtol=1e-4, atol=1e-5)
    meta = a.metadata.assign(path=a.metadata["path"].str.removeprefix(strip))
    pd.testing.assert_frame_equal(meta, b.metadata)
    skipped = pd.read_csv(ray_out / "skipped.csv")
    skipped["path"] = skipped["path"].str.removeprefix(strip)
    pd.testing.assert_frame_equal(skipped, pd.read_csv(local_out / "skipped.csv"))
    for key in ("count", "dim", "skipped", "backbone"):
        assert a.manifest[key] == b.manifest[key], key


def test_ray_engine_over_a_uri_writes_the_local_engines_folder(
    cluster: None, films: Path, local: Path
) -> None:
    """Two replicas; the images read through file:// (the pyarrow/fsspec filesystem path)."""
    out = films.parent / "ray"
    argv = ["embed", "--images", f"file://{films}", "--out", str(out), "--engine", "ray"]
    assert main([*argv, *ARGS]) == 0
    _same_folder(out, local, strip="file://")
    assert len(pd.read_csv(out / "skipped.csv")) == 3  # corrupt, empty, not an image


def test_ray_resume_computes_only_the_missing_shards(
    cluster: None, films: Path, local: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed after shards 0 and 1 (14 records, shards of 4) is finished by Ray: 2 and 3 only."""
    from dinosearch.features import ray_engine
    from dinosearch.features import shards as featurestore

    out = films.parent / "resumed"
    argv = ["embed", "--images", str(films), "--out", str(out), *ARGS]
    real_write = featurestore.write_shard

    def killed_at_shard_2(shard, *args, **kwargs):  # type: ignore[no-untyped-def]
        if int(shard.stem) >= 2:
            raise KeyboardInterrupt
        real_write(shard, *args, **kwargs)

    monkeypatch.setattr(featurestore, "write_shard", killed_at_shard_2)
    assert main([*argv, "--workers", "0"]) == 130
    sent: list[list[int]] = []
    saved: list[str] = []
    real_embed, real_save = ray_engine.embed_shards, ray_engine._save
    monkeypatch.setattr(
        ray_engine,
        "embed_shards",
        lambda p, s, *a, **k: (sent.append(s), real_embed(p, s, *a, **k)),
    )
    monkeypatch.setattr(
        ray_engine,
        "_save",
        lambda parts, shard: (saved.append(shard.name), real_save(parts, shard)),
    )
    assert main([*argv, "--engine", "ray", "--actors", "1", "--resume"]) == 0
    assert sent == [[8, 12]] and sorted(saved) == ["00002.npz", "00003.npz"]
    _same_folder(out, local)
    assert load_features(out).manifest["images"] == load_features(local).manifest["images"]


def test_local_engine_never_imports_ray(tmp_path: Path, image_folder: Path) -> None:
    code = (
        "import sys; import dinosearch.features; from dinosearch.cli import main; "
        f"assert main(['embed', '--images', {str(image_folder)!r}, '--out', {str(tmp_path / 'o')!r}, "
        f"'--workers', '0', *{ARGS!r}]) == 0; "
        "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')], 'ray imported'"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
