"""The statements a backup's export and import run (syncd.store.backup), for one dialect: the
tables and columns are the format's (syncd.store.backup_format.TABLES); the dialects differ in
the parameter mark, in what orders runs as recorded (SQLite's rowid, PostgreSQL's seq), and in
how text sorts (PostgreSQL: by bytes, `COLLATE "C"`, as SQLite does), so that the same store
exports the same file from either database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from syncd.store.backup_format import TABLES

# The order of each table's rows in a backup: its key.
_ORDER: Mapping[str, tuple[str, ...]] = {
    "workspaces": ("id",),
    "health": ("workspace",),
    "steps": ("workspace", "name"),
    "git_files": ("workspace", "path"),
    "audit": ("id",),
    "meta": ("key",),
}
# Tables a restore must find empty besides those it writes: a writer's lease is the sign of a
# syncd working on this store.
_ALSO_EMPTY = ("leases",)


@dataclass(frozen=True, slots=True)
class BackupSql:
    select: Mapping[str, str]  # (): the table's rows in TABLES' column order, in backup order
    insert: Mapping[str, str]  # the values in TABLES' column order
    count: Mapping[str, str]  # (): count(*), of the tables written and those that must be empty
    after_import: tuple[str, ...]  # (): what a restore runs last


def backup_sql(
    mark: str, run_order: str, collate: str = "", after_import: tuple[str, ...] = ()
) -> BackupSql:
    select, insert = {}, {}
    for table, kinds in TABLES.items():
        columns = ", ".join(kinds)
        if table == "runs":
            order = run_order
        else:
            order = ", ".join(
                f"{c}{collate}" if kinds[c].startswith("text") else c for c in _ORDER[table]
            )
        select[table] = f"SELECT {columns} FROM {table} ORDER BY {order}"
        marks = ", ".join([mark] * len(kinds))
        insert[table] = f"INSERT INTO {table} ({columns}) VALUES ({marks})"
    count = {t: f"SELECT count(*) FROM {t}" for t in (*TABLES, *_ALSO_EMPTY)}
    return BackupSql(select, insert, count, after_import)
