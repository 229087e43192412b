"""``dinosearch`` command line: a table of subcommands, each a thin wrapper in its own module."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from collections.abc import Sequence

# name → (module under dinosearch.cli, one-line help). Each module has add_arguments(p) and run(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "backbones": ("backbones", "list the known backbone names"),
    "embed": ("embed", "images → backbone features (+ Parquet metadata)"),
    "train": ("train", "train a domain adapter on cached augmented views"),
    "index": ("index", "features (+ adapter) → FAISS index folder"),
    "search": ("search", "query an index with an image"),
    "explain": ("explain", "why a result is similar to a query: a per-patch map of both films"),
    "eval": ("evaluate", "A/B retrieval metrics of a raw vs an adapted index"),
    "audit": ("audit", "duplicates, near-duplicates, split leaks, label conflicts, outliers"),
    "demo": ("demo", "the main job: embed, index, train, index, evaluate"),
    "app": ("app", "open the search page (Streamlit) on an indexes folder"),
    "remove": ("remove", "erase rows (by id or filter) from indexes, their features and caches"),
    "sync": ("sync", "keep features and indexes in step with a DICOMweb archive (PACS)"),
}


def build_parser() -> argparse.ArgumentParser:
    """The whole command line. Light: the command modules import torch/faiss inside ``run``."""
    parser = argparse.ArgumentParser(
        prog="dinosearch",
        description="Image search on domain-adapted DINOv2 embeddings.",
        allow_abbrev=False,
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        mod = importlib.import_module(f"dinosearch.cli.{module}")
        sub = subparsers.add_parser(
            name,
            help=help_text,
            description=help_text,
            allow_abbrev=False,  # a mistyped flag is named, not silently taken for another
        )
        mod.add_arguments(sub)
        if name != "backbones":
            sub.add_argument(
                "--config",
                default=None,
                metavar="FILE",
                help="run from a TOML file (its [" + name + "] table, or the whole file) or replay "
                'the "config" block of a manifest.json / adapter.json / report.json; flags '
                "given here override it",
            )
        sub.set_defaults(run=mod.run)
    return parser


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found = action.choices.get(name)
            return found if isinstance(found, argparse.ArgumentParser) else None
    return None


def _config_file(argv: Sequence[str]) -> str | None:
    """The value of ``--config`` in ``argv`` (read before parsing: it sets the defaults)."""
    for i, word in enumerate(argv):
        if word == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith("--config="):
            return word.split("=", 1)[1]
    return None


def _unknown(sub: argparse.ArgumentParser, extras: list[str]) -> str:
    """ "unknown flag --epoch; did you mean --epochs?" for the first word argparse did not take."""
    import difflib

    word = extras[0]
    if not word.startswith("-"):
        return f"unexpected argument {word!r} (every value follows its flag; see --help)"
    flag = word.split("=", 1)[0]
    known = [s for a in sub._actions for s in a.option_strings]
    hint = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
    return f"unknown flag {flag}" + (f"; did you mean {hint[0]}?" if hint else "; see --help")


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line (``--config FILE`` values as defaults); exit 2 with a one-line error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    command = next((w for w in argv if not w.startswith("-")), None)
    sub = _subparser(parser, command) if command else None
    path = _config_file(argv)
    if sub is not None and path is not None:
        from dinosearch.core.config_files import apply_defaults, read_config_file

        try:
            apply_defaults(sub, read_config_file(path, command or ""), f"--config {path}")
        except (ValueError, FileNotFoundError) as e:
            sub.error(str(e))
    args, extras = parser.parse_known_args(argv)
    if extras:
        (sub or parser).error(_unknown(sub or parser, extras))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; user errors print one line (no traceback) and return 2."""
    args = parse(argv)
    try:
        return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError, PermissionError) as e:
        print(f"dinosearch {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # a full, read-only or over-quota disk: one line, the old data intact
        line = write_error(e, getattr(args, "out", None))
        if line is None:
            raise
        print(f"dinosearch {args.command}: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dinosearch {args.command}: interrupted", file=sys.stderr)
        return 130


# errno → (what happened, what to do); matched by errno or, for errors that wrap one
# (pyarrow, safetensors), by its text
_WRITE_ERRORS = {
    errno.ENOSPC: ("no space left on device", "free space or choose another --out"),
    errno.EDQUOT: ("disk quota exceeded", "free space within your quota or choose another --out"),
    errno.EROFS: ("read-only file system", "choose a writable --out"),
}


def write_error(e: BaseException, out: object = None) -> str | None:
    """One line for a disk-full / read-only / over-quota error ``e`` (else None), naming the path."""
    for code, (what, fix) in _WRITE_ERRORS.items():
        if getattr(e, "errno", None) == code or os.strerror(code).lower() in str(e).lower():
            path = getattr(e, "filename", None)
            where = f"{out} ({path})" if out and path else out or path or "the output folder"
            return f"{what} writing {where}: {fix}"
    return None


if __name__ == "__main__":
    sys.exit(main())
