"""The audit in the stores, the same contract on the FakeStore, SQLite and PostgreSQL: entries
come back newest first with rising ids, filtered by workspace, actor and time, paged by the id
cursor, bounded in count and in the length of their text; and, on the real stores, they
survive a reopen."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.core.audit_model import MAX_DETAIL, MAX_FIELD, AuditEntry, AuditQuery
from syncd.store import Store
from tests.support.stores import REAL, open_store


def entry(at: float, actor: str = "ci", ws: str | None = "dev", **extra: object) -> AuditEntry:
    fields: dict[str, object] = {"action": "sync", "result": "ok", "status": 202, "via": "api"}
    fields.update(extra)
    return AuditEntry(at=at, actor=actor, workspace=ws, **fields)  # type: ignore[arg-type]


def fill(store: Store) -> None:
    store.record_audit(entry(100.0, "ci", "dev", revision="abc123", step="a/b"))
    store.record_audit(entry(200.0, "ops", "prod", action="suspend", status=200))
    store.record_audit(entry(300.0, "ci", "prod", result="refused", status=422, detail="no"))
    store.record_audit(entry(400.0, "oidc:alice", None, action="sign_in", via="console"))


def test_entries_come_back_newest_first_with_rising_ids(store: Store) -> None:
    fill(store)
    found = store.audit_entries(AuditQuery())
    assert [e.at for e in found] == [400.0, 300.0, 200.0, 100.0]
    ids = [e.id or 0 for e in found]
    assert all(i > 0 for i in ids) and ids == sorted(ids, reverse=True)
    oldest = found[-1]
    assert (oldest.actor, oldest.via, oldest.action, oldest.workspace) == (
        "ci",
        "api",
        "sync",
        "dev",
    )
    assert (oldest.revision, oldest.step, oldest.result, oldest.status) == (
        "abc123",
        "a/b",
        "ok",
        202,
    )
    assert found[1].detail == "no" and found[0].workspace is None
    assert found[0].to_dict()["at"] == "1970-01-01T00:06:40.000Z"


def test_filters_by_workspace_actor_and_time(store: Store) -> None:
    fill(store)
    assert [e.at for e in store.audit_entries(AuditQuery(workspace="prod"))] == [300.0, 200.0]
    assert [e.at for e in store.audit_entries(AuditQuery(actor="ci"))] == [300.0, 100.0]
    assert [e.at for e in store.audit_entries(AuditQuery(since=200.0))] == [400.0, 300.0, 200.0]
    both = AuditQuery(workspace="prod", actor="ci", since=250.0)
    assert [e.at for e in store.audit_entries(both)] == [300.0]
    assert store.audit_entries(AuditQuery(workspace="nowhere")) == []


def test_pages_by_the_id_cursor(store: Store) -> None:
    for i in range(7):
        store.record_audit(entry(float(i)))
    seen: list[float] = []
    cursor: int | None = None
    for _ in range(10):  # bounded: 7 entries in pages of 3 take 3 pages
        page = store.audit_entries(AuditQuery(before_id=cursor, limit=3))
        seen += [e.at for e in page]
        if len(page) < 3:
            break
        cursor = page[-1].id
    assert seen == [6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]


def test_limits_are_bounded() -> None:
    for bad in (0, -1, 1001, True):
        with pytest.raises(ValueError, match="limit"):
            AuditQuery(limit=bad)
    with pytest.raises(ValueError, match="before_id"):
        AuditQuery(before_id=0)
    assert AuditQuery(limit=1000).limit == 1000


def test_limit_caps_the_answer(store: Store) -> None:
    fill(store)
    assert [e.at for e in store.audit_entries(AuditQuery(limit=1))] == [400.0]


def test_long_text_is_cut(store: Store) -> None:
    store.record_audit(entry(1.0, "x" * 5000, "w" * 5000, detail="d" * 10_000))
    (found,) = store.audit_entries(AuditQuery())
    assert len(found.detail or "") == MAX_DETAIL and len(found.actor) == MAX_FIELD
    assert len(found.workspace or "") == MAX_FIELD


@pytest.fixture(params=REAL)
def real(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_entries_survive_a_reopen(
    real: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    first = open_store(real, tmp_path, request)
    fill(first)
    first.close()
    again = open_store(real, tmp_path, request)
    try:
        assert [e.at for e in again.audit_entries(AuditQuery())] == [400.0, 300.0, 200.0, 100.0]
        again.record_audit(entry(500.0))  # ids go on rising after a reopen
        newest = again.audit_entries(AuditQuery(limit=2))
        assert newest[0].at == 500.0 and (newest[0].id or 0) > (newest[1].id or 0)
    finally:
        again.close()


def test_replicas_share_the_audit(pg_url: str) -> None:
    """Two replicas are two stores on one PostgreSQL database: what one writes, the other
    reads at once (entries are in the store, not in a replica's memory)."""
    from syncd.store.postgres import PostgresStore

    one, other = PostgresStore(pg_url), PostgresStore(pg_url)
    try:
        one.record_audit(entry(100.0, "ops", "prod", action="suspend", status=200))
        other.record_audit(entry(200.0, "ci", "prod"))
        for store in (one, other):
            seen = [(e.actor, e.action) for e in store.audit_entries(AuditQuery(limit=10))]
            assert seen == [("ci", "sync"), ("ops", "suspend")]
    finally:
        one.close()
        other.close()


def test_a_change_takes_its_entry_into_its_own_transaction(store: Store) -> None:
    """Suspend and step edits store the action's entry with the change: both, or neither (a
    delete of no step stores no entry)."""
    from syncd.core.model import StepContent

    store.set_suspended("dev", True, entry(100.0, action="suspend", status=200))
    store.put_outside("dev", "a", StepContent("true", "go()"), entry(200.0, action="step.put"))
    assert not store.delete_outside("dev", "nope", entry(300.0, action="step.delete"))
    assert store.delete_outside("dev", "a", entry(400.0, action="step.delete", status=204))
    found = [(e.at, e.action) for e in store.audit_entries(AuditQuery(limit=10))]
    assert found == [(400.0, "step.delete"), (200.0, "step.put"), (100.0, "suspend")]
    assert store.state("dev").suspended
