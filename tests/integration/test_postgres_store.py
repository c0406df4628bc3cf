"""The PostgreSQL store's own cases: migrations (under a lock, one transaction each), a newer
schema, and the bad inputs that must stop a start with one clear error naming the host and
the database, never the password. Each test has a fresh database, dropped after it."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.cli import main
from syncd.store import StoreError
from tests.support import postgres

SECRET = "pg-pass-7c41e9"


@pytest.fixture
def pg_url() -> Iterator[str]:
    postgres.require()
    with postgres.fresh_database() as url:
        yield url


def store_at(url: str, password: str | None = None):  # type: ignore[no-untyped-def]
    from syncd.store.postgres import PostgresStore

    return PostgresStore(url, password, connect_timeout=3)


def where(url: str) -> str:
    return url.rpartition("@")[2]  # host:port/database


def test_a_fresh_database_is_migrated_and_reopened_as_is(pg_url: str) -> None:
    from syncd.store.postgres_schema import MIGRATIONS

    first = store_at(pg_url)
    assert (first.migrated_from, first.schema_version()) == (0, len(MIGRATIONS))
    first.close()
    second = store_at(pg_url)
    assert second.migrated_from == len(MIGRATIONS)
    second.close()


def test_replicas_starting_together_migrate_once(pg_url: str) -> None:
    from syncd.store.postgres_schema import MIGRATIONS

    found: list[int] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            s = store_at(pg_url)
            found.append(s.migrated_from)
            s.close()
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    # The advisory lock lets exactly one of them find the empty schema.
    assert sorted(found) == [0] + [len(MIGRATIONS)] * 3


def test_a_newer_schema_is_refused(pg_url: str) -> None:
    import psycopg

    store_at(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = 999")
    with pytest.raises(StoreError) as e:
        store_at(pg_url)
    assert "schema version 999" in str(e.value) and "upgrade syncd" in str(e.value)
    assert where(pg_url) in str(e.value)


def test_a_failing_migration_leaves_the_previous_version(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    from syncd.store import postgres as pg_store
    from syncd.store import postgres_schema

    store_at(pg_url).close()
    broken = (*postgres_schema.MIGRATIONS, "CREATE TABLE half_done (x INTEGER); SELECT 1/0;")
    monkeypatch.setattr(pg_store, "MIGRATIONS", broken)
    with pytest.raises(StoreError, match="cannot migrate") as e:
        store_at(pg_url)
    assert "division by zero" in str(e.value) and where(pg_url) in str(e.value)
    with psycopg.connect(pg_url) as conn:
        version = conn.execute("SELECT version FROM schema_version").fetchone()
        half = conn.execute("SELECT to_regclass('half_done')").fetchone()
    assert version == (len(postgres_schema.MIGRATIONS),)
    assert half == (None,)


def test_a_missing_database_is_named(pg_url: str) -> None:
    url = pg_url.rpartition("/")[0] + "/syncd_no_such_database"
    with pytest.raises(StoreError) as e:
        store_at(url, SECRET)
    message = str(e.value)
    assert message.startswith(f"cannot connect to PostgreSQL store {where(url)}:")
    assert "does not exist" in message and SECRET not in message
    assert "\n" not in message


def test_a_server_that_is_down_is_named() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = f"postgresql://syncd@127.0.0.1:{port}/syncd"
    with pytest.raises(StoreError) as e:
        store_at(url, SECRET)
    message = str(e.value)
    assert message.startswith(f"cannot connect to PostgreSQL store 127.0.0.1:{port}/syncd:")
    assert "refused" in message.lower() and SECRET not in message


class PasswordRefusingServer:
    """Speaks just enough of PostgreSQL's protocol to ask for a password and refuse it, as a
    server with password authentication does (the test server trusts everyone)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.passwords: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError, struct.error):
                self._one(conn)

    def _one(self, conn: socket.socket) -> None:
        while True:
            (length,) = struct.unpack("!I", _read(conn, 4))
            body = _read(conn, length - 4)
            code = struct.unpack("!I", body[:4])[0]
            if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest: not here
                conn.sendall(b"N")
                continue
            break
        conn.sendall(b"R" + struct.pack("!II", 8, 3))  # AuthenticationCleartextPassword
        kind = _read(conn, 1)
        (length,) = struct.unpack("!I", _read(conn, 4))
        if kind == b"p":
            self.passwords.append(_read(conn, length - 4).rstrip(b"\0"))
        fields = b'SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user "syncd"\0\0'
        conn.sendall(b"E" + struct.pack("!I", len(fields) + 4) + fields)

    def close(self) -> None:
        self.sock.close()


def _read(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise OSError("closed")
        data += chunk
    return data


def test_a_wrong_password_is_refused_without_showing_it() -> None:
    server = PasswordRefusingServer()
    try:
        url = f"postgresql://syncd@127.0.0.1:{server.port}/syncd"
        with pytest.raises(StoreError) as e:
            store_at(url, SECRET)
    finally:
        server.close()
    message = str(e.value)
    assert message.startswith(f"cannot connect to PostgreSQL store 127.0.0.1:{server.port}/syncd")
    assert "password authentication failed" in message
    assert SECRET not in message and SECRET not in repr(e.value.__cause__ or "")
    assert server.passwords and server.passwords[0] == SECRET.encode()  # it was sent


def test_migrate_command_on_postgresql_and_sqlite(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from syncd.store import MIGRATIONS
    from syncd.store.postgres_schema import MIGRATIONS as PG_MIGRATIONS

    pg = tmp_path / "pg.yaml"
    pg.write_text(f"state_dir: {tmp_path}/state\nstore: {{url: '{pg_url}'}}\n")
    assert main(["migrate", "--config", str(pg)]) == 0
    assert main(["migrate", "--config", str(pg)]) == 0
    lite = tmp_path / "lite.yaml"
    lite.write_text(f"state_dir: {tmp_path}/state\n")
    assert main(["migrate", "--config", str(lite)]) == 0
    out = capsys.readouterr().out.splitlines()
    n, m = len(PG_MIGRATIONS), len(MIGRATIONS)
    assert out == [
        f"store {where(pg_url)}: schema version {n} (migrated from 0)",
        f"store {where(pg_url)}: schema version {n} (already up to date)",
        f"store {tmp_path}/state/syncd.db: schema version {m} (migrated from 0)",
    ]


def test_migrate_command_fails_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = postgres.SERVER.rpartition("@")[2]
    config = tmp_path / "pg.yaml"
    config.write_text(
        f"state_dir: {tmp_path}/state\nstore: {{url: 'postgresql://syncd@{server}/syncd_nope',"
        " password_env: SYNCD_TEST_PG_PASSWORD}\n"
    )
    monkeypatch.setenv("SYNCD_TEST_PG_PASSWORD", SECRET)
    assert main(["migrate", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{server}/syncd_nope" in err and SECRET not in err


def test_lost_connections_are_replaced_and_reported_meanwhile(pg_url: str) -> None:
    import psycopg

    from syncd.core.model import Status, SyncState

    store = store_at(pg_url)
    try:
        store.save_state(SyncState("ws1", Status.SYNCED, "abc"))
        assert store.problem() is None
        # As a database restart does: every connection of syncd's is cut.
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        seen: list[str] = []
        for _ in range(10):
            try:
                assert store.state("ws1").last_applied_revision == "abc"
                break
            except StoreError as e:  # a cut connection fails one call, naming the store
                seen.append(str(e))
        else:
            raise AssertionError(f"the store did not reconnect: {seen}")
        assert all(m.startswith(f"store {where(pg_url)}: ") for m in seen), seen
        assert store.problem() is None or where(pg_url) in str(store.problem())
        store.save_state(SyncState("ws1", Status.SYNCED, "def"))
        assert store.problem() is None
    finally:
        store.close()
