"""The user documentation in docs/ keeps up with the code: every API operation, metric and CLI
command is documented, the example step file parses, and every relative link resolves.

When a test here fails after adding a feature, document the feature (and take it off the
"Not yet available" list in docs/README.md if it was there).
"""

from __future__ import annotations

import argparse
import re
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


def test_the_example_step_file_parses_and_is_named_after_its_step() -> None:
    examples = sorted((DOCS / "examples").glob(f"*{SUFFIX}"))
    assert examples
    for path in examples:
        name, content = parse_step_file(path.name, path.read_bytes())
        assert step_file_name(name) == path.name
        assert content.if_ and content.do
