"""The user documentation in docs/ keeps up with the code: every API operation, metric and CLI
command is documented, the example step file parses, every relative link resolves, and every
file of this repository and module of syncd that README.md and docs/ name exists.

When a test here fails after adding a feature, document the feature (and take it off the
"Not yet available" list in docs/README.md if it was there).
"""

from __future__ import annotations

import argparse
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.cli import _parser
from syncd.core.steps import SUFFIX, parse_step_file, step_file_name
from syncd.http.openapi import openapi_document
from syncd.ops.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
# [text](target) and ![alt](target); the text may hold backticks, not brackets.
_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
# `code`, ``code with a ` in it``: a run of backticks closed by a run as long.
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)
# A fenced block of shell commands: run in a checkout, so its paths are the repository's. The
# other blocks (yaml, json, text, output) show a user's own files, which the repository lacks.
_SHELL_FENCE = re.compile(r"^(```|~~~)[ \t]*(?:sh|bash|shell|console)[ \t]*\n(.*?)^\1", re.M | re.S)
# The repository's top-level folders: a path that starts with one is the repository's (an
# absolute /etc/syncd/... or ~/.config/syncd/... is a user's, and does not start with one).
_TOP = ("syncd", "tests", "bench", "docs", "config", "packaging", "systemd")
_REPO_PATH = re.compile(rf"^(?:\./)?(?:{'|'.join(_TOP)})/")
_MODULE_RUN = re.compile(r"python3?\s+-m\s+(syncd(?:\.\w+)*)")
_DOTTED = re.compile(r"^syncd(?:\.[A-Za-z_]\w*)+$")
# Names shaped like syncd.x that are files or hosts, not modules: syncd.yaml, syncd.example.com.
_NOT_MODULES = {"yaml", "yml", "json", "db", "service", "com", "md", "py", "toml", "sh"}


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _prose(path: Path) -> str:
    """A page without its fenced code blocks, where `[x](y)` is code, not a link."""
    return _FENCE.sub("", _read(path))


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for heading in _HEADING.findall(_prose(path)):
        slug, n = _slug(heading), 1
        candidate = slug
        while candidate in found:  # GitHub numbers repeated headings: x, x-1, x-2
            candidate, n = f"{slug}-{n}", n + 1
        found.add(candidate)
    return found


def _loggers() -> set[str]:
    """The loggers syncd names: `syncd.audit` in a page is one of those, not a module."""
    return {
        name
        for path in (ROOT / "syncd").rglob("*.py")
        for name in re.findall(r'getLogger\("([^"]+)"\)', _read(path))
    }


def _tokens(page: Path) -> Iterator[str]:
    """The words of a page's code spans and of its shell blocks, trimmed of punctuation."""
    text = _read(page)
    chunks = [m.group(2) for m in _CODE_SPAN.finditer(_prose(page))]
    chunks += [m.group(2) for m in _SHELL_FENCE.finditer(text)]
    for chunk in chunks:
        for word in chunk.split():
            yield word.strip("'\"()[],;").rstrip(".:")


def _repo_path_missing(word: str) -> bool:
    """Whether a word that names a path of this repository names none that exists."""
    path = word.removeprefix("./").split("::")[0].split("#")[0]  # a test's id, an anchor
    if re.search(r"[<>{}$]", path):  # a placeholder: `tests/unit/test_<name>.py`
        return False
    if any(c in path for c in "*?["):
        return not any(ROOT.glob(path))
    return not (ROOT / path).exists()


def _module_missing(dotted: str) -> bool:
    """Whether `syncd.a.b.Name` names no module of syncd (and no name in the deepest one)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        module = ".".join(parts[:i])
        base = ROOT.joinpath(*parts[:i])
        if (base / "__init__.py").exists() or base.with_suffix(".py").exists():
            break
    else:
        return True
    target: object = importlib.import_module(module)
    for attribute in parts[i:]:
        if not hasattr(target, attribute):
            return True
        target = getattr(target, attribute)
    return False


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = _parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("syncd's parser has no subcommands")


def test_the_pages_exist() -> None:
    names = {p.name for p in DOCS.glob("*.md")}
    for page in (
        "README.md",
        "step-format.md",
        "configuration.md",
        "http-api.md",
        "metrics.md",
        "cli.md",
        "operations.md",
        "workflow.md",
    ):
        assert page in names


def test_every_api_operation_is_documented() -> None:
    text = _read(DOCS / "http-api.md")
    missing = [
        f"{method.upper()} {path}"
        for path, operations in openapi_document()["paths"].items()
        for method in operations
        if f"{method.upper()} {path}" not in text
    ]
    assert not missing, f"docs/http-api.md does not mention: {missing}"


def test_every_metric_is_documented() -> None:
    text = _read(DOCS / "metrics.md")
    names = []
    for family in Metrics().registry.collect():
        # Counters are exposed with `_total`, as users query them.
        names.append(f"{family.name}_total" if family.type == "counter" else family.name)
    assert names
    missing = [name for name in names if f"`{name}`" not in text]
    assert not missing, f"docs/metrics.md does not mention: {missing}"


def test_every_cli_command_and_option_is_documented() -> None:
    text = _read(DOCS / "cli.md")
    commands = _subcommands()
    missing = [f"syncd {name}" for name in commands if f"syncd {name}" not in text]
    for name, sub in commands.items():
        for action in sub._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help" and option not in text:
                    missing.append(f"syncd {name} {option}")
    assert not missing, f"docs/cli.md does not mention: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_reference_to_files_users_do_not_have(page: Path) -> None:
    assert "../shared" not in _read(page)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in _LINK.findall(_prose(page)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, …
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target}: no heading with anchor #{anchor}")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_named_exists(page: Path) -> None:
    # Paths in code spans and shell blocks; the links are test_every_relative_link_resolves's.
    # A module moved in the refactors ("House II") leaves pages naming its old place.
    missing = sorted({w for w in _tokens(page) if _REPO_PATH.match(w) and _repo_path_missing(w)})
    # `http/errors.py`: a module of syncd named from inside the package
    missing += sorted(
        {
            w
            for w in _tokens(page)
            if w.endswith(".py")
            and "/" in w
            and not _REPO_PATH.match(w)
            and not w.startswith(("/", "~"))
            and _repo_path_missing(f"syncd/{w}")
        }
    )
    assert not missing, f"{page.relative_to(ROOT)} names files that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_named_exists(page: Path) -> None:
    # `python -m syncd.x` anywhere it is written, and `syncd.x.y` as a code span; a bare
    # `syncd.x` that is a logger's name (`syncd.audit`) or a file's (`syncd.yaml`) is skipped.
    loggers = _loggers()
    named = set(_MODULE_RUN.findall(_read(page)))
    named |= {
        w
        for w in _tokens(page)
        if _DOTTED.match(w) and w not in loggers and w.rsplit(".", 1)[1] not in _NOT_MODULES
    }
    missing = sorted(name for name in named if _module_missing(name))
    assert not missing, f"{page.relative_to(ROOT)} names modules that do not exist: {missing}"


def test_the_path_checks_see_a_moved_module() -> None:
    assert _repo_path_missing("syncd/engine.py") and not _repo_path_missing("syncd/sync/engine.py")
    assert _repo_path_missing("tests/unit/test_nothing*.py")
    assert not _repo_path_missing("tests/unit/test_docs.py::test_the_pages_exist")
    assert _module_missing("syncd.intake_front") and _module_missing("syncd.core.errors.Nope")
    assert not _module_missing("syncd.http.intake.front")
    assert not _module_missing("syncd.core.errors.SyncdError")


def test_the_example_step_file_parses_and_is_named_after_its_step() -> None:
    examples = sorted((DOCS / "examples").glob(f"*{SUFFIX}"))
    assert examples
    for path in examples:
        name, content = parse_step_file(path.name, path.read_bytes())
        assert step_file_name(name) == path.name
        assert content.if_ and content.do
