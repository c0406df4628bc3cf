"""The real daemon as a fixture: `python -m syncd serve` on loopback, against the https server.

The harness itself is `tests.support.daemon`, shared with the reliability tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import GitServer, WorkTree
from tests.support.daemon import Daemon, kill_daemon, start_daemon


@pytest.fixture
def daemon(git_server: GitServer, repo: tuple[str, WorkTree], tmp_path: Path) -> Iterator[Daemon]:
    url, tree = repo
    d = start_daemon(tmp_path, git_server, tree, url)
    yield d
    kill_daemon(d)
