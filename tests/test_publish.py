"""Versioned publishing: a crash or a kill at any step leaves the previous version live and readable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dinosearch.index import build_index, current_version, list_versions, open_index

# Child: rebuild the index, SIGKILLing itself at one step of the publish.
CHILD = textwrap.dedent("""
    import os, signal, sys
    import dinosearch.index.build as ix, dinosearch.index.files as files, dinosearch.index.publish as pub
    features, out, step = sys.argv[1:]
    die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    if step == "files":      # index.faiss and metadata.parquet written in staging, nothing published
        files.sha256_file = die
    elif step == "rename":   # version folder in versions/, `current` not yet switched
        pub._switch_current = die
    elif step == "pointer":  # new `current` written to its temporary name, not yet renamed
        real = os.replace
        os.replace = lambda a, b: die() if str(b).endswith("current") else real(a, b)
    ix.build_index(features, out)
""")


@pytest.mark.parametrize("step", ["files", "rename", "pointer"])
def test_killed_mid_publish_leaves_previous_version(
    synthetic_features: Path, tmp_path: Path, step: str
) -> None:
    out = tmp_path / "idx"
    before = build_index(synthetic_features, out)
    queries = before.vectors()[:5]
    expected = before.search(queries, 5)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(synthetic_features), str(out), step],
        capture_output=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    after = open_index(out)  # verifies checksums, counts and dimension
    assert after.version == "v000001"
    np.testing.assert_array_equal(after.search(queries, 5)[1], expected[1])
    # the next build cleans the dead builder's staging folder and publishes past any orphan
    again = build_index(synthetic_features, out)
    assert current_version(out) == again.version != "v000001"
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]


def test_failure_between_steps_keeps_previous(
    synthetic_features: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dinosearch.index.publish as pub

    out = tmp_path / "idx"
    build_index(synthetic_features, out)

    def fail(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(pub, "fsync_dir", fail)
    with pytest.raises(OSError, match="disk full"):
        build_index(synthetic_features, out)
    monkeypatch.undo()
    assert open_index(out).version == "v000001"
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]


def test_versions_are_pruned(synthetic_features: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx"
    for _ in range(5):
        build_index(synthetic_features, out, keep=2)
    assert list_versions(out) == ["v000004", "v000005"]
    assert current_version(out) == "v000005"
    (out / "current").write_text("v000001\n")
    with pytest.raises(ValueError, match="v000001"):
        open_index(out)


def test_reader_keeps_working_across_publishes(synthetic_features: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx"
    build_index(synthetic_features, out)
    reader = open_index(out)
    build_index(synthetic_features, out)
    assert reader.search(reader.vectors()[:2], 3)[1].shape == (2, 3)  # loaded copy unaffected
    assert open_index(out).version == "v000002"
    assert os.path.isdir(out / "versions" / "v000001")  # kept for readers still on it
