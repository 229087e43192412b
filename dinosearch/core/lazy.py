"""Lazy package exports: ``from dinosearch.index import build_index`` works as before, but importing
``dinosearch.index`` (e.g. for its light ``config`` module) loads faiss only when a name is used."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, api: Mapping[str, str], namespace: dict[str, Any], first: tuple[str, ...] = ()
) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving ``api``'s names (name → defining module) on first use.

    ``first``: modules imported before any name resolves (e.g. registrations with side effects).
    """

    def __getattr__(name: str) -> Any:
        if name not in api:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        for module in first:
            importlib.import_module(module)
        value = getattr(importlib.import_module(api[name]), name)
        namespace[name] = value
        return value

    return __getattr__
