"""Holes found by attacks designed outside the suite: two writers, store failures, blob bombs,
pinned revisions from other branches, step files that read two ways, a store that is gone.

Each case runs real processes or the real engine against a real SQLite file and the session's
https git server. Two processes interleave through `tests.support.gated`, which holds one
process's apply at a gate while the other syncs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from syncd.app import Core, build, build_core
from syncd.config import Config, load_config
from syncd.core.errors import StepFileError
from syncd.core.layout import PulledStep, layout_files
from syncd.core.model import Origin, RunResult, Status, StepContent, Trigger
from syncd.core.steps import MAX_FILE_BYTES, parse_step_file, render_step_file, step_file_name
from syncd.git import GitSource
from syncd.http.routes import create_app
from syncd.store import SqliteStore, Store
from syncd.sync.engine import Engine, Observers
from syncd.sync.health import HealthKeeper
from tests.support import (
    API_TOKEN,
    GitServer,
    WorkTree,
    daemon_env,
    postgres,
    workspace,
    write_config,
    write_step,
)
from tests.support.daemon import metric
from tests.support.gated import GATE_ENV

MIB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Setup:
    url: str
    tree: WorkTree
    config_path: Path
    env: dict[str, str]
    core: Core
    tmp: Path

    @property
    def config(self) -> Config:
        return self.core.config

    def sync(self, ws_id: str = "w", **kwargs: Any) -> Any:
        return self.core.engine.sync(self.config.workspace(ws_id), Trigger.MANUAL, **kwargs)

    def live(self, ws_id: str = "w") -> dict[str, str]:
        return {n: s.content.do for n, s in self.core.store.live_steps(ws_id).items()}

    def push(self, steps: Mapping[str, str | None], message: str = "change") -> str:
        for name, do in steps.items():
            if do is None:
                (self.tree.path / "export/steps" / step_file_name(name)).unlink()
            else:
                write_step(self.tree, name, do)
        self.tree.git("add", "-A")
        sha = self.tree.commit(message)
        self.tree.push()
        return sha

    def cli(self, *args: str, gate: Path | None = None) -> subprocess.Popen[str]:
        env = dict(self.env)
        env["PYTHONPATH"] = str(ROOT)
        if gate is not None:
            env[GATE_ENV] = str(gate)
        return subprocess.Popen(
            [sys.executable, "-m", "tests.support.gated", *args, "--config", str(self.config_path)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


BASE = {"x": "x0()", "y": "y0()", "z": "z0()"}


def make_setup(
    repo: tuple[str, WorkTree], git_server: GitServer, tmp_path: Path, **top: Any
) -> Setup:
    url, tree = repo
    extra = [workspace("other", url, git_server, source={"branch": "feature"})]
    config_path = write_config(tmp_path, [workspace("w", url, git_server), *extra], **top)
    env = daemon_env(git_server)
    core = build_core(load_config(config_path, env))
    s = Setup(url, tree, config_path, env, core, tmp_path)
    s.push(BASE, "base")
    first = s.sync()
    assert first.run.result is RunResult.SUCCEEDED, first.run.error
    return s


@pytest.fixture
def setup(repo: tuple[str, WorkTree], git_server: GitServer, tmp_path: Path) -> Iterator[Setup]:
    s = make_setup(repo, git_server, tmp_path)
    yield s
    s.core.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_setup(
    request: pytest.FixtureRequest,
    repo: tuple[str, WorkTree],
    git_server: GitServer,
    tmp_path: Path,
) -> Iterator[Setup]:
    """`setup` on either store: the cases of two writers hold on PostgreSQL as on SQLite."""
    if request.param == "sqlite":
        s = make_setup(repo, git_server, tmp_path)
        yield s
        s.core.close()
        return
    postgres.require()
    with postgres.fresh_database() as url:
        s = make_setup(repo, git_server, tmp_path, store={"url": url})
        yield s
        s.core.close()


def wait_file(path: Path, proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"process ended before {path.name}: {proc.communicate()}")
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


# -- 1. two writers: optimistic concurrency on apply ------------------------------------------


def still_running(proc: subprocess.Popen[str], seconds: float = 1.0) -> bool:
    """True when `proc` has not ended within `seconds` (it waits on another writer)."""
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        return True
    return False


def test_a_second_writer_waits_for_the_first_and_never_interleaves(any_setup: Setup) -> None:
    """A sync of head C has planned and waits before its apply; a pinned sync of the older B
    starts meanwhile. It waits for the first writer's lease instead of applying between C's
    plan and C's apply (which once made C plan again and apply over B, or B apply under C's
    plan); then it applies B after C, as asked: the pin is the one that goes back."""
    setup = any_setup
    rev_b = setup.push({"x": "xB()"}, "B: x changes")
    rev_c = setup.push({"x": "x0()", "y": "yC()"}, "C: x back, y changes")
    gate = setup.tmp / "gate"
    slow = setup.cli("sync", "w", gate=gate)  # head C, held before its apply
    wait_file(gate.with_suffix(".planned"), slow)
    pinned = setup.cli("sync", "w", "--revision", rev_b)
    assert still_running(pinned), finish(pinned)
    assert setup.core.store.state("w").last_applied_revision != rev_b
    gate.with_suffix(".go").touch()
    rc, _out, err = finish(slow)
    assert rc == 0, err
    rc, _out, err = finish(pinned)
    assert rc == 0, err
    state = setup.core.store.state("w")
    assert state.last_applied_revision == rev_b and state.pinned_revision == rev_b
    assert setup.live() == {"x": "xB()", "y": "y0()", "z": "z0()"}
    runs = [r for r in setup.core.store.runs("w") if r.result is RunResult.SUCCEEDED]
    assert [r.revision for r in runs[:2]] == [rev_b, rev_c]  # newest first: C, then B


def test_the_slow_writer_can_be_the_pinned_one(any_setup: Setup) -> None:
    """The other way round: the pinned sync of B holds the workspace; the sync of the head
    waits, resolves the head after B's apply, and applies C."""
    setup = any_setup
    rev_b = setup.push({"x": "xB()"}, "B: x changes")
    rev_c = setup.push({"x": "x0()", "y": "yC()"}, "C")
    gate = setup.tmp / "gate"
    slow = setup.cli("sync", "w", "--revision", rev_b, gate=gate)
    wait_file(gate.with_suffix(".planned"), slow)
    head = setup.cli("sync", "w")
    assert still_running(head), finish(head)
    gate.with_suffix(".go").touch()
    rc, _out, err = finish(slow)
    assert rc == 0, err
    rc, _out, err = finish(head)
    assert rc == 0, err
    state = setup.core.store.state("w")
    assert state.last_applied_revision == rev_c and state.status is Status.SYNCED
    assert setup.live() == {"x": "x0()", "y": "yC()", "z": "z0()"}


def test_an_outside_edit_during_a_sync_keeps_its_outside_mark(any_setup: Setup) -> None:
    setup = any_setup
    setup.push({"y": "yC()"}, "C: y changes")
    gate = setup.tmp / "gate"
    slow = setup.cli("sync", "w", gate=gate)
    wait_file(gate.with_suffix(".planned"), slow)
    setup.core.store.put_outside("w", "z", StepContent("true", "edited()"))
    gate.with_suffix(".go").touch()
    rc, _out, err = finish(slow)
    assert rc == 0, err
    live = setup.core.store.live_steps("w")
    assert live["z"].origin is Origin.OUTSIDE and live["z"].content.do == "edited()"
    assert "z" in setup.core.store.drifted_names("w")
    state = setup.core.store.state("w")
    assert state.status is Status.OUT_OF_SYNC and state.drift >= 1
    # And the next sync heals it.
    healed = setup.sync()
    assert healed.run.result is RunResult.SUCCEEDED, healed.run.error
    assert setup.live()["z"] == "z0()" and not setup.core.store.drifted_names("w")


# -- 3. a store error is a recorded, counted, retried run -------------------------------------


def store_path(s: Setup) -> Path:
    return s.config.store.sqlite_path


def locked_core(s: Setup, registry: CollectorRegistry | None = None) -> tuple[Core, Any]:
    """A core over the same files whose store gives up on a lock after 0.2 s."""
    from syncd.ops.metrics import Metrics

    metrics = Metrics(registry or CollectorRegistry())
    store = SqliteStore(store_path(s), busy_timeout_ms=200)
    git = GitSource(s.config.state_dir, timeout=s.config.git.timeout)
    health = HealthKeeper(store)
    engine = Engine(store, git, observer=Observers((health, metrics)))
    return Core(s.config, store, git, engine, health), metrics


def sqlite_db(store: Store) -> sqlite3.Connection:
    """The connection of a SQLite store (the tests' stores are SQLite ones)."""
    assert isinstance(store, SqliteStore), type(store)
    return store._db


def hold_write_lock(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    return db


def test_a_locked_store_fails_the_run_with_a_clear_error_not_a_crash(setup: Setup) -> None:
    head = setup.push({"y": "yC()"})
    core, metrics = locked_core(setup)
    holder = hold_write_lock(store_path(setup))
    try:
        out = core.engine.sync(setup.config.workspace("w"), Trigger.WEBHOOK)
    finally:
        holder.rollback()
        holder.close()
    assert out.run.result is RunResult.FAILED
    assert "locked" in (out.run.error or "") and str(store_path(setup)) in (out.run.error or "")
    assert out.state.failed_revision is None  # transient: the loop retries it
    failed = metric(
        metrics.render().decode(), "syncd_sync_runs_total", workspace="w", result="failed"
    )
    assert failed == 1.0
    again = core.engine.sync(setup.config.workspace("w"), Trigger.WEBHOOK)
    assert again.run.result is RunResult.SUCCEEDED and again.run.revision == head
    core.close()


def test_a_full_disk_fails_the_run_and_records_it(setup: Setup) -> None:
    setup.push({f"s{i}": "x" * 2000 for i in range(200)}, "many steps")
    core, _metrics = locked_core(setup)
    # The store's own connection may not grow the file: SQLite answers "database or disk is full".
    db = sqlite_db(core.store)
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")
    out = core.engine.sync(setup.config.workspace("w"), Trigger.WEBHOOK)
    assert out.run.result is RunResult.FAILED
    assert "full" in (out.run.error or "") and str(store_path(setup)) in (out.run.error or "")
    assert "Traceback" not in (out.run.error or "")
    assert setup.live() == BASE
    core.close()


def test_the_scheduler_retries_a_run_the_store_could_not_record(setup: Setup) -> None:
    head = setup.push({"y": "yC()"})
    config = setup.config

    async def scenario() -> tuple[Any, Any]:
        parts = build(config, CollectorRegistry())
        store = SqliteStore(store_path(setup), busy_timeout_ms=200)
        parts.core.store.close()
        parts.core.store = store
        parts.core.engine.store = store
        parts.core.health.store = store
        parts.scheduler.store = store
        parts.scheduler.rng = lambda: 0.0  # the shortest backoff: 2.5 s
        await parts.scheduler.start(startup_sync=False)
        holder = hold_write_lock(store_path(setup))
        try:
            ticket = await parts.scheduler.request("w", Trigger.WEBHOOK)
            first = await asyncio.wait_for(ticket.future, 30)
        finally:
            holder.rollback()
            holder.close()
        deadline = time.monotonic() + 30
        while store.state("w").last_applied_revision != head:
            assert time.monotonic() < deadline, "the failed run was never retried"
            await asyncio.sleep(0.1)
        scraped = parts.metrics.render().decode()
        counted = metric(scraped, "syncd_sync_runs_total", workspace="w", result="failed")
        await parts.scheduler.stop()
        store.close()
        return first, counted

    first, counted = asyncio.run(scenario())
    assert first.run.result is RunResult.FAILED and "locked" in first.run.error
    assert counted == 1.0


def test_the_cli_says_one_clear_line_when_the_store_is_locked(setup: Setup) -> None:
    setup.push({"y": "yC()"})
    holder = hold_write_lock(store_path(setup))
    try:
        rc, out, err = finish(setup.cli("sync", "w"))
    finally:
        holder.rollback()
        holder.close()
    assert rc == 1, (out, err)
    assert "Traceback" not in err and "locked" in err and str(store_path(setup)) in err
    assert len(err.strip().splitlines()) == 1, err


# -- 5. a blob's size is checked before it is inflated ----------------------------------------


def bomb_commit(tree: WorkTree, path: str, size: int) -> str:
    """A commit adding `path`: a step file of `size` bytes, mostly spaces (a tiny pack).

    Streamed to `git fast-import` a MiB at a time: this process never holds the file, so the
    peak RSS a child inherits from it (Linux keeps a vforked child's high-water mark across
    exec) stays that of a small process."""
    head = b'{"name": "bomb", "content": {"if": "true", "do": "x"}}'
    proc = subprocess.Popen(
        [*tree.server.git_args(), "fast-import", "--quiet"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tree.path,
        env=tree.server.git_env(),
    )
    assert proc.stdin is not None and proc.stderr is not None
    proc.stdin.write(b"blob\nmark :1\ndata %d\n" % size + head)
    left, chunk = size - len(head), b" " * MIB
    while left > 0:
        proc.stdin.write(chunk[: min(left, MIB)])
        left -= MIB
    proc.stdin.write(
        b"\ncommit refs/heads/%s\ncommitter t <t@example.invalid> 0 +0000\ndata 4\nbomb\n"
        b"from %s\nM 100644 :1 %s\n" % (tree.branch.encode(), tree.head().encode(), path.encode())
    )
    proc.stdin.close()
    # A blob past core.bigFileThreshold (512 MiB) would be streamed; this one is held whole.
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode(errors="replace")[-2000:]
    tree.git("reset", "--quiet", "--hard")
    tree.push()
    return tree.head()


def peak_rss_mb(proc: subprocess.Popen[str], timeout: float = 300.0) -> tuple[int, float]:
    """The child's own peak RSS, from its VmHWM, read until it exits.

    Not wait4's ru_maxrss: subprocess starts the child with vfork, and Linux folds the mm the
    child had before exec (the test process's own, hundreds of MB late in a full run) into
    the maximum it reports. VmHWM belongs to the child's memory after exec alone."""
    peak_kib = 0
    deadline = time.monotonic() + timeout
    status_file = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            for line in status_file.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kib = max(peak_kib, int(line.split()[1]))
        time.sleep(0.02)
    return proc.wait(timeout=5), peak_kib / 1024


@pytest.mark.parametrize("read", ["incremental", "full"])
def test_a_400_mib_blob_bomb_is_refused_before_it_is_inflated(setup: Setup, read: str) -> None:
    path = "export/steps/bomb.step.json"
    sha = bomb_commit(setup.tree, path, 400 * MIB)
    if read == "full":  # a workspace that never synced reads every file
        setup.core.store.save_state(setup.core.store.state("w").__class__("w"))
    proc = setup.cli("sync", "w")
    rc, rss = peak_rss_mb(proc)
    err = proc.stderr.read() if proc.stderr else ""
    assert rc == 1, err
    assert path in err and "over the limit" in err, err
    assert 0 < rss < 200, f"peak RSS {rss:.0f} MB while refusing a 400 MiB blob ({read} read)"
    run = setup.core.store.runs("w", 1)[0]
    assert run.revision == sha and run.result is RunResult.FAILED


def test_an_export_refuses_a_huge_file_on_the_branch_by_its_header(setup: Setup) -> None:
    bomb_commit(setup.tree, "export/steps/bomb.step.json", 4 * MIB)
    remote_ws = setup.config.workspace("w")
    from syncd.sync.engine import remote_for

    remote = remote_for(remote_ws)
    setup.core.git.fetch(remote, "main")
    blob = setup.core.git.list_files(remote, setup.tree.head(), "export/steps")
    big = next(e for e in blob if e.path.endswith("bomb.step.json"))
    with pytest.raises(StepFileError, match="over the limit"):
        setup.core.git.read_blob(remote, big.blob)


def test_pull_refuses_a_huge_local_step_file_before_reading_it(tmp_path: Path) -> None:
    from syncd.cli.pull import read_existing

    folder = tmp_path / "export/steps"
    folder.mkdir(parents=True)
    with open(folder / "huge.step.json", "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(StepFileError, match=r"huge\.step\.json.*over the limit"):
        read_existing(tmp_path)


# -- 7. a pinned revision must be on the workspace's branch -----------------------------------


def test_a_pinned_revision_from_another_branch_is_refused(setup: Setup) -> None:
    tree = setup.tree
    tree.git("checkout", "--quiet", "-b", "feature")
    write_step(tree, "evil", "rm_rf()")
    evil = tree.commit("unreviewed")
    tree.push(branch="feature")
    tree.git("checkout", "--quiet", "main")
    # Another workspace fetches the unreviewed branch into the shared mirror.
    other = setup.sync("other")
    assert other.run.result is RunResult.SUCCEEDED, other.run.error
    out = setup.sync("w", revision=evil)
    assert out.run.result is RunResult.FAILED
    error = out.run.error or ""
    assert "not on branch 'main'" in error and "feature" in error, error
    assert setup.live() == BASE
    # The API refuses it before queueing anything: 422, naming the branch.
    parts = build(setup.config, CollectorRegistry())
    parts.ready = True
    with TestClient(create_app(parts)) as client:
        r = client.post(
            "/api/v1/workspaces/w/sync",
            json={"revision": evil},
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        )
    parts.close()
    assert r.status_code == 422, r.text
    assert "main" in r.json()["error"] and "feature" in r.json()["error"]


def test_a_pinned_older_revision_of_the_branch_is_applied(setup: Setup) -> None:
    old = setup.tree.head()
    setup.push({"x": "new()"})
    assert setup.sync().run.result is RunResult.SUCCEEDED
    out = setup.sync(revision=old)
    assert out.run.result is RunResult.SUCCEEDED, out.run.error
    assert setup.live() == BASE


# -- 8. strict step files ---------------------------------------------------------------------


def raw_commit(s: Setup, name: str, data: bytes) -> str:
    s.tree.write(f"export/steps/{name}.step.json", data)
    s.tree.git("add", "-A")
    sha = s.tree.commit("raw")
    s.tree.push()
    return sha


@pytest.mark.parametrize("key", ["name", "do", "content"])
def test_a_duplicate_key_is_refused_naming_it(setup: Setup, key: str) -> None:
    texts = {
        "name": b'{"name": "a", "name": "b", "content": {"if": "true", "do": "x"}}',
        "do": b'{"name": "a", "content": {"if": "true", "do": "x", "do": "y"}}',
        "content": b'{"name": "a", "content": {"if": "t", "do": "x"}, "content": {"if": "t",'
        b' "do": "y"}}',
    }
    sha = raw_commit(setup, "dup", texts[key])
    out = setup.sync()
    assert out.run.result is RunResult.FAILED and out.run.revision == sha
    error = out.run.error or ""
    assert "dup.step.json" in error and f"duplicate key {key!r}" in error, error
    assert setup.live() == BASE


def test_a_json_field_that_disagrees_with_content_is_refused(setup: Setup) -> None:
    import hashlib

    shown = StepContent("true", "harmless()").canonical_json()
    doc = {
        "name": "two-faced",
        "content": {"if": "true", "do": "evil()"},
        "json": shown,
        "hash": hashlib.sha256(shown.encode()).hexdigest(),
    }
    raw_commit(setup, "two-faced", json.dumps(doc).encode())
    out = setup.sync()
    error = out.run.error or ""
    assert out.run.result is RunResult.FAILED
    assert "two-faced.step.json" in error and "harmless()" in error and "evil()" in error, error
    assert setup.live() == BASE


@pytest.mark.parametrize(
    "content",
    [
        StepContent("true", "done()"),
        StepContent("a < b && c", 'say("héllo\\n\\u2028 \U0001f600")', enabled=False),
        StepContent("", "", enabled=True, valid=False),
    ],
)
def test_syncds_own_files_pass_the_strict_checks(content: StepContent) -> None:
    """render_step_file (the export) and the pull's layout write files the strict parser reads
    back as they were written."""
    assert parse_step_file("x.step.json", render_step_file("n", content)) == ("n", content)
    pulled = [PulledStep("w", "id1", "a/b c", content, 1, 0.0)]
    files = {p: d for p, d in layout_files(pulled).items() if p.endswith(".step.json")}
    assert len(files) == int(content.enabled)  # the pull, as the SDK, skips disabled steps
    for path, data in files.items():
        assert parse_step_file(path, data) == ("a/b c", content)


# -- /readyz: a store that cannot be written --------------------------------------------------


def test_readyz_turns_not_ready_when_the_database_file_is_gone(setup: Setup) -> None:
    parts = build(setup.config, CollectorRegistry())
    parts.ready = True
    with TestClient(create_app(parts)) as client:
        assert client.get("/readyz").status_code == 200
        db = store_path(setup)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        r = client.get("/readyz")
        assert r.status_code == 503 and str(db) in r.text, r.text
    parts.close()


def test_readyz_turns_not_ready_when_the_store_cannot_be_written(setup: Setup) -> None:
    parts = build(setup.config, CollectorRegistry())
    parts.ready = True
    with TestClient(create_app(parts)) as client:
        assert client.get("/readyz").status_code == 200
        db = sqlite_db(parts.core.store)
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages}")
        setup.push({f"s{i}": "x" * 2000 for i in range(200)}, "many steps")
        out = parts.core.engine.sync(setup.config.workspace("w"), Trigger.WEBHOOK)
        assert out.run.result is RunResult.FAILED
        r = client.get("/readyz")
        assert r.status_code == 503 and "full" in r.text, r.text
    parts.close()
