"""A PostgreSQL server for tests: a fresh database per test, dropped after it.

The server is the one on 127.0.0.1:5432 (trust authentication) unless SYNCD_TEST_PG names
another (`postgresql://user@host:port`). Where none answers, the tests that need it skip with
one line saying so.
"""

from __future__ import annotations

import contextlib
import functools
import os
import uuid
from collections.abc import Iterator

import pytest

SERVER = os.environ.get("SYNCD_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
UNREACHABLE = f"PostgreSQL not reachable at {SERVER.rpartition('@')[2]}"


@functools.cache  # asked once per test run: a server that is down costs a timeout each time
def reachable() -> bool:
    try:
        import psycopg
    except ImportError:
        return False
    try:
        psycopg.connect(f"{SERVER}/postgres", connect_timeout=3).close()
    except psycopg.Error:
        return False
    return True


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A new empty database (syncd_test_<random>); its URL, without a password."""
    import psycopg

    name = f"syncd_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{SERVER}/{name}"
    finally:
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def require() -> None:
    """Skip the calling test where no PostgreSQL server answers."""
    if not reachable():
        pytest.skip(UNREACHABLE)


def skipped_line(skipped: list[object]) -> str | None:
    """The one line a test run prints for its PostgreSQL tests skipped, if any were."""
    count = sum(1 for report in skipped if UNREACHABLE in str(getattr(report, "longrepr", "")))
    return f"{UNREACHABLE}: {count} PostgreSQL tests skipped" if count else None
