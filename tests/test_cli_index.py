"""`dinosearch index` and `dinosearch search` through cli.main, and the real-X-ray path end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers import TINY_CLI, assert_ranked, read_cxr_manifest

from dinosearch.cli import main


def test_index_then_search(
    tiny_features: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "indexes" / "tiny"
    assert main(["index", "--features", str(tiny_features), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "randomly initialised" in printed and "indexed 12 vectors" in printed
    query = pd.read_parquet(tiny_features / "metadata.parquet")["path"].iloc[3]
    assert main(["search", "--index", str(out), "--image", query, "-k", "4"]) == 0
    captured = capsys.readouterr()
    assert "rank" in captured.out and "randomly initialised" in captured.err
    assert (
        main(
            [
                "search",
                "--index",
                str(out),
                "--image",
                query,
                "-k",
                "4",
                "--json",
                "--filter",
                "view == PA",
                "--exclude-group",
                "patient_id=p0",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert len(result["results"]) == 4 and all(r["view"] == "PA" for r in result["results"])
    assert all(r["patient_id"] != "p0" for r in result["results"])


def test_search_time_parameters(
    tiny_features: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    flat, ivf = str(tmp_path / "flat"), str(tmp_path / "ivf")
    assert main(["index", "--features", str(tiny_features), "--out", flat]) == 0
    argv = ["index", "--features", str(tiny_features), "--out", ivf, "--index-type", "ivf-flat"]
    assert main([*argv, "--nlist", "3", "--nprobe", "1"]) == 0
    capsys.readouterr()
    query = pd.read_parquet(tiny_features / "metadata.parquet")["path"].iloc[5]

    def ranked(index: str, *extra: str) -> tuple[list[str], list[float]]:
        argv = ["search", "--index", index, "--image", query, "-k", "12", "--json", *extra]
        assert main(argv) == 0
        results = json.loads(capsys.readouterr().out)["results"]
        return [r["id"] for r in results], [r["score"] for r in results]

    exact, _ = ranked(flat)
    assert len(ranked(ivf)[0]) < 12  # one list of three holds fewer than all 12 images
    assert_ranked(*ranked(ivf, "--nprobe", "3"), exact)  # every list: the exact ranking
    assert main(["search", "--index", flat, "--image", query, "--nprobe", "3"]) == 2
    assert "nprobe does not apply" in capsys.readouterr().err


def test_user_errors_exit_2(
    tmp_path: Path, tiny_features: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["index", "--features", str(tmp_path / "none"), "--out", str(tmp_path / "i")]) == 2
    assert "none" in capsys.readouterr().err
    out = tmp_path / "idx"
    assert main(["index", "--features", str(tiny_features), "--out", str(out)]) == 0
    assert main(["index", "--features", str(tiny_features), "--out", str(out), "--append"]) == 2
    assert "already in" in capsys.readouterr().err


@pytest.mark.cxr
def test_real_xrays_end_to_end(
    cxr_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    manifest = read_cxr_manifest(cxr_dir).sample(24, random_state=0)
    manifest["file"] = [str(cxr_dir / f) for f in manifest["file"]]
    manifest.iloc[:16].to_parquet(tmp_path / "first.parquet")
    manifest.iloc[16:].to_parquet(tmp_path / "new.parquet")
    tiny = [
        *TINY_CLI,
        "--no-progress",
        "--workers",
        "0",
    ]
    for part in ("first", "new"):
        assert (
            main(
                [
                    "embed",
                    "--images",
                    str(tmp_path / f"{part}.parquet"),
                    "--out",
                    str(tmp_path / part),
                    *tiny,
                ]
            )
            == 0
        )
    index = tmp_path / "indexes" / "cxr-raw"
    assert main(["index", "--features", str(tmp_path / "first"), "--out", str(index)]) == 0
    assert (
        main(["index", "--features", str(tmp_path / "new"), "--out", str(index), "--append"]) == 0
    )
    capsys.readouterr()
    query = manifest["file"].iloc[20]
    assert main(["search", "--index", str(index), "--image", query, "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["results"]
    assert len(hits) == 3 and {"patient_id", "view", "label"} <= set(hits[0])
