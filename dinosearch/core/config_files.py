"""``--config FILE``: a job's settings from a TOML file, or replayed from the ``"config"`` block an
artefact recorded (``core.config.job_record``), made the defaults of the job's parser so that flags
given on the command line still win. Standard library only."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dinosearch.core.config import read_toml


def read_config_file(path: str | Path, job: str) -> dict[str, Any]:
    """Settings for ``job`` from ``--config PATH``: a TOML file (its ``[job]`` table when present), or
    a manifest/report JSON whose ``"config"`` block a run of the same job recorded (a replay)."""
    p = Path(path)
    if p.suffix.lower() != ".json":
        return read_toml(p, section=job)
    import json

    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"--config {p}: no such file") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"--config {p}: not readable JSON ({e}); fix the file") from e
    block = data.get("config") if isinstance(data, dict) else None
    if not isinstance(block, dict):
        raise ValueError(
            f'--config {p}: no "config" block (a manifest of this release records one); '
            "give a TOML file or a newer manifest"
        )
    made_by = block.get("job", job)
    if made_by != job:
        raise ValueError(f"--config {p} was written by `dinosearch {made_by}`, not {job}")
    return {k: v for k, v in block.items() if k != "job"}


def apply_defaults(parser: argparse.ArgumentParser, values: Mapping[str, Any], source: str) -> None:
    """Make ``values`` (field name → value, from ``--config``) the parser's defaults: flags on the
    command line still win, and a required flag the file gives is no longer required."""
    actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "config")}
    for key, value in values.items():
        action = actions.get(key)
        if action is None and key in parser._defaults:  # a setting without a flag
            parser.set_defaults(**{key: list(value) if isinstance(value, tuple) else value})
            continue
        if action is None:
            import difflib

            hint = difflib.get_close_matches(key, list(actions), n=1)
            raise ValueError(
                f"{source}: unknown setting {key!r}"
                + (f"; did you mean {hint[0]!r}?" if hint else "; remove it from the file")
            )
        action.default = list(value) if isinstance(value, tuple) else value
        action.required = False
