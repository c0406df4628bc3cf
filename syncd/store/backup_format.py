"""The backup file's format (`syncd admin export` / `import`): JSON Lines, written and read one
line at a time, so a store of any size is never one object in memory.

    {"syncd_backup": 1, "syncd": "1.4.0", "store": "sqlite", "created_at": "...", "tables": [...]}
    {"table": "workspaces", "row": {"id": "prod", "status": "Synced", ...}}
    ...one line per row, table by table...
    {"syncd_backup_end": {"counts": {"workspaces": 2, ...}, "sha256": "<hex>"}}

The end line holds each table's count of rows and the SHA-256 of every byte before it (the
header and the rows, newlines included): a file cut short has no end line, and a file changed or
damaged anywhere has another digest. (The digest finds damage and careless edits; anyone who
can write the file can also write a new digest: keep backups where only their owner writes.)
Each row names its columns, and each value is checked against its column's kind, so a row that
the store would take wrongly is refused with its line number, before anything is written.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from syncd import __version__
from syncd.core.errors import SyncdError
from syncd.core.times import rfc3339

FORMAT_VERSION = 1
HEADER_KEY = "syncd_backup"
END_KEY = "syncd_backup_end"
# A line's bytes, at most: a step's content is at most 1 MiB, and JSON's escapes can grow it.
MAX_LINE = 16 << 20

TEXT, OPT_TEXT, INT, REAL, OPT_REAL, BOOL = "text", "text?", "int", "real", "real?", "bool"

# What a restore needs, table by table in the order written: each column and its kind. Not
# kept: webhook deliveries (a day's dedupe), writers' leases, and PostgreSQL replicas' sync
# requests, polls and heartbeats: the state of running processes, which a restore has none of.
TABLES: Mapping[str, Mapping[str, str]] = {
    "workspaces": {
        "id": TEXT,
        "status": TEXT,
        "last_applied_revision": OPT_TEXT,
        "last_seen_revision": OPT_TEXT,
        "last_run_id": OPT_TEXT,
        "failed_revision": OPT_TEXT,
        "drift": INT,
        "source_key": OPT_TEXT,
        "pinned_revision": OPT_TEXT,
        "suspended": BOOL,
        "updated_at": OPT_REAL,
    },
    "health": {
        "workspace": TEXT,
        "health": TEXT,
        "since": OPT_REAL,
        "error": OPT_TEXT,
        "failures": INT,
        "source_failing": BOOL,
    },
    # Tombstones too (deleted = true): a step deleted outside git, for the next sync to restore.
    "steps": {
        "workspace": TEXT,
        "name": TEXT,
        "id": TEXT,
        "content": TEXT,
        "content_hash": TEXT,
        "version": INT,
        "updated_at": REAL,
        "origin": TEXT,
        "deleted": BOOL,
    },
    # Git's files as of the applied commit: an incremental sync diffs from them.
    "git_files": {"workspace": TEXT, "path": TEXT, "name": TEXT, "blob": TEXT, "content": TEXT},
    # In the order recorded, which orders runs started at the same instant.
    "runs": {
        "id": TEXT,
        "workspace": TEXT,
        "trigger": TEXT,
        "revision": OPT_TEXT,
        "result": TEXT,
        "created": INT,
        "updated": INT,
        "deleted": INT,
        "started_at": REAL,
        "finished_at": OPT_REAL,
        "error": OPT_TEXT,
        "dry_run": BOOL,
        "actor": OPT_TEXT,
        "message": OPT_TEXT,
        "author": OPT_TEXT,
        "signed_by": OPT_TEXT,
        "checks": OPT_TEXT,
    },
    "audit": {
        "id": INT,
        "at": REAL,
        "actor": TEXT,
        "via": TEXT,
        "action": TEXT,
        "workspace": OPT_TEXT,
        "revision": OPT_TEXT,
        "step": OPT_TEXT,
        "result": TEXT,
        "status": INT,
        "detail": OPT_TEXT,
    },
    # Small named values that must survive a restart (how far the e-mail digests got).
    "meta": {"key": TEXT, "value": TEXT},
}


class BackupRefused(SyncdError):
    """A backup file that is not whole, not this format, or changed; or a store that is not
    empty: nothing was written."""


def cell(kind: str, value: Any) -> Any:
    """A value as the file holds it: booleans as booleans (SQLite's 0 and 1 too), times as
    floats (so SQLite and PostgreSQL write the same text)."""
    if value is None:
        return None
    if kind == BOOL:
        return bool(value)
    if kind in (REAL, OPT_REAL):
        return float(value)
    return value


def _check(kind: str, value: Any) -> Any:
    """The value for the store, or ValueError saying what kind was expected."""
    if value is None and kind.endswith("?"):
        return None
    base = kind.rstrip("?")
    if base == TEXT and isinstance(value, str):
        return value
    if base == BOOL and isinstance(value, bool):
        return value
    if base == INT and isinstance(value, int) and not isinstance(value, bool):
        return value
    if base == REAL and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"expected {base}{' or null' if kind.endswith('?') else ''}")


@dataclass(frozen=True, slots=True)
class Summary:
    """What a backup held: rows per table, and its digest."""

    counts: Mapping[str, int]
    sha256: str
    header: Mapping[str, Any]

    def describe(self) -> str:
        return ", ".join(f"{table}: {n}" for table, n in self.counts.items())


class Writer:
    """Writes a backup to a binary file, line by line, hashing as it goes."""

    def __init__(self, out: IO[bytes], store_kind: str, schema_version: int) -> None:
        self.out = out
        self.digest = hashlib.sha256()
        self.counts = dict.fromkeys(TABLES, 0)
        self.header = {
            HEADER_KEY: FORMAT_VERSION,
            "syncd": __version__,
            "store": store_kind,
            "schema_version": schema_version,
            "created_at": rfc3339(time.time()),
            "tables": list(TABLES),
        }
        self._line(self.header)

    def _line(self, obj: Any) -> None:
        data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
        self.digest.update(data)
        self.out.write(data)

    def row(self, table: str, values: Any) -> None:
        kinds = TABLES[table]
        row = {c: cell(k, v) for (c, k), v in zip(kinds.items(), values, strict=True)}
        self._line({"table": table, "row": row})
        self.counts[table] += 1

    def end(self) -> Summary:
        digest = self.digest.hexdigest()
        end = {END_KEY: {"counts": self.counts, "sha256": digest}}
        self.out.write(json.dumps(end, separators=(",", ":")).encode("utf-8") + b"\n")
        return Summary(dict(self.counts), digest, self.header)


class Reader:
    """Reads a backup's rows, checking each as it is read. `rows()` yields (table, the values
    in TABLES' column order) and raises BackupRefused (naming the file and the line) for a file
    that is not whole, not this format, or changed; the digest and the counts are checked only
    after the last row, so a caller that writes as it reads does so in a transaction that it
    rolls back on any error. `summary` is set once all rows were read and found good."""

    def __init__(self, source: IO[bytes], name: str) -> None:
        self.source, self.name = source, name
        self.summary: Summary | None = None

    def rows(self) -> Iterator[tuple[str, tuple[Any, ...]]]:
        source, name = self.source, self.name
        digest = hashlib.sha256()
        counts = dict.fromkeys(TABLES, 0)
        header, raw = _header(_next_line(source, name, 1), name)
        digest.update(raw)
        for number in itertools.count(2):
            raw = _next_line(source, name, number)
            if not raw:
                raise BackupRefused(
                    f"{name}: truncated: it ends at line {number - 1} without its end line"
                    f" ({sum(counts.values())} rows read)"
                )
            obj = _json(raw, name, number)
            if END_KEY in obj:
                _check_end(obj, counts, digest.hexdigest(), name, number)
                if source.read(1):
                    raise BackupRefused(f"{name}: line {number + 1}: more after the end line")
                self.summary = Summary(counts, digest.hexdigest(), header)
                return
            digest.update(raw)
            table, values = _row(obj, name, number)
            counts[table] += 1
            yield table, values


def _next_line(source: IO[bytes], name: str, number: int) -> bytes:
    raw = source.readline(MAX_LINE + 1)
    if len(raw) > MAX_LINE:
        raise BackupRefused(f"{name}: line {number} is longer than {MAX_LINE >> 20} MiB")
    if raw and not raw.endswith(b"\n"):
        raise BackupRefused(f"{name}: truncated: line {number} is cut short")
    return raw


def _json(raw: bytes, name: str, number: int) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise BackupRefused(f"{name}: line {number} is not JSON ({e})") from None
    if not isinstance(obj, dict):
        raise BackupRefused(f"{name}: line {number} is not a JSON object")
    return obj


def _header(raw: bytes, name: str) -> tuple[dict[str, Any], bytes]:
    if not raw:
        raise BackupRefused(f"{name}: the file is empty")
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        obj = None
    if not isinstance(obj, dict) or HEADER_KEY not in obj:
        raise BackupRefused(f"{name}: not a syncd backup (no `{HEADER_KEY}` header line)")
    version = obj[HEADER_KEY]
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise BackupRefused(
            f"{name}: backup format version {json.dumps(version)[:20]}; this syncd reads"
            f" version {FORMAT_VERSION}"
        )
    return obj, raw


def _row(obj: dict[str, Any], name: str, number: int) -> tuple[str, tuple[Any, ...]]:
    table, row = obj.get("table"), obj.get("row")
    if not isinstance(table, str) or table not in TABLES or not isinstance(row, dict):
        shown = json.dumps(table)[:40]
        raise BackupRefused(f"{name}: line {number}: not a row of a known table (table {shown})")
    kinds = TABLES[table]
    if set(row) != set(kinds) or len(obj) != 2:
        raise BackupRefused(
            f"{name}: line {number}: a {table} row must have exactly the columns {', '.join(kinds)}"
        )
    values = []
    for column, kind in kinds.items():
        try:
            values.append(_check(kind, row[column]))
        except ValueError as e:
            raise BackupRefused(f"{name}: line {number}: {table}.{column}: {e}") from None
    return table, tuple(values)


def _check_end(
    obj: dict[str, Any], counts: dict[str, int], digest: str, name: str, number: int
) -> None:
    end = obj[END_KEY]
    if not isinstance(end, dict) or len(obj) != 1:
        raise BackupRefused(f"{name}: line {number}: a malformed end line")
    if end.get("sha256") != digest:
        raise BackupRefused(
            f"{name}: checksum mismatch: the file was changed or damaged after it was written"
            " (its end line's sha256 is not that of the lines before it)"
        )
    if end.get("counts") != counts:
        raise BackupRefused(f"{name}: line {number}: the counts of the end line are not the rows")
