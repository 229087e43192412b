"""Write errors and hostile pointer files: a full or read-only disk is one line (exit 2) with the old
data intact and nothing broken published; `current` as a FIFO or /dev/zero fails fast and small;
appending another column type is one line; a list-typed `label` column trains."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from forking import in_child
from helpers import TINY_CLI, write_features_folder

from dinosearch.cli import main
from dinosearch.index import build_index, open_index
from dinosearch.index.publish import current_version, list_versions

INFO = {"name": "synthetic", "fingerprint": "fp-synthetic"}


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real small filesystem at ``path`` (root only; skipped where mounting is not allowed)."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _features(folder: Path, n: int, prefix: str, label: object = "a") -> Path:
    rng = np.random.default_rng(n)
    ids = [f"{prefix}{i}" for i in range(n)]
    meta = {"id": ids, "path": [f"/x/{i}.png" for i in ids], "label": [label] * n}
    return write_features_folder(folder, rng.normal(size=(n, 64)), meta, INFO)


def _fill(mount: Path, free: int) -> None:
    """Leave about ``free`` bytes free on ``mount``."""
    filler = mount / "filler"
    filler.unlink(missing_ok=True)
    avail = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
    with open(filler, "wb") as f:
        f.write(b"\0" * max(avail - free, 0))


def _one_line(err: str, what: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and what in lines[0], err


def test_full_disk_during_append_publishes_nothing_broken(tmp_path: Path, capsys) -> None:
    """A 1 MiB tmpfs filled to leave 0–96 KiB free before `index --append` of 200 rows: every run
    publishes a whole verified version or fails with one line, exit 2, the old version live."""
    base = _features(tmp_path / "base", 6, "b")
    more = _features(tmp_path / "more", 200, "m")
    failed = broken = 0
    with tmpfs(tmp_path / "disk", "1m") as disk:
        for free in range(0, 96 * 1024 + 1, 4096):
            shutil.rmtree(disk / "idx", ignore_errors=True)
            (disk / "filler").unlink(missing_ok=True)
            build_index(base, disk / "idx", index_type="flat", use_gpu=False)
            _fill(disk, free)
            rc = main(["index", "--features", str(more), "--out", str(disk / "idx"), "--append"])
            err = capsys.readouterr().err
            assert rc in (0, 2), err
            if rc == 2:
                failed += 1
                _one_line(err, "no space left on device writing")
                assert "free space or choose another --out" in err
            for version in list_versions(disk / "idx"):
                try:
                    open_index(disk / "idx", version=version, verify=True)
                except (ValueError, OSError, RuntimeError):
                    broken += 1
            handle = open_index(disk / "idx", verify=True)
            assert handle.index.ntotal == (6 if rc == 2 else 206)
    assert broken == 0
    assert failed >= 3  # the sweep did hit the full disk


def test_injected_enospc_at_every_fsync_keeps_the_old_version(tmp_path: Path, monkeypatch) -> None:
    """Where no tmpfs can be mounted: ENOSPC raised at each fsync of an append in turn."""
    base, more = _features(tmp_path / "base", 6, "b"), _features(tmp_path / "more", 20, "m")
    out = tmp_path / "idx"
    build_index(base, out, index_type="flat", use_gpu=False)
    real, calls = os.fsync, {"made": 0, "fail_at": 0}

    def failing(fd: int) -> None:
        calls["made"] += 1
        if calls["made"] == calls["fail_at"]:
            raise OSError(28, os.strerror(28))
        real(fd)

    monkeypatch.setattr(os, "fsync", failing)
    for fail_at in range(1, 12):
        calls.update(made=0, fail_at=fail_at)
        live = current_version(out)
        try:
            build_index(more, out, append=True, use_gpu=False)
        except OSError as e:
            assert e.errno == 28
        handle = open_index(out, verify=True)  # old, or whole and new (an fsync after the switch)
        assert (handle.version, handle.index.ntotal) == (live, 6) or handle.index.ntotal == 26
        for version in list_versions(out):
            open_index(out, version=version, verify=True)
        if handle.index.ntotal == 26:  # published: start again from the 6-row version
            calls.update(fail_at=0)
            shutil.rmtree(out)
            build_index(base, out, index_type="flat", use_gpu=False)


def test_read_only_disk_is_one_line_for_each_writer(tmp_path: Path, tiny_demo, capsys) -> None:
    """`index --append`, `embed`, `train` and `eval --out` onto a read-only filesystem."""
    base, more = _features(tmp_path / "base", 6, "b"), _features(tmp_path / "more", 20, "m")
    images = tiny_demo / "images.csv"
    raw, adapted = tiny_demo / "indexes" / "t-raw", tiny_demo / "indexes" / "t-adapted"
    with tmpfs(tmp_path / "disk", "4m") as disk:
        build_index(base, disk / "idx", index_type="flat", use_gpu=False)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        commands = [
            ["index", "--features", str(more), "--out", str(disk / "idx"), "--append"],
            [
                "embed",
                "--images",
                str(images),
                "--out",
                str(disk / "f"),
                *TINY_CLI,
                "--workers",
                "0",
            ],
            ["train", "--images", str(images), "--out", str(disk / "ad"), *TINY_CLI]
            + ["--views", "2", "--epochs", "1", "--train-batch-size", "4", "--workers", "0"]
            + ["--cache-dir", str(tmp_path / "cache"), "--no-progress"],
            ["eval", "--raw", str(raw), "--adapted", str(adapted), "--bootstrap", "20"]
            + ["--out", str(disk / "rep")],
        ]
        for argv in commands:
            assert main(argv) == 2, argv
            _one_line(capsys.readouterr().err, "read-only file system writing")
        assert open_index(disk / "idx", verify=True).index.ntotal == 6


def _pointer_case(kind: str, root: Path) -> Path:
    shutil.copytree(root, root.with_name(kind))
    index = root.with_name(kind)
    (index / "current").unlink()
    if kind == "fifo":
        os.mkfifo(index / "current")
    else:
        (index / "current").symlink_to("/dev/zero")
    return index


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_hostile_current_fails_fast_and_small(kind: str, tmp_path: Path) -> None:
    base = _features(tmp_path / "base", 6, "b")
    index = _pointer_case(kind, build_index(base, tmp_path / "idx", use_gpu=False).path)

    def resolve() -> str:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) for line in f if line.startswith("VmSize:")) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + (256 << 20), hard))  # old code: MemoryError
        try:
            current_version(index)
        except ValueError as e:
            return str(e)
        return "no error"

    outcome = in_child(resolve, timeout=20)
    assert outcome.status == "ok", outcome.value
    assert outcome.value.startswith(f"{index / 'current'}: not a regular file"), outcome.value
    assert outcome.seconds < 10


def test_append_of_another_column_type_is_one_line(tmp_path: Path, capsys) -> None:
    base = _features(tmp_path / "base", 6, "b", label="a")
    ints = _features(tmp_path / "ints", 4, "i", label=3)
    build_index(base, tmp_path / "idx", use_gpu=False)
    rc = main(["index", "--features", str(ints), "--out", str(tmp_path / "idx"), "--append"])
    err = capsys.readouterr().err
    assert rc == 2
    _one_line(err, f"cannot append {ints / 'metadata.parquet'} to ")
    assert (
        "versions/v000001/manifest.json" in err
        and "'label' (large_string there, int64 here)" in err
    )
    assert open_index(tmp_path / "idx").index.ntotal == 6


def test_list_typed_label_trains(image_folder, tmp_path: Path, capsys) -> None:
    """A multi-label Parquet manifest (label: list<string>) trains like `a|b` strings would."""
    paths = sorted(str(p) for p in image_folder.rglob("*.png"))
    labels = [[p.split("/")[-2], "chest"] for p in paths]
    pd.DataFrame({"path": paths, "label": labels}).to_parquet(tmp_path / "images.parquet")
    argv = ["train", "--images", str(tmp_path / "images.parquet"), "--out", str(tmp_path / "ad")]
    argv += [*TINY_CLI, "--views", "2", "--epochs", "1", "--train-batch-size", "4"]
    argv += ["--workers", "0", "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err


def test_a_write_error_faiss_would_only_print_raises(tmp_path: Path) -> None:
    """faiss reports a failed fclose by printing "close error"; our writer raises (/dev/full
    fails every flush with ENOSPC, at close for a small index)."""
    import faiss

    from dinosearch.index.files import write_index_file

    index = faiss.IndexFlatIP(8)
    index.add(np.random.default_rng(0).normal(size=(10, 8)).astype(np.float32))
    with pytest.raises(OSError) as caught:
        write_index_file(index, Path("/dev/full"))
    assert caught.value.errno == 28
    assert write_index_file(index, tmp_path / "ok.faiss") == (tmp_path / "ok.faiss").stat().st_size


def test_index_lost_at_close_is_never_published(tmp_path: Path, monkeypatch, capsys) -> None:
    """faiss's own file writer losing the index at close (what a quota or a disk filling at that
    instant does: a 0-byte file, "close error" printed, nothing raised) must not become `current`."""
    import faiss

    real = faiss.write_index

    def lossy(index: faiss.Index, dest: object) -> None:
        real(index, dest)
        if isinstance(dest, str):  # faiss's fopen/fclose path: the bytes are gone, no error
            os.truncate(dest, 0)
            print(f"file {dest} close error: No space left on device")

    base, more = _features(tmp_path / "base", 6, "b"), _features(tmp_path / "more", 20, "m")
    build_index(base, tmp_path / "idx", use_gpu=False)
    monkeypatch.setattr(faiss, "write_index", lossy)
    main(["index", "--features", str(more), "--out", str(tmp_path / "idx"), "--append"])
    capsys.readouterr()
    for version in list_versions(tmp_path / "idx"):
        open_index(tmp_path / "idx", version=version, verify=True)
    assert open_index(tmp_path / "idx").index.ntotal == 26
