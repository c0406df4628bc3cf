"""The stores the store contract suite runs over: the FakeStore the engine's unit tests trust,
SQLite (a file) and PostgreSQL (a fresh database). A test that is about SQL itself (durability
across a reopen, two connections to one database) runs on the real ones only.

Each test module defines its `kind` and `store` fixtures over `KINDS` (or `REAL`) and its
`pg_url` fixture; `open_store` opens one of a kind.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.store import SqliteStore, Store
from tests.support.fakes import FakeStore

KINDS = ("fake", "sqlite", "postgresql")
REAL = ("sqlite", "postgresql")


class Clock:
    """The FakeStore's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def open_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Store:
    """A store of `kind`: a new FakeStore on a Clock; or, opened again, the same SQLite file,
    or the same PostgreSQL database (the test module's `pg_url`) for the test."""
    if kind == "fake":
        return FakeStore(clock=Clock())
    if kind == "sqlite":
        return SqliteStore(tmp_path / "syncd.db")
    from syncd.store.postgres import PostgresStore

    return PostgresStore(request.getfixturevalue("pg_url"))
