"""The audit's table in the SQL stores: its statements (one text for both stores but for the
parameter mark) and the rows <-> entries. The rule once, as for leases (syncd.store.leases).

Entries are appended, never changed. `id` rises with each entry (SQLite's INTEGER PRIMARY KEY,
PostgreSQL's BIGSERIAL), so newest first is `ORDER BY id DESC` and a page's cursor is the
last id it showed. A query's WHERE is put together from the filters it has, so that each
filter can use its index (a `? IS NULL OR ...` would keep every index out).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from syncd.core.audit_model import AuditEntry, AuditQuery
from syncd.store.leases import Connection

COLUMNS = "id, at, actor, via, action, workspace, revision, step, result, status, detail"
INSERTED = COLUMNS.removeprefix("id, ")


@dataclass(frozen=True, slots=True)
class AuditSql:
    """The statements, for one store's parameter mark."""

    mark: str
    insert: str  # AuditEntry's values in INSERTED order

    def select(self, query: AuditQuery) -> tuple[str, tuple[Any, ...]]:
        """The statement and its parameters answering `query`, newest first."""
        where: list[str] = []
        params: list[Any] = []
        for column, value, op in (
            ("workspace", query.workspace, "="),
            ("actor", query.actor, "="),
            ("at", query.since, ">="),
            ("id", query.before_id, "<"),
        ):
            if value is not None:
                where.append(f"{column} {op} {self.mark}")
                params.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT {COLUMNS} FROM audit{clause} ORDER BY id DESC LIMIT {self.mark}"
        return sql, (*params, query.limit)


def audit_sql(mark: str) -> AuditSql:
    marks = ", ".join([mark] * len(INSERTED.split(",")))
    return AuditSql(mark=mark, insert=f"INSERT INTO audit ({INSERTED}) VALUES ({marks})")


def params(entry: AuditEntry) -> tuple[Any, ...]:
    e = entry.bounded()
    return (
        e.at,
        e.actor,
        e.via,
        e.action,
        e.workspace,
        e.revision,
        e.step,
        e.result,
        e.status,
        e.detail,
    )


def from_row(r: Sequence[Any]) -> AuditEntry:
    return AuditEntry(
        id=int(r[0]),
        at=float(r[1]),
        actor=str(r[2]),
        via=str(r[3]),
        action=str(r[4]),
        workspace=_text(r[5]),
        revision=_text(r[6]),
        step=_text(r[7]),
        result=str(r[8]),
        status=int(r[9]),
        detail=_text(r[10]),
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def record(db: Connection, sql: AuditSql, entry: AuditEntry) -> None:
    db.execute(sql.insert, params(entry))


def entries(db: Connection, sql: AuditSql, query: AuditQuery) -> list[AuditEntry]:
    statement, values = sql.select(query)
    return [from_row(r) for r in db.execute(statement, values).fetchall()]
