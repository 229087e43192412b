"""The package layout is the pipeline: a stage imports only itself and the stages below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dinosearch"
# Bottom to top. core holds what every stage may use (files, devices, column roles, ranking).
STAGES = [
    "core", "inputs", "backbones", "features", "adapt", "index", "search", "explain", "evaluate",
    "audit", "sync", "serve", "app",
]  # fmt: skip
# Above the stages: the end-to-end job and public API, then the command line that calls them.
TOP = {
    "demo": len(STAGES),
    "__init__": len(STAGES),
    "client": len(STAGES),  # dinosearch.client: the public name of serve/client.py
    "cli": len(STAGES) + 1,
    "__main__": len(STAGES) + 2,
}


def level(module: str) -> int:
    """The layer of ``dinosearch.<part>…``."""
    part = module.split(".")[1] if "." in module else "__init__"
    if part in TOP:
        return TOP[part]
    if part not in STAGES:
        raise AssertionError(f"dinosearch.{part} belongs to no stage: add it to STAGES or a stage")
    return STAGES.index(part)


def imports(path: Path, package: Path) -> list[tuple[str, int]]:
    """(imported dinosearch module, line) for every import in ``path``, function-level and
    ``if TYPE_CHECKING:`` ones too (a type-only import is still a dependency between modules)."""
    rel = path.relative_to(package.parent).with_suffix("")
    here = list(rel.parts[:-1] if rel.name != "__init__" else rel.parts)
    found = []
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names]  # a module or a name in one
            found += [(n, node.lineno) for n in names]
    return [(m, line) for m, line in found if m == "dinosearch" or m.startswith("dinosearch.")]


def violations(package: Path) -> list[str]:
    out = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).with_suffix("")
        me = ".".join(rel.parts)
        for target, line in imports(path, package):
            if level(target) > level(me):
                out.append(f"{path.relative_to(package.parent)}:{line} {me} imports {target}")
    return out


def test_no_stage_imports_a_higher_stage_or_the_command_line() -> None:
    assert violations(PACKAGE) == []


def test_every_subpackage_is_a_known_stage() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert folders <= set(STAGES) | {"cli"}, folders - set(STAGES)


@pytest.mark.parametrize(
    ("file", "source"),
    [
        ("core/ranking.py", "from dinosearch.evaluate.ab import evaluate\n"),
        ("adapt/fit.py", "def f():\n    from dinosearch.cli.common import x\n"),
        ("index/build.py", "from ..search import searcher\n"),
        ("features/folder.py", "from dinosearch import demo\n"),
    ],
)
def test_the_check_catches_an_upward_import(tmp_path: Path, file: str, source: str) -> None:
    package = tmp_path / "dinosearch"
    (package / file).parent.mkdir(parents=True)
    (package / file).write_text(source)
    assert len(violations(package)) == 1


def test_public_api_names_resolve_to_the_stage_that_defines_them() -> None:
    import dinosearch

    for name in dinosearch.__all__:
        obj = getattr(dinosearch, name)
        assert obj.__module__.startswith("dinosearch."), (name, obj.__module__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        dinosearch.nope  # noqa: B018


def module_graph(package: Path) -> dict[str, set[str]]:
    """dinosearch module → the dinosearch modules it imports (a name from a package resolves to
    the submodule of that name when there is one, else to the package)."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        modules[".".join(parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for target, _ in imports(path, package):
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (each one import cycle or more)."""
    import graphlib

    remaining = {k: set(v) for k, v in graph.items()}
    try:
        tuple(graphlib.TopologicalSorter(remaining).static_order())
        return []
    except graphlib.CycleError as e:
        return [list(e.args[1])]


def test_no_import_cycles() -> None:
    assert cycles(module_graph(PACKAGE)) == []


def test_the_cycle_check_catches_a_cycle(tmp_path: Path) -> None:
    package = tmp_path / "dinosearch"
    (package / "features").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "features" / "__init__.py").write_text("")
    (package / "features" / "folder.py").write_text("def f():\n    from . import ray_engine\n")
    (package / "features" / "ray_engine.py").write_text(
        "from dinosearch.features.folder import f\n"
    )
    assert cycles(module_graph(package)) != []
    # a type-only import closes a circle too (audit/run ↔ audit/report once did so)
    (package / "features" / "ray_engine.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from dinosearch.features.folder import f\n"
    )
    assert cycles(module_graph(package)) != []
