"""Issue 13 regressions: leftovers of killed runs are recovered or cleaned (items 2, 10), metadata
named like a result column is refused (item 8), an empty run says why (item 10). Kills and
concurrent queries: test_kill.py; malformed files: test_malformed.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from helpers import TINY_CLI, edit_json

from dinosearch.cli import main
from dinosearch.core.storage import sha256_file
from dinosearch.features.folder import embed_to_folder, load_features
from dinosearch.index import build_index, open_index
from dinosearch.inputs.records import load_records
from dinosearch.search import VectorSearcher

DEAD_PID = 999_999_999  # above any pid_max: never a live process


def add_column(folder: Path, column: str) -> None:
    """Add ``column`` to ``folder/metadata.parquet``, with the checksum its manifest.json expects."""
    table = folder / "metadata.parquet"
    pd.read_parquet(table).assign(**{column: 1}).to_parquet(table, index=False)
    digest = sha256_file(table)
    edit_json(folder / "manifest.json", lambda d: d["checksums"].update({table.name: digest}))


@pytest.mark.parametrize("column", ["rank", "score"])
def test_result_column_names_are_refused_at_embed_index_and_search(
    column: str, reliability_folders: Path, tmp_path: Path, image_folder: Path, tiny_backbone
) -> None:
    records, _ = load_records(image_folder)
    records[column] = 1
    with pytest.raises(ValueError, match=f"column '{column}' is reserved.*rename it"):
        embed_to_folder(records, tiny_backbone, tmp_path / "f", progress=False, num_workers=0)
    assert not (tmp_path / "f").exists()
    features = Path(
        shutil.copytree(reliability_folders / "features", tmp_path / "old")
    )  # made before
    add_column(features, column)
    with pytest.raises(ValueError, match=f"metadata.parquet: column '{column}'"):
        build_index(features, tmp_path / "i")
    index = Path(shutil.copytree(reliability_folders / "raw", tmp_path / "old-index"))
    add_column(index / "versions" / "v000001", column)
    with pytest.raises(ValueError, match=f"column '{column}' is reserved"):
        VectorSearcher(index)


def test_folder_hidden_by_a_kill_between_renames_comes_back(
    reliability_folders: Path, tmp_path: Path
) -> None:
    hidden = tmp_path / f".features.old-{DEAD_PID}"  # what a kill in replace_dir used to leave
    shutil.copytree(reliability_folders / "features", hidden)
    loaded = load_features(tmp_path / "features", verify=True)
    assert len(loaded.features) == 20 and not hidden.exists()


def test_next_run_clears_dead_writers_leftovers(
    reliability_folders: Path, tmp_path: Path, image_folder: Path, tiny_backbone
) -> None:
    index = Path(shutil.copytree(reliability_folders / "raw", tmp_path / "idx"))
    (index / f".current.tmp-{DEAD_PID}").write_text("v000009\n")
    build_index(reliability_folders / "features", index)
    assert sorted(p.name for p in index.iterdir()) == ["current", "versions"]
    # a kill while OUT.partial was deleted left shards but no plan: --resume starts afresh
    records, _ = load_records(image_folder)
    partial = tmp_path / "feats.partial"
    (partial / "shards").mkdir(parents=True)
    (partial / "shards" / "00000.npz").write_bytes(b"half")
    done = embed_to_folder(
        records, tiny_backbone, tmp_path / "feats", resume=True, progress=False, num_workers=0
    )
    assert done.manifest["count"] == 12 and not partial.exists()


def test_open_index_names_a_version_pruned_under_it(
    reliability_folders: Path, tmp_path: Path
) -> None:
    index = Path(shutil.copytree(reliability_folders / "raw", tmp_path / "idx"))
    (index / "current").write_text("v000007\n")
    with pytest.raises(ValueError, match="names version 'v000007'"):
        open_index(index)


def test_empty_manifest_says_why_nothing_was_embedded(tmp_path: Path, capsys) -> None:
    (tmp_path / "m.csv").write_text("path,label\n")
    argv = ["embed", "--images", str(tmp_path / "m.csv"), "--out", str(tmp_path / "o")]
    assert main([*argv, *TINY_CLI, "--no-progress"]) == 1
    assert f"nothing embedded: {tmp_path / 'm.csv'} lists no images" in capsys.readouterr().err
    (tmp_path / "m.csv").write_text(f"path,label\n{tmp_path / 'gone.png'},a\n")
    assert main([*argv, *TINY_CLI, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "no image could be read (1 skipped" in err and "skipped.csv" in err
