"""`syncd admin export` and `syncd admin import`, end to end through `main`: a SQLite store the
config names is backed up and restored into another config's SQLite store and into a
PostgreSQL one; a restore into a store that is not empty, or of a damaged file, exits 1 saying
why, with nothing written; `--server` is refused (these never go through an API)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from syncd.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from syncd.core.audit_model import AuditEntry
from syncd.core.model import Run, RunResult, Status, SyncState, Trigger
from syncd.store import SqliteStore
from syncd.store.backup import occupied


def write_config(root: Path, store: dict[str, Any] | None = None) -> Path:
    doc: dict[str, Any] = {
        "state_dir": str(root / "state"),
        "workspaces": [{"id": "prod", "name": "prod", "source": {"url": "https://h.invalid/x"}}],
    }
    if store is not None:
        doc["store"] = store
    root.mkdir(parents=True, exist_ok=True)
    path = root / "syncd.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SYNCD_SERVER", raising=False)
    path = write_config(tmp_path / "a")
    store = SqliteStore(tmp_path / "a/state/syncd.db")
    try:
        for i in range(3):
            run = Run(f"r{i}", "prod", Trigger.POLL, "abc", RunResult.SUCCEEDED, 10.0 + i, 11.0 + i)
            store.record_run(run, SyncState("prod", Status.SYNCED, "abc", last_run_id=run.id))
        store.record_audit(AuditEntry(5.0, "local:ana", "local", "sync", "ok", 200, "prod"))
    finally:
        store.close()
    return path


def body(path: Path) -> list[str]:
    return path.read_text().splitlines()[1:-1]


def test_export_then_import_into_another_sqlite_store(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backup = tmp_path / "backup.jsonl"
    assert main(["--config", str(source), "admin", "export", str(backup)]) == EXIT_OK
    said = capsys.readouterr().out
    assert f"to {backup}" in said and "runs: 3" in said and "audit: 1" in said
    target = write_config(tmp_path / "b")
    assert main(["admin", "import", "--config", str(target), str(backup)]) == EXIT_OK
    assert "runs: 3" in capsys.readouterr().out
    again = tmp_path / "again.jsonl"
    assert main(["--config", str(target), "admin", "export", str(again)]) == EXIT_OK
    assert body(again) == body(backup)
    # Once more into the same store: refused, naming what it holds.
    assert main(["--config", str(target), "admin", "import", str(backup)]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "is not empty (workspaces: 1, runs: 3, audit: 1)" in err
    assert "nothing was written" in err


def test_a_damaged_file_exits_1_with_nothing_written(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backup = tmp_path / "backup.jsonl"
    assert main(["--config", str(source), "admin", "export", str(backup)]) == EXIT_OK
    backup.write_bytes(backup.read_bytes().replace(b'"abc"', b'"abd"', 1))
    target = write_config(tmp_path / "b")
    capsys.readouterr()
    assert main(["--config", str(target), "admin", "import", str(backup)]) == EXIT_FAILED
    assert "checksum mismatch" in capsys.readouterr().err
    store = SqliteStore(tmp_path / "b/state/syncd.db")
    try:
        assert occupied(store) == {}
    finally:
        store.close()


def test_admin_never_goes_through_a_server(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--server", "https://127.0.0.1:1", "--config", str(source), "admin", "export"]
    assert main([*argv, str(tmp_path / "x.jsonl")]) == EXIT_USAGE
    assert "never through a server" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


def test_without_a_config_it_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.yaml"
    assert main(["admin", "export", "--config", str(missing), str(tmp_path / "x")]) == EXIT_USAGE
    assert f"no config at {missing}" in capsys.readouterr().err


def test_sqlite_moves_to_postgresql(
    source: Path, tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    backup, back = tmp_path / "backup.jsonl", tmp_path / "back.jsonl"
    assert main(["--config", str(source), "admin", "export", str(backup)]) == EXIT_OK
    target = write_config(tmp_path / "pg", store={"url": pg_url})
    assert main(["--config", str(target), "admin", "import", str(backup)]) == EXIT_OK
    assert "into store 127.0.0.1:" in capsys.readouterr().out
    assert main(["--config", str(target), "admin", "export", str(back)]) == EXIT_OK
    assert body(back) == body(backup)
