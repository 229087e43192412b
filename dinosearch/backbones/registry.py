"""Registry of named backbones and name families, so new backbones join without special cases.

As timm's ``_registry.py``: a module registers its factories when imported
(``dinosearch.backbones`` imports the built-in ones), and ``load_backbone`` finds them by name.
A *family* is a name prefix such as ``openclip:`` whose factory receives the rest of the name.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, get_args

import torch

from dinosearch.backbones.backbone import Backbone, Pooling


class BackboneFactory(Protocol):
    """Builds a backbone on CPU; ``name`` is the registered name, or for a family the rest after its prefix.

    The returned backbone carries the full name (prefix included); ``load_backbone`` adds its
    ``load_args`` and moves it to the device.
    """

    def __call__(
        self, name: str, weights: str, /, *, image_size: int, pooling: Pooling, seed: int
    ) -> Backbone: ...


F = TypeVar("F", bound=BackboneFactory)


@dataclass(frozen=True)
class _Entry:
    factory: BackboneFactory
    description: str  # one line for `dinosearch backbones`
    usage: str  # how the name is written: the name itself, or "openclip:<model>" for a family


_backbones: dict[str, _Entry] = {}
_families: dict[str, _Entry] = {}  # keyed by prefix
# The built-in families register themselves when imported (as timm's models/__init__ does); named
# here, not imported, so that the registry and its families import one way only.
BUILTIN = ("dinosearch.backbones.dinov2_timm", "dinosearch.backbones.openclip")


def _builtin() -> None:
    import importlib

    for module in BUILTIN:
        importlib.import_module(module)


def _add(table: dict[str, _Entry], key: str, entry: _Entry) -> None:
    if key in table:  # as timm: the last registration wins, but say so
        message = f"backbone {entry.usage!r} registered again; the new factory replaces the old"
        warnings.warn(message, stacklevel=3)  # points at the decorator
    table[key] = entry


def register_backbone(name: str, *, description: str = "") -> Callable[[F], F]:
    """Decorator: ``factory`` builds the backbone called ``name``."""

    def add(factory: F) -> F:
        _add(_backbones, name, _Entry(factory, description, name))
        return factory

    return add


def register_family(prefix: str, *, arg: str = "model", description: str = "") -> Callable[[F], F]:
    """Decorator: ``factory`` builds every backbone named ``<prefix><arg>``, given ``<arg>``."""
    if not prefix:
        raise ValueError("a family needs a non-empty prefix such as 'openclip:'")

    def add(factory: F) -> F:
        _add(_families, prefix, _Entry(factory, description, f"{prefix}<{arg}>"))
        return factory

    return add


def list_backbones() -> list[str]:
    """Known backbone names; families (e.g. ``openclip:<model>``) are in ``list_families``."""
    _builtin()
    return sorted(_backbones)


def list_families() -> list[str]:
    """How the names of each family are written, e.g. ``openclip:<model>``."""
    _builtin()
    return sorted(entry.usage for entry in _families.values())


def describe(name: str) -> str:
    """One line about a name from ``list_backbones`` or a family from ``list_families``."""
    _builtin()
    for entry in (*_backbones.values(), *_families.values()):
        if name == entry.usage:
            return entry.description
    raise ValueError(f"unknown backbone {name!r}; known: {_known()}")


def _known() -> str:
    """Every name, then every family: "a, b or openclip:<model>"."""
    return " or ".join(filter(None, [", ".join(list_backbones()), *list_families()]))


def _lookup(name: str) -> tuple[BackboneFactory, str]:
    """The factory for ``name`` and the argument it receives (a family's rest of the name)."""
    _builtin()
    if name in _backbones:
        return _backbones[name].factory, name
    prefixes = [p for p in _families if name.startswith(p)]
    if not prefixes:
        raise ValueError(f"unknown backbone {name!r}; known: {_known()}")
    prefix = max(prefixes, key=len)  # the most specific family
    return _families[prefix].factory, name.removeprefix(prefix)


def load_backbone(
    name: str,
    weights: str = "pretrained",
    *,
    image_size: int = 224,
    pooling: Pooling = "cls",
    seed: int = 0,
    device: str | torch.device = "cpu",
    half: bool = False,
    compile: bool = False,
) -> Backbone:
    """Build ``name`` with ``weights`` ("pretrained", "random" or a local file path).

    ``half`` (fp16 weights) and ``compile`` (``torch.compile``) speed up CUDA inference; they change
    the features slightly, so the fingerprint and ``load_args`` record them (see ``Backbone.accelerate``).

    Raises:
        ValueError: unknown name, bad image size or pooling, a weights file of another architecture,
            or ``half`` / ``compile`` on CPU.
        WeightsUnavailableError: pretrained weights neither cached nor downloadable.
    """
    factory, arg = _lookup(name)
    if pooling not in get_args(Pooling):
        raise ValueError(
            f"pooling {pooling!r} must be 'cls' or 'cls+mean' or 'mean' (the patch tokens' mean)"
        )
    backbone = factory(arg, weights, image_size=image_size, pooling=pooling, seed=seed)
    assert backbone.name == name, f"the factory for {name!r} named its backbone {backbone.name!r}"
    backbone.load_args = {  # what backbone_from_info calls again; key order is on disk
        "name": name,
        "weights": weights if weights in ("pretrained", "random") else str(Path(weights).resolve()),
        "image_size": image_size,
        "pooling": backbone.pooling,  # a family may support "cls" only
        "seed": seed,
    }
    # Only when on, so that the default load_args (and fingerprint) stay as they were.
    backbone.load_args.update({k: True for k, on in (("half", half), ("compile", compile)) if on})
    return backbone.to(device).accelerate(half=half, compile=compile)


LOAD_ARGS: dict[str, type] = {  # load_backbone's arguments, as manifests store them
    "name": str,
    "weights": str,
    "image_size": int,
    "pooling": str,
    "seed": int,
}


def backbone_from_info(
    info: dict[str, Any],
    *,
    device: str | torch.device = "cpu",
    source: str | Path = "manifest",
) -> Backbone:
    """Rebuild the backbone a manifest describes (its ``backbone`` entry); refuse if it comes out different.

    ``source`` names the manifest file in errors.
    """
    args = info.get("load_args")
    if not isinstance(args, dict) or not args:
        raise ValueError(f"{source}: field 'backbone.load_args' is missing; re-embed the images")
    odd = [k for k in args if k not in LOAD_ARGS]
    bad = [k for k, kind in LOAD_ARGS.items() if k in args and type(args[k]) is not kind]
    problem = (
        f"has unknown keys {odd}"
        if odd
        else f"has values of the wrong type for {bad}"
        if bad
        else ""
    )
    if problem or "name" not in args:
        raise ValueError(
            f"{source}: field 'backbone.load_args' {problem or 'lacks name'} (it takes "
            f"{', '.join(LOAD_ARGS)}); restore the manifest or re-embed the images"
        )
    try:
        backbone = load_backbone(**args, device=device)
    except ValueError as e:  # an unknown name, a bad size: say which manifest asked for it
        raise ValueError(f"{source}: field 'backbone.load_args': {e}") from e
    if backbone.fingerprint != info.get("fingerprint"):
        raise ValueError(
            f"{source}: backbone rebuilt as {backbone.fingerprint!r} but the manifest says "
            f"{info.get('fingerprint')!r}; the weights file changed since the features were made: "
            "re-embed or restore the weights"
        )
    return backbone
