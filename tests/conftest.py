"""Shared fixtures: a real https git server, and fresh repositories with a first commit."""

from __future__ import annotations

import itertools
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import GitServer, WorkTree

_repo_numbers = itertools.count(1)

# Python 3.11 before 3.11.8 keeps the ast module's recursion count for the whole process
# (CPython gh-106905): a traceback formatted in one of an in-process daemon's threads (3.11
# parses each source line to place its ^~~ carets) while hypothesis or schemathesis parses code
# in the test's thread can end in "AST constructor recursion depth mismatch". Tests go
# without the carets on those versions; syncd itself is not affected (it never parses code).
if sys.version_info[:3] < (3, 11, 8) and hasattr(
    traceback, "_extract_caret_anchors_from_line_segment"
):
    traceback._extract_caret_anchors_from_line_segment = lambda segment: None


@pytest.fixture(scope="session")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    """One https git server (git http-backend behind TLS and Basic auth) for the session."""
    with GitServer(tmp_path_factory.mktemp("git-server")) as server:
        yield server


@pytest.fixture
def repo(git_server: GitServer, tmp_path: Path) -> Iterator[tuple[str, WorkTree]]:
    """A fresh repository on the server with one commit on main: (url, work tree)."""
    name = f"repo{next(_repo_numbers)}"
    url = git_server.create_repo(name)
    tree = WorkTree(git_server, name, tmp_path / f"{name}-work")
    tree.write("README.md", f"# {name}\n")
    tree.commit("initial commit")
    tree.push()
    yield url, tree
    # A test that injected a fault must not leak it into the next one.
    git_server.set_fault(None)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Where no PostgreSQL answers, its tests skip: say so once, not once per test."""
    from tests.support.postgres import skipped_line

    line = skipped_line(terminalreporter.stats.get("skipped", []))
    if line:
        terminalreporter.write_line(line)
