"""The embedded store: SQLite in WAL mode, so the daemon and the CLI can share one file.

Its logic is `SqlStore`'s (syncd.store.base), in SQLite's SQL (syncd.store.sqlite_rows); here is
how it holds its connections. Writes are `BEGIN IMMEDIATE` transactions with `synchronous=FULL`:
a committed sync survives power loss, not only a crash.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from syncd.store.base import SqlStore
from syncd.store.protocol import StoreError
from syncd.store.sqlite_rows import SQLITE, identity, is_busy
from syncd.store.sqlite_schema import MIGRATIONS


class SqliteStore(SqlStore[sqlite3.Connection]):
    dialect = SQLITE
    kind = "sqlite"

    def __init__(self, path: Path, busy_timeout_ms: int = 10_000) -> None:
        super().__init__()
        self.path = path
        self._lock = threading.RLock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # One connection, shared by threads under a lock: pygit2 and SQLite work runs off
            # the event loop in worker threads, and SQLite serializes writers anyway.
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            # FULL: a committed sync survives power loss, not only a process crash.
            self._db.execute("PRAGMA synchronous = FULL")
            # The file this connection writes: if it is deleted or replaced, writes go nowhere.
            self._identity = identity(path)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"store {path}: cannot open: {e}") from e
        self.migrated_from = self._migrate()
        # Webhook deliveries have a connection of their own, so that the intake never waits on
        # the lock a long sync holds, and NORMAL sync: in WAL mode a commit then survives a
        # crash of syncd, not a power loss, which for a dedupe record costs a fsync per webhook
        # for no good reason (a lost record means one redundant, coalesced run at worst).
        self._hooks_db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._hooks_lock = threading.Lock()
        self._hooks_db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        self._hooks_db.execute("PRAGMA synchronous = NORMAL")

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        with self._hooks_lock:
            self._hooks_db.close()
        with self._lock:
            self._db.close()

    def integrity_ok(self) -> bool:
        with self._reading() as db:
            return bool(db.execute("PRAGMA integrity_check").fetchone()[0] == "ok")

    def schema_version(self) -> int:
        with self._reading() as db:
            return int(db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> int:
        """Bring the schema up to date, in one transaction; return the version found."""
        with self._tx() as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"store {self.path} has schema version {version}; this syncd knows up to "
                    f"{len(MIGRATIONS)}: upgrade syncd"
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in _statements(script):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")
        return version

    def problem(self) -> str | None:
        """Why the store cannot take writes now, or None: its file deleted or replaced under
        this process, or the last write failed (disk full, I/O error) and no apply has
        succeeded since. (Another process holding the write lock is no failure: busy.)"""
        try:
            if identity(self.path) != self._identity:
                return f"store {self.path}: the database file was replaced"
        except FileNotFoundError:
            return f"store {self.path}: the database file is gone"
        except OSError as e:
            return f"store {self.path}: {e}"
        return self._write_failure

    # -- connections -----------------------------------------------------------------------

    @contextmanager
    def _tx(
        self, ws: str | None = None, clears_failure: bool = False, durable: bool = True
    ) -> Iterator[sqlite3.Connection]:
        """One write transaction (see SqlStore._tx). SQLite has one writer at a time: the
        workspace is not needed to serialize its writers. SQLite's own errors become StoreError
        naming the store's path.

        Not `durable`: committed without its own fsync (a lease: after a power loss no writer
        that held it lives on; the next durable commit makes it durable, in order)."""
        with self._reading() as db:
            if not durable:
                db.execute("PRAGMA synchronous = NORMAL")
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    # SQLite has already rolled back after some errors (SQLITE_FULL).
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                if not is_busy(e):
                    self._write_failure = f"store {self.path}: the last write failed: {e}"
                raise
            finally:
                if not durable:
                    db.execute("PRAGMA synchronous = FULL")
            if clears_failure:
                self._write_failure = None

    def _lease_tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._tx(durable=False)

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """Under the connection's lock; SQLite's errors become StoreError naming the path."""
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as e:
                raise StoreError(f"store {self.path}: {e}") from e

    @contextmanager
    def snapshot(self) -> Iterator[Callable[[str], Iterator[Sequence[Any]]]]:
        """One read transaction (see SqlStore.snapshot): in WAL mode it reads the store as of
        its first statement and holds no lock that stops another process's writes (the
        daemon's); the statements step through their rows as they are consumed. This store's
        own connection is busy meanwhile: it is for `syncd admin export`, which does nothing
        else."""
        with self._reading() as db:
            db.execute("BEGIN")
            try:

                def rows(sql: str) -> Iterator[Sequence[Any]]:
                    yield from db.execute(sql)

                yield rows
            finally:
                db.execute("ROLLBACK")  # it only read

    @contextmanager
    def _hooks(self) -> Iterator[sqlite3.Connection]:
        with self._hooks_lock:
            yield self._hooks_db


def _statements(script: str) -> list[str]:
    # executescript would COMMIT our transaction; run the statements one by one instead.
    statements = []
    for chunk in script.split(";"):
        code = "\n".join(line for line in chunk.splitlines() if not line.strip().startswith("--"))
        if code.strip():
            statements.append(code)
    return statements
