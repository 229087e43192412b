"""Jobs run from ``--config FILE`` (TOML, or a manifest's recorded configuration) as from flags;
the command line parses and checks its arguments before torch, faiss or pandas are imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TINY_CLI

from dinosearch.cli import main
from dinosearch.core.storage import sha256_file


def _live(index: Path) -> Path:
    """The newest version folder of an index."""
    return sorted((index / "versions").iterdir())[-1]


def _index_checksum(index: Path) -> str:
    return sha256_file(_live(index) / "index.faiss")


def test_index_from_toml_equals_index_from_flags(tiny_features: Path, tmp_path: Path) -> None:
    flags = ["--index-type", "ivf-flat", "--nlist", "2", "--nprobe", "2", "--keep", "2"]
    assert main(["index", "--features", str(tiny_features), *flags, "--out", str(tmp_path / "a")]) == 0  # fmt: skip
    toml = tmp_path / "index.toml"
    toml.write_text(
        f'[index]\nfeatures = "{tiny_features}"\nindex_type = "ivf-flat"\nnlist = 2\n'
        "nprobe = 2\nkeep = 2\n"
    )
    assert main(["index", "--config", str(toml), "--out", str(tmp_path / "b")]) == 0
    recorded = [
        json.loads((_live(tmp_path / n) / "manifest.json").read_text())["config"] for n in "ab"
    ]
    assert recorded[0]["job"] == "index" and recorded[0]["nlist"] == 2
    assert {**recorded[0], "out": ""} == {**recorded[1], "out": ""}
    assert _index_checksum(tmp_path / "a") == _index_checksum(tmp_path / "b")


def test_flags_override_the_file(tiny_features: Path, tmp_path: Path) -> None:
    toml = tmp_path / "index.toml"
    toml.write_text(f'features = "{tiny_features}"\nout = "{tmp_path / "x"}"\nkeep = 5\n')
    assert main(["index", "--config", str(toml), "--keep", "1"]) == 0
    config = json.loads((_live(tmp_path / "x") / "manifest.json").read_text())["config"]
    assert config["keep"] == 1 and config["features"] == str(tiny_features)


def test_a_bad_setting_in_the_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "index.toml"
    toml.write_text('features = "f"\nout = "o"\nnlists = 4\n')
    with pytest.raises(SystemExit):
        main(["index", "--config", str(toml)])
    assert "unknown setting 'nlists'; did you mean 'nlist'?" in capsys.readouterr().err


def test_embed_and_index_manifests_replay_to_the_same_checksums(
    image_folder: Path, tmp_path: Path
) -> None:
    argv = ["embed", "--images", str(image_folder), *TINY_CLI, "--workers", "0", "--no-progress"]
    assert main([*argv, "--shard-size", "5", "--out", str(tmp_path / "f1")]) == 0
    manifest = tmp_path / "f1" / "manifest.json"
    assert json.loads(manifest.read_text())["config"]["shard_size"] == 5
    assert main(["embed", "--config", str(manifest), "--out", str(tmp_path / "f2")]) == 0
    for name in ("features.npy", "metadata.parquet"):
        assert sha256_file(tmp_path / "f1" / name) == sha256_file(tmp_path / "f2" / name)
    assert main(["index", "--features", str(tmp_path / "f1"), "--out", str(tmp_path / "i1")]) == 0
    replay = _live(tmp_path / "i1") / "manifest.json"
    assert main(["index", "--config", str(replay), "--out", str(tmp_path / "i2")]) == 0
    assert _index_checksum(tmp_path / "i1") == _index_checksum(tmp_path / "i2")
    with pytest.raises(SystemExit):  # a features manifest is no index job's configuration
        main(["index", "--config", str(manifest)])


HEAVY = ("torch", "faiss", "pandas", "timm", "pyarrow", "streamlit")
PROBE = """
import sys
from dinosearch.cli import main
try:
    code = main({argv!r})
except SystemExit as e:
    code = e.code
print("EXIT", code)
print("HEAVY", sorted(m for m in {heavy!r} if m in sys.modules))
"""


def _probe(argv: list[str]) -> tuple[int, list[str], str]:
    """(exit code, heavy modules imported, stderr) of ``dinosearch ARGV`` in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    return int(lines["EXIT"]), eval(lines["HEAVY"]), done.stderr  # noqa: S307 (our own output)


COMMANDS = ["backbones", "embed", "train", "index", "search", "explain", "eval", "demo"]


@pytest.mark.parametrize("argv", [["--help"], *([c, "--help"] for c in COMMANDS)])
def test_help_imports_nothing_heavy(argv: list[str]) -> None:
    code, heavy, _ = _probe(argv)
    assert code == 0 and heavy == []


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["search", "--index", "x", "--image", "q.png", "-k", "0"], "-k 0: must be ≥ 1"),
        (["search", "--index", "x"], "the following arguments are required: --image"),
        (["search", "--index", "x", "--image", "/no/such.png"], "no such file"),
        (["train", "--images", "i", "--out", "o", "--views", "1", "--no-clean-view"], "--views 1"),
        (["train", "--images", "i", "--out", "o", "--epoch", "3"], "did you mean --epochs?"),
        (["eval", "--raw", "r", "--adapted", "a", "--k", "0,5"], "positive integers"),
        (["index", "--features", "f", "--out", "o", "--skip-existing"], "add --append"),
        (["embed", "--images", "i", "--out", "o", "--actors", "2"], "add --engine ray"),
        (["explain", "--index", "x", "--image", "q", "--result", "r"], "nothing to write"),
        (["demo", "--train-images", "-1"], "--train-images -1"),
    ],
)
def test_bad_arguments_are_refused_before_any_model_loads(argv: list[str], says: str) -> None:
    code, heavy, err = _probe(argv)
    assert code == 2 and says in err, err
    assert heavy == [], heavy


def test_train_replays_from_adapter_json_with_settings_that_have_no_flag(tmp_path: Path) -> None:
    """adapter.json records every TrainJobConfig field, flagless ones too (knn_k, residual_init)."""
    from dinosearch.adapt.config import TrainJobConfig
    from dinosearch.cli import parse
    from dinosearch.core.config import config_from_args, job_record

    recorded = TrainJobConfig(images="i", out="o", knn_k=7, residual_init=0.2, epochs=9)
    (tmp_path / "adapter.json").write_text(json.dumps({"config": job_record("train", recorded)}))
    args = parse(["train", "--config", str(tmp_path / "adapter.json"), "--epochs", "11"])
    replayed = config_from_args(TrainJobConfig, args)
    assert replayed.knn_k == 7 and replayed.residual_init == 0.2 and replayed.epochs == 11
    assert replayed == TrainJobConfig(images="i", out="o", knn_k=7, residual_init=0.2, epochs=11)
