"""Concurrent writers: one writer per folder (core.lock), compare-and-swap publish, no lost appends;
adapter and report folders swapped whole (a kill at any step leaves the old one or the new one)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from forking import DELETES, RENAMES, Trap, count_calls, finish, in_child, start
from helpers import save_untrained_adapter, write_features_folder

from dinosearch.adapt.adapter import AdapterConfig, DomainAdapter, load_adapter, save_adapter
from dinosearch.core.lock import lock_path, writing
from dinosearch.index import build_index, open_index
from dinosearch.index.publish import current_version, list_versions, publish

DIM = 8
TRIALS = 50  # of 2–4 concurrent appends each


def _folder(root: Path, name: str, ids: list[str], backbone_info: dict) -> Path:
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    meta = {"id": ids, "path": [f"/x/{i}.png" for i in ids], "label": ["a"] * len(ids)}
    return write_features_folder(root / name, rng.normal(size=(len(ids), DIM)), meta, backbone_info)


@pytest.fixture(scope="module")
def append_sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A base features folder of 6 rows and 4 folders of 3 new rows each (other ids)."""
    root = tmp_path_factory.mktemp("appends")
    info = {"name": "synthetic", "fingerprint": "fp-synthetic"}
    base = _folder(root, "base", [f"b{i}" for i in range(6)], info)
    extra = [_folder(root, f"x{k}", [f"x{k}_{i}" for i in range(3)], info) for k in range(4)]
    return base, extra


@pytest.fixture
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder on /dev/shm where there is one (fsync costs nothing on tmpfs), else ``tmp_path``."""
    if not Path("/dev/shm").is_dir():
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="dinosearch-test-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_concurrent_appends_lose_no_rows(append_sources, fast_dir: Path) -> None:
    """≥ 50 trials of 2–4 processes appending into one index at once: every row arrives."""
    base, extra = append_sources
    tmp_path = fast_dir
    lost, failed, rng = 0, [], np.random.default_rng(0)
    build_index(base, tmp_path / "base", index_type="flat", use_gpu=False)
    for trial in range(TRIALS):
        out = tmp_path / f"idx{trial}"
        shutil.copytree(tmp_path / "base", out)
        writers = extra[: int(rng.integers(2, 5))]
        children = [
            start(lambda f=f, o=out: build_index(f, o, append=True, use_gpu=False).version)
            for f in writers
        ]
        outcomes = [finish(c, timeout=120) for c in children]
        failed += [o.value for o in outcomes if o.status != "ok"]
        handle = open_index(out, verify=True)
        ids = set(handle.table.column("id").to_pylist())
        expected = {f"b{i}" for i in range(6)} | {
            f"x{k}_{i}" for k in range(len(writers)) for i in range(3)
        }
        lost += len(expected - ids)
        assert handle.index.ntotal == handle.table.num_rows == len(ids)
    assert not failed, failed[:1]
    assert lost == 0


def test_publish_refuses_a_stale_base(append_sources, tmp_path: Path) -> None:
    base, extra = append_sources
    out = tmp_path / "idx"
    build_index(base, out, index_type="flat", use_gpu=False)
    first = current_version(out)
    build_index(extra[0], out, append=True, use_gpu=False)  # another writer publishes meanwhile
    staged = out / ".staging-manual"
    staged.mkdir()
    (staged / "x").write_text("x")
    with pytest.raises(ValueError, match=f"not {first} this write started from"):
        publish(out, staged, "v000009", base=first)
    assert list_versions(out) == ["v000001", "v000002"] and current_version(out) == "v000002"


def test_a_held_lock_gives_one_line_after_the_timeout(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    with writing(out, "index --append"):
        began = time.monotonic()
        with pytest.raises(ValueError) as caught, writing(out, "index", timeout=0.3):
            pass
        assert time.monotonic() - began < 5
    line = str(caught.value)
    assert "\n" not in line
    assert f"another `dinosearch index --append` is writing {out} (pid {os.getpid()}, since" in line
    assert "wait for it or stop it" in line
    assert lock_path(out).parent == tmp_path  # beside the folder: a whole-folder swap keeps it
    with writing(out, "index", timeout=0.3):  # released: the next writer gets it at once
        pass


def test_two_embeds_into_one_out_both_finish(image_folder, tiny_backbone, tmp_path: Path) -> None:
    """Two concurrent `embed`s into one --out: the second waits for the first; neither dies on
    the other's .partial files, and the folder holds one whole, verified result."""
    from dinosearch.features.folder import embed_to_folder, load_features
    from dinosearch.inputs.records import load_records

    records, _ = load_records(image_folder)
    out = tmp_path / "feats"

    def embed() -> int:
        fs = embed_to_folder(records, tiny_backbone, out, num_workers=0, progress=False)
        return len(fs.features)

    for _ in range(3):
        children = [start(embed) for _ in range(2)]
        outcomes = [finish(c, timeout=300) for c in children]
        assert [o.status for o in outcomes] == ["ok", "ok"], [o.value for o in outcomes]
        assert [o.value for o in outcomes] == [len(records)] * 2
        assert len(load_features(out, verify=True).features) == len(records)
        assert not out.with_name(out.name + ".partial").exists()


def _adapter(seed: int) -> DomainAdapter:
    import torch

    torch.manual_seed(seed)
    net = DomainAdapter(AdapterConfig(in_dim=32, bottleneck=8))
    net.set_standardization(np.random.default_rng(seed).normal(size=(10, 32)))
    return net


def test_killed_adapter_save_leaves_the_old_or_the_new(tiny_backbone, tmp_path: Path) -> None:
    """SIGKILL before and after every rename and deletion step of saving over an adapter folder:
    the folder always loads, as the previous adapter or the new one (history included)."""
    folder = tmp_path / "ad"
    old = save_untrained_adapter(folder, tiny_backbone)
    snapshot = {p.name: p.read_bytes() for p in folder.iterdir()}

    def save() -> str:
        return save_adapter(
            _adapter(7),
            folder,
            backbone_fingerprint=tiny_backbone.fingerprint,
            train_config={},
            data={},
            metrics={},
            extra={"history.json": {"history": [{"epoch": 0}]}},
        )

    outcome, calls = count_calls(save, RENAMES + DELETES)
    assert outcome.status == "ok", outcome.value
    new = outcome.value
    seen = set()
    for at in range(1, calls + 1):
        for after in (False, True):
            for p in folder.iterdir():  # back to the old folder
                p.unlink()
            for name, data in snapshot.items():
                (folder / name).write_bytes(data)
            result = in_child(save, trap=Trap(RENAMES + DELETES, at, after=after))
            assert result.status in ("killed", "ok"), result.value
            loaded = load_adapter(folder).fingerprint
            assert loaded in (old, new)
            history = folder / "history.json"
            assert history.is_file() == (loaded == new)
            seen.add(loaded)
    assert seen == {old, new}


def _report_inputs(tiny_demo: Path) -> tuple[dict, dict]:
    data = json.loads(next((tiny_demo / "reports").rglob("report.json")).read_text())
    return data["result"], data["meta"]


def test_report_folder_is_old_or_new(tiny_demo, tmp_path: Path, monkeypatch) -> None:
    """A failing plot, or a kill at any step of `eval --out`'s write, leaves the old report whole."""
    from dinosearch.evaluate import report

    result, meta = _report_inputs(tiny_demo)
    out = tmp_path / "rep"
    report.write_report(result, {**meta, "seed": "old"}, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken_plot(*args: object) -> None:
        raise RuntimeError("mathtext error")

    with monkeypatch.context() as m:
        m.setattr(report, "plot", broken_plot)
        with pytest.raises(RuntimeError):
            report.write_report(result, {**meta, "seed": "new"}, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [".rep.lock", ".rep.lock.holder", "rep"]  # nothing staged is left

    def write() -> None:
        report.write_report(result, {**meta, "seed": "new"}, out)

    outcome, calls = count_calls(write, RENAMES + DELETES)
    assert outcome.status == "ok"
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    for at in range(1, calls + 1):
        report.write_report(result, {**meta, "seed": "old"}, out)
        killed = in_child(write, trap=Trap(RENAMES + DELETES, at))
        assert killed.status in ("killed", "ok"), killed.value
        now = {p.name: p.read_bytes() for p in out.iterdir()}
        assert now in (before, after)
        seed = json.loads(now["report.json"])["meta"]["seed"]
        assert now == (before if seed == "old" else after)


def test_list_labels_are_coded_like_joined_strings() -> None:
    from dinosearch.adapt.train import _codes
    from dinosearch.core.metrics import label_indicator

    lists = pd.DataFrame({"label": [np.array(["a", "b"]), ["a"], None, ["b", "a"], ["a", "b"]]})
    strings = pd.DataFrame({"label": ["a|b", "a", None, "b|a", "a|b"]})
    assert np.array_equal(_codes(lists, "label"), _codes(strings, "label"))
    ind_l, names_l = label_indicator(lists["label"].tolist())
    ind_s, names_s = label_indicator(strings["label"].tolist())
    assert names_l == names_s == ["a", "b"] and np.array_equal(ind_l, ind_s)
