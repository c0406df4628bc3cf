"""Fixtures of the store tests: a fresh PostgreSQL database per test, and a store of each kind
(fake, SQLite, PostgreSQL; tests/support/stores.py). A module that needs another `store` or
`pg_url` defines its own, which takes precedence."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.store import Store
from tests.support import postgres
from tests.support.stores import KINDS, open_store


@pytest.fixture(scope="module")
def pg_server() -> None:
    postgres.require()


@pytest.fixture
def pg_url(pg_server: None) -> Iterator[str]:
    with postgres.fresh_database() as url:
        yield url


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = open_store(str(request.param), tmp_path, request)
    yield s
    s.close()
