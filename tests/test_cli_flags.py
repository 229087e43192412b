"""The command line of the previous release still works: every flag, its default and its meaning.

``fixtures/cli_flags_v0_2.json`` was extracted from main's ``cli/*.py`` before the flags were
generated from the job configs; it must not be edited to make this test pass.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from dinosearch.cli import build_parser, parse
from dinosearch.cli.common import parse_ks

OLD = json.loads((Path(__file__).parent / "fixtures" / "cli_flags_v0_2.json").read_text())
# the least each command needs to parse
REQUIRED = {
    "backbones": [],
    "embed": ["--images", "i", "--out", "o"],
    "train": ["--images", "i", "--out", "o"],
    "index": ["--features", "f", "--out", "o"],
    "search": ["--index", "x", "--image", "q.png"],
    "explain": ["--index", "x", "--image", "q.png", "--result", "r", "--out", "m.png"],
    "eval": ["--raw", "r", "--adapted", "a"],
    "demo": [],
}
# defaults changed on purpose since that release, each with its reason (the flag itself stays)
CHANGED_DEFAULTS = {
    # issue 21 honest maps: the demo pools the mean, so its maps account for the score (docs/explain.md)
    ("demo", "--pooling"): "mean",
}


def _actions(command: str) -> dict[str, argparse.Action]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {s: a for a in sub.choices[command]._actions for s in a.option_strings}


def _old_default(flag: str, old: dict[str, Any]) -> Any:
    if flag == "--k" and isinstance(old["default"], str):
        return tuple(parse_ks(old["default"]))
    return old["default"]


@pytest.mark.parametrize("command", sorted(OLD))
def test_every_old_flag_is_accepted_with_its_old_default(command: str) -> None:
    new = _actions(command)
    defaults = vars(parse([command, *REQUIRED[command]]))
    for flag, old in OLD[command].items():
        assert flag in new, f"{command} {flag} is gone"
        action = new[flag]
        if flag in REQUIRED[command]:
            continue  # given above
        if old["action"] == "_StoreTrueAction":  # --no-x may now be the negation of field x
            negated = isinstance(action, argparse._StoreFalseAction)
            assert negated or isinstance(action, argparse._StoreTrueAction), (command, flag)
            assert defaults[action.dest] is negated, (command, flag)
            continue
        assert type(action).__name__ == old["action"] or old["nargs"] != 0, (command, flag)
        assert (action.nargs == 0) == (old["nargs"] == 0), f"{command} {flag}: value or not"
        if old["choices"]:
            assert set(old["choices"]) <= set(action.choices or ()), (command, flag)
        if not old["required"] and old["dest"] not in ("command",):
            got = defaults[action.dest]
            want = CHANGED_DEFAULTS.get((command, flag), _old_default(flag, old))
            if isinstance(got, list):
                got = tuple(got)
            assert got == want, (command, flag, got, want)


MEANINGS = [  # (argv, field, value): what a flag means, as a field of the job's config
    (["train", *REQUIRED["train"], "--train-batch-size", "8"], "pairs_per_step", 8),
    (["train", *REQUIRED["train"], "--batch-size", "16"], "batch_size", 16),
    (["train", *REQUIRED["train"], "--workers", "3"], "num_workers", 3),
    (["train", *REQUIRED["train"], "--no-clean-view"], "clean_view", False),
    (["train", *REQUIRED["train"], "--group-column", "none"], "group_column", None),
    (["train", *REQUIRED["train"], "--no-hflip"], "hflip", False),
    (["train", *REQUIRED["train"], "--no-progress"], "progress", False),
    (["embed", *REQUIRED["embed"], "--no-folder-labels"], "folder_labels", False),
    (["index", *REQUIRED["index"], "--no-gpu"], "gpu", False),
    (["index", *REQUIRED["index"], "--pq-m", "8"], "pq_m", 8),
    (["search", *REQUIRED["search"], "-k", "5"], "k", 5),
    (["search", "--index", "x", "--image", "a.png", "b.png"], "image", ("a.png", "b.png")),
    (
        ["search", *REQUIRED["search"], "--filter", "a == 1", "--filter", "b != 2"],
        "filter",
        ("a == 1", "b != 2"),
    ),  # fmt: skip
    (["eval", *REQUIRED["eval"], "--k", "10,1,5"], "k", (1, 5, 10)),
    (["eval", *REQUIRED["eval"], "--bootstrap", "50"], "n_boot", 50),
    (["demo", "--train-batch-size", "32", "--no-clean-view"], "pairs_per_step", 32),
    (["demo", "--train-images", "0"], "train_images", 0),
    (["demo", "--k", "1,5"], "k", (1, 5)),
]


@pytest.mark.parametrize(("argv", "field", "value"), MEANINGS)
def test_flags_keep_their_meaning(argv: list[str], field: str, value: Any) -> None:
    from dinosearch.cli.demo import DemoConfig
    from dinosearch.core.config import config_from_args

    configs = _configs()
    config = config_from_args(configs[argv[0]], parse(argv))
    assert getattr(config, field) == value
    if argv[0] == "demo":
        assert isinstance(config, DemoConfig)


def _configs() -> dict[str, type]:
    from dinosearch.adapt.config import TrainJobConfig
    from dinosearch.demo import DemoConfig
    from dinosearch.evaluate.config import EvalConfig
    from dinosearch.explain.config import ExplainConfig
    from dinosearch.features.config import EmbedConfig
    from dinosearch.index.config import IndexConfig
    from dinosearch.search.config import SearchConfig

    return {
        "train": TrainJobConfig,
        "embed": EmbedConfig,
        "index": IndexConfig,
        "search": SearchConfig,
        "explain": ExplainConfig,
        "eval": EvalConfig,
        "demo": DemoConfig,
    }


def test_demo_departs_from_train_defaults_in_one_place() -> None:
    from dinosearch.adapt.config import TrainConfig
    from dinosearch.core.config import config_from_args

    demo = config_from_args(_configs()["demo"], parse(["demo"])).train_config()
    assert (demo.views, demo.epochs, demo.val_fraction) == (2, 150, 0.0)
    assert demo.pairs_per_step == TrainConfig().pairs_per_step and demo.lr == TrainConfig().lr


def test_a_mistyped_flag_is_named_with_the_closest_match(capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    with pytest.raises(SystemExit) as e:
        parse(["train", *REQUIRED["train"], "--epoch", "3"])
    assert e.value.code == 2
    assert "unknown flag --epoch; did you mean --epochs?" in capsys.readouterr().err


def test_every_flag_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        for action in p._actions:
            assert action.help, (name, action.option_strings)
