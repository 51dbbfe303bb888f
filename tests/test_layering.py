"""The packages' layering, read from every module's imports with `ast` (function-level imports included):

    trainables  <-  spaces  <-  search          analysis  ->  trainables' column / result / results-folder modules

- `trainables` imports none of `spaces`, `search`, `analysis` (it is the trial; everything else drives it);
- `spaces` imports `trainables` only;
- `analysis` imports from `trainables` only the modules in `ANALYSIS_MAY_IMPORT`, and never `spaces` or `search`
  (a results folder is read without the search machinery);
- no import cycle among `search`'s modules (counting function-level imports: a cycle there is still a cycle in
  the design, and it made `launch` and `grid_cmd` import each other).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("trainables", "spaces", "search", "analysis")
FORBIDDEN = {
    "trainables": {"spaces", "search", "analysis"},
    "spaces": {"search", "analysis"},
    "analysis": {"spaces", "search"},
    "search": set(),
}
ANALYSIS_MAY_IMPORT = {
    "trainables.errors",  # ConfigError: bad input is one line, exit 2
    "trainables.result",  # TrialStatus
    "trainables.records",  # the summary columns (SUMMARY_COLUMNS) as long as they live there
    "trainables.columns",  # the result-column table
    "trainables.results_folder",  # the results folder's format
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            parts = file.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = file
    return found


MODULES = _modules()


def imports_of(source: str, module: str, known: set[str] | None = None) -> set[str]:
    """Every module `source` imports (absolute names; relative imports resolved against `module`), at any depth
    in the file. `from pkg import name` counts as `pkg.name` when that is a module in `known`, else as `pkg`."""
    known = set(MODULES) if known is None else known
    package = module.rsplit(".", 1)[0] if "." in module else module
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.add(full if full in known else base)
    return out


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def violations(module: str, imported: set[str]) -> list[str]:
    """The layering rules `module` breaks by importing `imported`."""
    own = _top(module)
    bad = [name for name in sorted(imported) if _top(name) in FORBIDDEN.get(own, set())]
    if own == "analysis":
        bad += [
            name
            for name in sorted(imported)
            if _top(name) == "trainables" and name not in ANALYSIS_MAY_IMPORT
        ]
    return [f"{module} imports {name}" for name in bad]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_module_keeps_to_its_layer(module: str) -> None:
    imported = imports_of(MODULES[module].read_text(encoding="utf-8"), module)
    assert violations(module, imported) == []


def test_the_rules_catch_what_they_forbid() -> None:
    """The checker itself: a function-level import of search inside trainables, a relative import and an
    analysis import of the training loop are all caught."""
    source = "def f():\n    from search.common import atomic_write_json\nfrom . import loop\n"
    imported = imports_of(source, "trainables.trainable")
    assert "search.common" in imported and "trainables.loop" in imported
    assert violations("trainables.trainable", imported) == ["trainables.trainable imports search.common"]
    assert violations("analysis.results", {"trainables.loop", "trainables.records", "pandas"}) == [
        "analysis.results imports trainables.loop"
    ]
    assert violations("analysis.results", {"search.results_io"}) == [
        "analysis.results imports search.results_io"
    ]
    assert violations("spaces.pareto", {"search.searcher"}) == ["spaces.pareto imports search.searcher"]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Elementary cycles of a small directed graph, each listed once from its smallest node."""
    found: list[list[str]] = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                found.append([*path, start])
            elif nxt > start and nxt not in path:
                walk(start, nxt, [*path, nxt])

    for start in sorted(graph):
        walk(start, start, [start])
    return found


def test_search_has_no_import_cycle() -> None:
    search = {name for name in MODULES if _top(name) == "search"}
    graph = {
        name: {m for m in imports_of(MODULES[name].read_text(encoding="utf-8"), name) if m in search} - {name}
        for name in search
    }
    assert cycles(graph) == []
    assert cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]  # the finder finds one
