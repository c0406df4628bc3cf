"""Backups of a store, and moving a store from SQLite to PostgreSQL (or back): `syncd admin
export FILE` writes everything a restore needs, `syncd admin import FILE` restores it into an
empty store. The file's format is syncd.store.backup_format's; the SQL is syncd.store.backup_sql's.

An export is one consistent snapshot (SqlStore.snapshot: one read transaction; SQLite in WAL
mode and PostgreSQL's REPEATABLE READ both let the daemon go on writing meanwhile), streamed to
the file row by row. It is written beside FILE and renamed onto it once whole, readable by its
owner only (it holds every step's content): a failed export leaves any earlier FILE as it was.

An import first reads the whole file through, checking every row, the counts and the digest,
with nothing written; then, in one transaction, checks that the store is empty, writes the rows
in batches as it reads the file again, and commits only if that second read is good too (the
file could have changed in between). Any refusal or error rolls everything back.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from syncd.store.backup_format import TABLES, BackupRefused, Reader, Summary, Writer
from syncd.store.base import SqlStore

__all__ = ["BackupRefused", "Summary", "export_backup", "import_backup", "occupied"]

INSERT_BATCH = 1000  # rows per executemany


def export_backup(store: SqlStore[Any], path: Path) -> Summary:
    """Write the store's backup to `path` (replacing it only once the new one is whole)."""
    sql = store.dialect.backup
    version = store.schema_version()
    # A new file of syncd's own (mkstemp: created exclusively, never through a link someone
    # planted, owner only): it holds every step's content.
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    partial = Path(name)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as out:
            writer = Writer(out, store.kind, version)
            with store.snapshot() as rows:
                for table in TABLES:
                    for values in rows(sql.select[table]):
                        writer.row(table, values)
            summary = writer.end()
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    return summary


def occupied(store: SqlStore[Any]) -> dict[str, int]:
    """The tables a restore must find empty that are not, with their counts of rows."""
    with store.snapshot() as rows:
        # Each count's cursor read to its end (one row), so it is closed at once.
        counts = {t: sum(int(r[0]) for r in rows(s)) for t, s in store.dialect.backup.count.items()}
    return {table: count for table, count in counts.items() if count}


def _refuse_occupied(found: dict[str, int], where: str) -> None:
    if found:
        held = ", ".join(f"{table}: {n}" for table, n in found.items())
        raise BackupRefused(
            f"store {where} is not empty ({held}): a backup is imported only into a new,"
            " empty store; nothing was written"
        )


def _batches(reader: Reader) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
    """The reader's rows, in runs of one table of at most INSERT_BATCH rows."""
    table, batch = "", list[tuple[Any, ...]]()
    for row_table, values in reader.rows():
        if row_table != table or len(batch) >= INSERT_BATCH:
            if batch:
                yield table, batch
            table, batch = row_table, []
        batch.append(values)
    if batch:
        yield table, batch


def import_backup(store: SqlStore[Any], path: Path, where: str) -> Summary:
    """Restore the backup at `path` into the store, which must be empty; `where` names the
    store in messages. BackupRefused, with nothing written, for a file that is not whole, not
    this format or changed, or a store that is not empty."""
    _refuse_occupied(occupied(store), where)
    name = str(path)
    try:
        with path.open("rb") as source:
            first = Reader(source, name)
            for _ in first.rows():
                pass
            checked = first.summary
    except OSError as e:
        raise BackupRefused(f"{name}: cannot read: {e.strerror or e}") from e
    sql = store.dialect.backup
    with path.open("rb") as source, store.restoring() as db:
        # Again inside the transaction: nothing slips in between the check and the writes.
        found = {}
        for table, statement in sql.count.items():
            count = int(db.execute(statement).fetchone()[0])
            if count:
                found[table] = count
        _refuse_occupied(found, where)
        reader = Reader(source, name)
        for table, batch in _batches(reader):
            store.dialect.executemany(db, sql.insert[table], batch)
        if checked is None or reader.summary is None or reader.summary.sha256 != checked.sha256:
            raise BackupRefused(f"{name}: the file changed while it was imported; nothing written")
        for statement in sql.after_import:
            db.execute(statement)
    return reader.summary
