"""The shape of the package (issue "House II"): syncd's own modules import one another without a
cycle, few modules sit at the top of syncd/ (the rest live in folders by layer), and no module
is over 400 lines but the data tables named below.

The graph is read from the source with `ast`, nothing is imported. An import inside a function
(or under `if TYPE_CHECKING:`) runs late or never, so it does not count for the whole package;
syncd/cli/ is held to more: no cycle even through those.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "syncd"
MAX_TOP_MODULES = 12
MAX_LINES = 400


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, late: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that run when the module is imported (with `late`: all of them)."""
    for node in ast.iter_child_nodes(tree):
        runs_later = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for branch in (*(node.body if late else ()), *node.orelse):
                yield from _imports(ast.Module(body=[branch], type_ignores=[]), late)
        elif late or not runs_later:  # class bodies, try, with, if: run on import
            yield from _imports(node, late)


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The syncd modules an import statement loads by name: `from a import b` loads `a.b` when
    that is a module, else `a` (a package's __init__ loading its submodules is not an edge)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name in MODULES:
                yield alias.name
        return
    base = node.module or ""
    if node.level:
        here = module.split(".")
        if MODULES[module].name != "__init__.py":
            here = here[:-1]
        here = here[: len(here) - (node.level - 1)]
        base = ".".join([*here, base] if base else here)
    for alias in node.names:
        if f"{base}.{alias.name}" in MODULES:
            yield f"{base}.{alias.name}"
        elif base in MODULES:
            yield base


def graph(late: bool = False) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        edges[module] = {
            t for node in _imports(tree, late) for t in _targets(module, node) if t != module
        }
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def _describe(found: list[list[str]], edges: dict[str, set[str]]) -> str:
    lines = []
    for component in found:
        inside = set(component)
        lines.append("; ".join(f"{m} -> {', '.join(sorted(edges[m] & inside))}" for m in component))
    return "\n".join(lines)


def test_the_finder_sees_a_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(edges) == [["a", "b", "c"]]


def test_syncd_imports_without_a_cycle() -> None:
    edges = graph()
    found = cycles(edges)
    assert not found, f"import cycles among syncd's modules:\n{_describe(found, edges)}"


def test_the_cli_has_no_cycle_even_through_late_imports() -> None:
    edges = {
        m: {t for t in targets if t.startswith("syncd.cli")}
        for m, targets in graph(late=True).items()
        if m.startswith("syncd.cli")
    }
    found = cycles(edges)
    assert not found, f"import cycles in syncd/cli:\n{_describe(found, edges)}"


def test_few_modules_sit_at_the_top_of_the_package() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, f"{len(top)} modules directly under syncd/: {top}"


# Modules allowed over MAX_LINES because they are data (tables, not logic), each with why.
# Code never goes here: split it by responsibility instead.
DATA_TABLES: dict[str, str] = {}


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_module_is_over_400_lines() -> None:
    # the bar of the issue: a module over it does more than one thing
    exempt = DATA_TABLES.keys()
    long = {
        rel: n
        for p in MODULES.values()
        if (rel := p.relative_to(ROOT).as_posix()) not in exempt and (n := _lines(p)) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split them by responsibility): {long}"


def test_the_exemptions_from_the_line_bar_are_real() -> None:
    modules = {p.relative_to(ROOT).as_posix(): p for p in MODULES.values()}
    unknown = sorted(DATA_TABLES.keys() - modules.keys())
    assert not unknown, f"exempted from the line bar but not a module of syncd: {unknown}"
    # a data table that shrank under the bar needs its exemption no more
    short = sorted(rel for rel in DATA_TABLES if _lines(modules[rel]) <= MAX_LINES)
    assert not short, f"in DATA_TABLES but not over {MAX_LINES} lines any more: {short}"
    assert all(reason.strip() for reason in DATA_TABLES.values()), "each table says why"
