"""Crash consistency of the daemon: `syncd serve` killed with SIGKILL during 3,000-step applies.

The CLI's trials (tests/integration/test_crash.py) kill `syncd sync`; these kill the daemon
itself, in the middle of a manual sync asked for through the API, and use the same two commits:
A holds 1,500 steps, B changes or deletes every one of them and adds 1,800 (3,300 changes a
sync). The workspace is in manual mode, so that the startup comparison of a restarted daemon
only plans, and each trial's sync alternates between A and B with a pinned revision (the
mirror has both: no trial touches the network).

Each trial POSTs the sync, picks a moment by one of three aims (anywhere in the run; inside
the apply transaction, anchored on the daemon taking SQLite's write lock; just after the
commit), freezes the daemon with SIGSTOP, notes whether it held the write lock, and SIGKILLs
it. Then, before any restart: the store passes `PRAGMA integrity_check` and holds exactly A's
steps or exactly B's (live steps, git index and applied revision agreeing), never a mix. Then
the daemon is started again and a sync through the API converges to the wanted commit.

Default 5 trials, 50 with SYNCD_RELIABILITY=full; SYNCD_DAEMON_CRASH_TRIALS sets any number and
SYNCD_DAEMON_CRASH_SEED replays a run.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from syncd.config import load_config
from syncd.core.model import RunResult
from syncd.core.times import parse_time
from syncd.store import SqliteStore
from tests.integration import test_crash as crash
from tests.integration.test_crash import Steps, build_commits, write_lock_held
from tests.support import GitServer, WorkTree, daemon_env, workspace
from tests.support.daemon import Daemon, report, runs, scaled, start_daemon, stop_daemon, wait_for

WS = "crash"
TRIALS = int(scaled(5, 50, "SYNCD_DAEMON_CRASH_TRIALS"))
AIMS = ("apply", "run", "apply", "commit", "run")


# -- the store, read from outside the daemon ---------------------------------------------------


def applied_revision(db: Path) -> str | None:
    return crash.applied_revision(db, WS)


def one_commit(db: Path, commits: dict[str, Steps]) -> str:
    """Open the store as the next daemon will (recovering the WAL); it must pass the integrity
    check and hold exactly one commit's steps, with its index and state naming that commit."""
    store = SqliteStore(db)
    try:
        assert store.integrity_ok(), "PRAGMA integrity_check failed after the kill"
        state = store.state(WS)
        live = {n: s.content for n, s in store.live_steps(WS).items()}
        index = {s.name: s.content for s in store.index_files(WS).values()}
        last = store.run(state.last_run_id) if state.last_run_id else None
    finally:
        store.close()
    matches = [sha for sha, steps in commits.items() if live == steps]
    if len(matches) != 1:
        per_commit = {
            sha[:8]: sum(live.get(n) == c for n, c in steps.items())
            for sha, steps in commits.items()
        }
        pytest.fail(f"live steps are a mix: {len(live)} steps, matching per commit {per_commit}")
    sha = matches[0]
    assert state.last_applied_revision == sha, "the state names another commit than the steps"
    assert index == commits[sha], "the git index does not match the live steps' commit"
    if last is not None and last.result is RunResult.SUCCEEDED:
        assert last.revision == sha, "the last succeeded run names another commit"
    return sha


# -- the daemon under test --------------------------------------------------------------------


@dataclass
class Harness:
    tmp: Path
    server: GitServer
    tree: WorkTree
    url: str
    db: Path

    def start(self) -> Daemon:
        """Start the daemon on the same state; return once its startup comparison is recorded."""
        since = time.time()
        ws = [workspace(WS, self.url, self.server, "manual")]
        d = start_daemon(self.tmp, self.server, self.tree, self.url, ws)
        wait_for(
            lambda: any(
                r["trigger"] == "startup" and parse_time(r["started_at"]) >= since
                for r in runs(d, WS)
            ),
            60,
            "the startup comparison",
        )
        return d

    def post_sync(self, d: Daemon, target: str, wait: bool = False) -> dict[str, object]:
        with d.client() as c:
            r = c.post(
                f"/api/v1/workspaces/{WS}/sync" + ("?wait=true" if wait else ""),
                json={"revision": target},
                timeout=120,
            )
        assert r.status_code == (200 if wait else 202), r.text
        result: dict[str, object] = r.json()
        return result


@dataclass(frozen=True)
class Timing:
    total: float  # POST to the commit visible from outside
    apply: float  # write lock first seen to the commit visible


def watched_sync(h: Harness, d: Daemon, target: str) -> Timing:
    """A sync without a kill, watched from outside: when it takes the write lock and commits."""
    started = time.monotonic()
    h.post_sync(d, target)
    locked = None
    while applied_revision(h.db) != target:
        if locked is None and write_lock_held(h.db):
            locked = time.monotonic()
        assert time.monotonic() - started < 120, "an uninterrupted sync did not finish"
        time.sleep(0.0005)
    done = time.monotonic()
    return Timing(done - started, done - (locked or done))


@dataclass(frozen=True)
class Kill:
    aim: str
    delay: float  # seconds after the aim's anchor
    lock_held: bool  # the daemon held the write lock when frozen


def kill_once(h: Harness, d: Daemon, target: str, aim: str, t: Timing, rng: random.Random) -> Kill:
    """POST a sync towards `target`, freeze the daemon at a moment picked by `aim`, SIGKILL it."""
    started = time.monotonic()
    deadline = started + 4 * t.total + 10
    h.post_sync(d, target)
    if aim == "run":  # anywhere from the request to the commit
        delay = rng.uniform(0, t.total)
        anchor = started
    elif aim == "apply":  # inside the transaction: from the write lock to the commit
        delay = rng.uniform(0, t.apply)
        while not write_lock_held(h.db) and time.monotonic() < deadline:
            time.sleep(0.0005)
        anchor = time.monotonic()
    else:  # "commit": committed, the daemon recording and answering
        delay = rng.uniform(0, 0.05)
        while applied_revision(h.db) != target and time.monotonic() < deadline:
            time.sleep(0.0005)
        anchor = time.monotonic()
    while time.monotonic() - anchor < delay:
        time.sleep(0.0005)
    d.process.send_signal(signal.SIGSTOP)
    held = write_lock_held(h.db)
    d.process.send_signal(signal.SIGKILL)
    d.process.wait(30)
    return Kill(aim, delay, held)


@pytest.mark.timeout(180 + 25 * TRIALS)  # a trial: a partial sync, a restart, a full sync
def test_sigkill_of_the_daemon_leaves_one_commit_or_the_other(
    git_server: GitServer, repo: tuple[str, WorkTree], tmp_path: Path
) -> None:
    seed = int(os.environ.get("SYNCD_DAEMON_CRASH_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    url, tree = repo
    commits = build_commits(tree)
    sha_a, sha_b = commits
    h = Harness(tmp_path, git_server, tree, url, Path())
    d = h.start()
    h.db = load_config(d.config_path, daemon_env(git_server)).store.sqlite_path
    try:
        # Uninterrupted syncs to A, then B and A again, say where the apply falls each way.
        assert h.post_sync(d, sha_a, wait=True)["result"] == "succeeded"
        samples: dict[str, list[Timing]] = {sha_b: [watched_sync(h, d, sha_b)]}
        samples[sha_a] = [watched_sync(h, d, sha_a)]
        assert one_commit(h.db, commits) == sha_a

        outcomes: collections.Counter[str] = collections.Counter()
        inside = after = 0
        current = sha_a
        for i in range(TRIALS):
            target = sha_b if current == sha_a else sha_a
            estimate = Timing(
                statistics.median(s.total for s in samples[target]),
                statistics.median(s.apply for s in samples[target]),
            )
            kill = kill_once(h, d, target, AIMS[i % len(AIMS)], estimate, rng)
            found = one_commit(h.db, commits)  # before any restart
            outcome = "new commit" if found == target else "old commit"
            outcomes[outcome] += 1
            inside += kill.lock_held and found == current
            after += found == target
            # Restarted, the daemon converges on the wanted commit with one more sync.
            d = h.start()
            run = h.post_sync(d, target, wait=True)
            assert run["result"] == "succeeded" and run["revision"] == target, run
            assert one_commit(h.db, commits) == target
            current = target
    finally:
        stop_daemon(d)

    to_b, to_a = samples[sha_b][0], samples[sha_a][0]
    report(
        "daemon SIGKILL during 3,000-step applies",
        trials=TRIALS,
        seed=seed,
        failures=0,
        old_commit_survived=outcomes["old commit"],
        killed_inside_write_transaction=inside,
        new_commit_survived=after,
        sync_a_to_b_s=round(to_b.total, 2),
        apply_a_to_b_ms=round(to_b.apply * 1000),
        sync_b_to_a_s=round(to_a.total, 2),
        apply_b_to_a_ms=round(to_a.apply * 1000),
    )
    if TRIALS >= 20:
        assert inside >= 1, "no kill landed inside the apply transaction"
        assert after >= 1, "no kill landed after a commit"
