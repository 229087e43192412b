"""One frozen dataclass per job: its fields are the job's settings, their defaults live only there,
and the command line, ``--config FILE.toml`` and the manifests are generated from them.

A job config is a frozen dataclass whose fields carry ``opt(...)`` metadata::

    @dataclass(frozen=True)
    class IndexConfig:
        features: str = opt("features folder written by `dinosearch embed`", required=True)
        nlist: int | None = opt("IVF: number of lists", default=None)

``add_config_arguments(parser, IndexConfig)`` makes ``--features`` and ``--nlist`` (help text with the
default), ``config_from_args(IndexConfig, args)`` builds the frozen object back, ``to_dict`` /
``from_dict`` round-trip it through JSON or TOML (what manifests record and ``--config`` replays).
Only the standard library is imported here, so parsing never waits for torch or faiss.
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C")
_MISSING = dataclasses.MISSING
_NONE_WORDS = ("", "none", "null")


def opt(
    help: str,
    *,
    default: Any = _MISSING,
    default_factory: Any = _MISSING,
    required: bool = False,
    flag: str | None = None,
    aliases: Sequence[str] = (),
    group: str | None = None,
    cli: bool = True,
    negate: str | None = None,
    metavar: str | None = None,
    nargs: str | None = None,
    repeat: bool = False,
) -> Any:
    """A config field with its command-line description.

    Args:
        help: one line for ``--help`` (the default is appended).
        default / default_factory: as ``dataclasses.field``; a required field defaults to None.
        required: the flag must be given (on the command line or in ``--config``).
        flag: the flag's name when it is not ``--field-name`` (kept for earlier releases' names).
        aliases: further accepted spellings, e.g. ``("-k",)``.
        group: the ``--help`` section.
        cli: False for a setting that only ``--config`` and the library set.
        negate: for a bool defaulting to True, the flag that turns it off (e.g. ``--no-clean-view``).
        metavar: the value's name in ``--help``.
        nargs: for a list field, argparse's ``nargs`` (e.g. ``"+"``: space-separated words) instead of
            one comma-separated word.
        repeat: for a list field, the flag is given once per item (argparse ``action="append"``).
    """
    meta = {
        "help": help,
        "required": required,
        "flag": flag,
        "aliases": tuple(aliases),
        "group": group,
        "cli": cli,
        "negate": negate,
        "metavar": metavar,
        "nargs": nargs,
        "repeat": repeat,
    }
    if required and default is _MISSING and default_factory is _MISSING:
        default = None
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` → (X, True); anything else → (tp, False)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _scalar(tp: Any, name: str) -> Any:
    """A function parsing one command-line word into ``tp``."""
    if tp in (int, float, str):
        return tp
    if tp is Path:
        return str  # configs hold plain strings: they serialise to JSON/TOML as they are
    raise TypeError(f"config field {name}: unsupported type {tp!r}")


def _converter(tp: Any, name: str) -> tuple[Any, list[str] | None, bool]:
    """(parse one word, choices, is a list) for the annotated type ``tp``."""
    inner, optional = _strip_optional(tp)
    origin = typing.get_origin(inner)
    if origin is typing.Literal:
        choices = [str(c) for c in typing.get_args(inner)]
        return _maybe_none(str, optional), choices, False
    if origin in (list, tuple):
        item = typing.get_args(inner)[0]
        return _maybe_none(_scalar(item, name), optional), None, True
    return _maybe_none(_scalar(inner, name), optional), None, False


def _maybe_none(parse: Any, optional: bool) -> Any:
    if not optional:
        return parse

    # '' stays '' for a string (a column role's "off"); for a number it is None, like "none"
    words = _NONE_WORDS[1:] if parse is str else _NONE_WORDS

    def parse_optional(text: str) -> Any:
        return None if text.strip().lower() in words else parse(text)

    parse_optional.__name__ = getattr(parse, "__name__", "value")
    return parse_optional


def _default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default is not _MISSING:
        return f.default
    if f.default_factory is not _MISSING:
        return f.default_factory()
    return None


def _flag(f: dataclasses.Field[Any]) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def flags_of(cls: type) -> dict[str, str]:
    """field name → its command-line flag, for every field on the command line."""
    return {f.name: _flag(f) for f in dataclasses.fields(cls) if f.metadata.get("cli", True)}


def add_config_arguments(
    parser: argparse.ArgumentParser, cls: type, *, defaults: Mapping[str, Any] | None = None
) -> None:
    """Add one flag per field of the config dataclass ``cls`` (dest = the field name).

    ``defaults`` (e.g. from ``--config FILE``) replace the dataclass defaults and satisfy required flags.
    """
    given = dict(defaults or {})
    hints = _hints(cls)
    groups: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta.get("cli", True):  # no flag, but --config FILE may set it
            if not any(
                a.dest == f.name for a in parser._actions
            ):  # unless the command adds its own
                parser.set_defaults(**{f.name: given.get(f.name, _default_of(f))})
            continue
        where = parser
        if meta.get("group"):
            where = groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        default = given.get(f.name, _default_of(f))
        required = bool(meta.get("required")) and f.name not in given
        help_text = meta.get("help", "")
        names = [_flag(f), *meta.get("aliases", ())]
        tp, _ = _strip_optional(hints[f.name])
        if tp is bool:
            _add_bool(where, f, names, default, help_text)
            continue
        parse, choices, many = _converter(hints[f.name], f.name)
        shown = ",".join(map(str, default)) if many and default else default
        extra: dict[str, Any] = {"type": _list_of(parse) if many else parse}
        if many and meta.get("nargs"):
            extra = {"type": parse, "nargs": meta["nargs"]}
        elif many and meta.get("repeat"):
            extra = {"type": parse, "action": "append"}
        where.add_argument(
            *names,
            dest=f.name,
            choices=None if many else choices,
            default=default,
            required=required,
            metavar=meta.get("metavar") or (None if choices else f.name.upper()),
            help=help_text + ("" if required else f" (default: {shown})"),
            **extra,
        )


def _add_bool(
    where: Any, f: dataclasses.Field[Any], names: list[str], default: Any, help_text: str
) -> None:
    negate = f.metadata.get("negate")
    if negate:  # a True default switched off by --no-…; the field name stays positive
        where.add_argument(
            negate, dest=f.name, action="store_false", default=default, help=help_text
        )
    elif default is None:
        where.add_argument(
            *names,
            dest=f.name,
            action=argparse.BooleanOptionalAction,
            default=None,
            help=help_text + " (default: decided by the job)",
        )
    else:
        where.add_argument(
            *names, dest=f.name, action="store_true", default=default, help=help_text
        )


def _list_of(parse: Any) -> Any:
    def parse_list(text: str) -> list[Any]:
        return [parse(x.strip()) for x in text.split(",") if x.strip()]

    parse_list.__name__ = "comma-separated list"
    return parse_list


def config_from_args(cls: type[C], args: argparse.Namespace | Mapping[str, Any]) -> C:
    """The frozen config whose fields are ``args``' attributes of the same names."""
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: _freeze(v) for k, v in values.items() if k in known})


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON/TOML-ready dict of every field (tuples as lists, None kept)."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def from_dict(cls: type[C], data: Mapping[str, Any], *, source: str = "config") -> C:
    """The config ``cls`` from a mapping; unknown keys are refused, naming the closest field."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = [k for k in data if k not in names]
    if unknown:
        import difflib

        hint = difflib.get_close_matches(unknown[0], names, n=1)
        raise ValueError(
            f"{source}: unknown setting {unknown[0]!r} for {cls.__name__}"
            + (f"; did you mean {hint[0]!r}?" if hint else f"; known: {', '.join(names)}")
        )
    return cls(**{k: _freeze(v) for k, v in data.items()})


def read_toml(path: str | Path, section: str | None = None) -> dict[str, Any]:
    """Settings from a TOML file: the whole table, or ``[section]`` of it when present."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise FileNotFoundError(f"--config {p}: no such file") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"--config {p}: not readable TOML ({e}); fix the file") from e
    if section and isinstance(data.get(section), dict):
        data = data[section]
    return {k.replace("-", "_"): v for k, v in data.items()}


def to_toml(config: Any) -> str:
    """The config as TOML text (None values left out: they are the defaults' "not set")."""
    lines = []
    for key, value in to_dict(config).items():
        if value is None:
            continue
        lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    import json

    return json.dumps(str(value))  # a TOML basic string is a JSON string


def project(cls: type[C], config: Any, **overrides: Any) -> C:
    """The config ``cls`` built from the same-named fields of ``config`` (a larger job's config),
    then ``overrides``: how a job hands its part of the settings to a library function."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {k: v for k, v in to_dict(config).items() if k in names}
    return cls(**{k: _freeze(v) for k, v in {**values, **overrides}.items()})


def job_record(job: str, config: Any) -> dict[str, Any]:
    """What an artefact's manifest records under ``"config"``: the job's name and every setting."""
    return {"job": job, **to_dict(config)}


def like(cls: type, name: str, **changes: Any) -> Any:
    """A field declared as ``cls``'s field ``name`` (same help, flag, default), with ``changes``:
    how a config that cannot inherit ``cls`` shares one of its settings without re-typing it."""
    f = {g.name: g for g in dataclasses.fields(cls)}[name]
    meta = {**f.metadata, **{k: v for k, v in changes.items() if k != "default"}}
    default = changes.get("default", _default_of(f))
    return dataclasses.field(default=default, metadata=meta)
