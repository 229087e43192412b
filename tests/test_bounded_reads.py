"""Issue 21, classes 6 and 10 beyond one file: manifests and remote objects are read with a bound,
and films read with a warning (a DICOM window dropped) are counted by both embed engines."""

from __future__ import annotations

import io
import os
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers import ramp, write_dicom


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs are POSIX")
def test_manifest_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    from dinosearch.inputs.records import load_records

    fifo = tmp_path / "images.csv"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def load() -> None:
        try:
            load_records(fifo)
        except BaseException as e:
            outcome.append(e)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock the reader, then fail
        with open(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK), "wb"):
            pass
        pytest.fail("load_records blocked on a FIFO manifest")
    assert len(outcome) == 1 and isinstance(outcome[0], ValueError)
    assert "FIFO" in str(outcome[0]) and "images.csv" in str(outcome[0])


def test_manifest_over_the_size_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dinosearch.inputs import records

    manifest = tmp_path / "images.csv"
    manifest.write_text("path\n" + "".join(f"a{i}.png\n" for i in range(1000)))
    monkeypatch.setattr(records, "MAX_MANIFEST_BYTES", 1000, raising=False)
    with pytest.raises(ValueError, match="DINOSEARCH_MAX_MANIFEST_BYTES"):
        records.load_records(manifest)


class _Counted(io.BytesIO):
    """A remote object's bytes that count how many were read."""

    read_total = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        _Counted.read_total += len(data)
        return data


def _counting_filesystem() -> Any:
    from fsspec.implementations.memory import MemoryFileSystem

    class Counting(MemoryFileSystem):
        protocol = "countmem"
        store: dict[str, Any] = {}
        pseudo_dirs = [""]

        @classmethod
        def _strip_protocol(cls, path: str) -> str:
            return super()._strip_protocol(path.removeprefix("countmem://"))

        def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
            if "r" in mode:
                return _Counted(self.cat_file(path))
            return super()._open(path, mode, **kwargs)

    return Counting


def test_remote_fetch_stops_at_the_size_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fsspec

    from dinosearch.features import remote

    fs_class = _counting_filesystem()
    fsspec.register_implementation("countmem", fs_class, clobber=True)
    fs = fs_class()
    fs.pipe_file("/films/big.png", bytes(32 << 20))  # 32 MiB object
    fs.pipe_file("/films/small.png", bytes(1000))
    monkeypatch.setattr(remote, "MAX_FILE_BYTES", 2 << 20, raising=False)
    _Counted.read_total = 0
    local, failures = remote.fetch(
        ["countmem:///films/big.png", "countmem:///films/small.png"], tmp_path
    )
    assert set(failures) == {0} and "limit" in failures[0]
    assert _Counted.read_total <= (2 << 20) + 1000 + (1 << 20)  # stopped within one block
    assert not Path(local[0]).exists()  # the partial copy is gone
    assert Path(local[1]).stat().st_size == 1000


def test_embed_counts_dicom_window_fallbacks(
    tmp_path: Path, image_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The film is embedded, and the summary, the manifest and warnings.csv say its window was dropped."""
    from test_embed import TINY_ARGS

    from dinosearch.cli import main
    from dinosearch.features.folder import load_features

    folder = tmp_path / "imgs"
    shutil.copytree(image_folder, folder)
    write_dicom(folder / "ct_window_misses.dcm", ramp(64, 64), window=(40_000, 400))
    out = tmp_path / "feats"
    assert main(["embed", "--images", str(folder), "--out", str(out), *TINY_ARGS]) == 0
    printed = capsys.readouterr().out
    assert "1 images embedded with a warning" in printed and "ct_window_misses.dcm" in printed
    fs = load_features(out, verify=True)
    assert fs.manifest["warnings"] == 1 and fs.manifest["skipped"] == 0
    assert fs.metadata["path"].str.endswith("ct_window_misses.dcm").any()
    notes = pd.read_csv(out / "warnings.csv")
    assert notes["path"].str.endswith("ct_window_misses.dcm").all() and len(notes) == 1
    assert notes["warning"].str.contains("no contrast").all()


def test_ray_rows_carry_warnings_into_the_shard(tmp_path: Path, tiny_backbone: Any) -> None:
    """The Ray engine's per-batch function and shard writer (no Ray needed to run them)."""
    from dinosearch.features.ray_engine import Embedder, _save

    films = [
        write_dicom(tmp_path / "miss.dcm", ramp(64, 64), window=(40_000, 400)),
        write_dicom(tmp_path / "fine.dcm", ramp(64, 64)),
        tmp_path / "missing.png",
    ]
    embedder = Embedder.__new__(Embedder)  # the model replica, without loading weights again
    embedder.backbone, embedder.batch_size, embedder.num_workers = tiny_backbone, 4, 0
    rows = embedder({"position": np.array([7, 8, 9]), "path": np.array([str(f) for f in films])})
    assert "no contrast" in rows["warning"][0] and rows["warning"][1] == ""
    _save([rows], tmp_path / "shard.npz")
    with np.load(tmp_path / "shard.npz") as z:
        assert z["positions"].tolist() == [7, 8] and z["fail_pos"].tolist() == [9]
        assert z["warn_pos"].tolist() == [7] and "no contrast" in str(z["warn_reason"][0])
