"""Crash consistency with real processes: `syncd sync` killed with SIGKILL, mostly mid-apply.

Commit A holds 1,500 steps; commit B changes every one of them (a fifth deleted, the rest
edited) and adds 1,800, so a sync between them is one plan of 3,300 changes. Each trial starts
`python -m syncd sync` towards the other commit and kills it. The store must then pass
`PRAGMA integrity_check` and hold exactly A's steps or exactly B's, never a mix, with
`last_applied_revision` (and the git index) naming the same commit; a sync without a kill then
converges.

Where a kill lands is chosen and then observed, not guessed. Trials cycle through three aims:
anywhere in the run, inside the apply phase (anchored on the "applying" progress line, which
`syncd sync` prints when stderr is a terminal, so stderr is a pty), and just after the commit
(while the process closes the store and exits). At the chosen moment the process is frozen
with SIGSTOP, the test notes whether it had printed "applying" and whether it held SQLite's
write lock, and then SIGKILLs it. A frozen process writes nothing, so the files are exactly
those of a kill at the moment of the stop.

SYNCD_CRASH_TRIALS sets the number of trials (default 8); SYNCD_CRASH_SEED replays a run.
"""

from __future__ import annotations

import collections
import os
import pty
import random
import select
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from syncd.app import build_core
from syncd.config import load_config
from syncd.core.model import RunResult, StepContent, Trigger
from syncd.store import SqliteStore
from tests.support import GitServer, WorkTree, daemon_env, workspace, write_config, write_step

WS = "auto"
A_STEPS, B_NEW_STEPS = 1_500, 1_800
DEFAULT_TRIALS = 8
TRIALS = int(os.environ.get("SYNCD_CRASH_TRIALS", DEFAULT_TRIALS))
# Trials cycle through these aims: most land in the second half of the run, where apply is.
AIMS = ("apply", "run", "apply", "commit")
APPLYING = b"applying"

Steps = dict[str, StepContent]


def step_name(i: int) -> str:
    return f"crash/step {i:05d}"


def build_commits(tree: WorkTree) -> dict[str, Steps]:
    """Push commit A, then commit B; return each commit's steps by sha."""
    a: Steps = {}
    for i in range(A_STEPS):
        a[step_name(i)] = StepContent("true", f"a({i})")
        write_step(tree, step_name(i), f"a({i})")
    sha_a = tree.commit("A: 1,500 steps")
    b: Steps = {}
    for i in range(A_STEPS):
        if i % 5 == 0:
            tree.remove(f"export/steps/crash__step__{i:05d}.step.json")
            continue
        # Every surviving step changes; some in `if` and `enabled` too, not only `do`.
        content = StepContent(f"x > {i}" if i % 3 == 0 else "true", f"b({i})", i % 7 != 0)
        b[step_name(i)] = content
        write_step(tree, step_name(i), content.do, content.if_, content.enabled)
    for i in range(A_STEPS, A_STEPS + B_NEW_STEPS):
        b[step_name(i)] = StepContent("true", f"b({i})")
        write_step(tree, step_name(i), f"b({i})")
    sha_b = tree.commit("B: every step of A changed or deleted, 1,800 new")
    tree.push()
    assert len(b) == 3_000
    return {sha_a: a, sha_b: b}


# -- the store, read from outside the process under test ------------------------------------


def applied_revision(db: Path, ws: str = WS) -> str | None:
    """The applied commit as a reader sees it from outside the process under test.

    A WAL read never waits for the writer, but can find the WAL index mid-change (during a
    commit or the checkpoint on close) and answer "locked": that reads as None, "not yet"."""
    con = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        row = con.execute(
            "SELECT last_applied_revision FROM workspaces WHERE id = ?", (ws,)
        ).fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        con.close()
    return row[0] if row else None


def committed(db: Path, target: str) -> bool:
    """Whether `target` is the applied commit yet."""
    return applied_revision(db) == target


def write_lock_held(db: Path) -> bool:
    """Whether another connection holds the write lock (only call it while that one is frozen)."""
    con = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:  # database is locked
        return True
    finally:
        con.close()


@dataclass(frozen=True)
class Found:
    revision: str
    integrity_ok: bool
    live: Steps
    index: Steps
    last_run_revision: str | None


def inspect(db: Path) -> Found:
    """Open the store as the next syncd would (recovering the WAL) and read everything."""
    store = SqliteStore(db)
    try:
        state = store.state(WS)
        last_run = store.run(state.last_run_id) if state.last_run_id else None
        if last_run is not None and last_run.result is not RunResult.SUCCEEDED:
            last_run = None
        return Found(
            revision=state.last_applied_revision or "",
            integrity_ok=store.integrity_ok(),
            live={n: s.content for n, s in store.live_steps(WS).items()},
            index={s.name: s.content for s in store.index_files(WS).values()},
            last_run_revision=last_run.revision if last_run else None,
        )
    finally:
        store.close()


def assert_one_commit(found: Found, commits: dict[str, Steps]) -> str:
    """The store holds exactly one commit's steps, and says so; return that commit."""
    assert found.integrity_ok, "PRAGMA integrity_check failed after the kill"
    matches = [sha for sha, steps in commits.items() if found.live == steps]
    if len(matches) != 1:
        by_commit = {
            sha[:8]: sum(found.live.get(n) == c for n, c in steps.items())
            for sha, steps in commits.items()
        }
        pytest.fail(
            f"live steps are a mix: {len(found.live)} steps, matching per commit {by_commit}"
        )
    sha = matches[0]
    assert found.revision == sha, f"steps of {sha[:8]} but state says {found.revision[:8]}"
    assert found.index == commits[sha], "git index does not match the live steps' commit"
    assert found.last_run_revision in (None, sha)
    return sha


# -- the process under test ------------------------------------------------------------------


class SyncProcess:
    """`python -m syncd sync` with stderr on a pty, so that it prints its progress."""

    def __init__(self, config: Path, env: dict[str, str], revision: str) -> None:
        master, slave = pty.openpty()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "syncd",
                "sync",
                WS,
                "--config",
                str(config),
                "--revision",
                revision,
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=slave,
        )
        os.close(slave)
        self._master = master
        self.output = b""
        self.exited_at: float | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def read(self, timeout: float) -> None:
        """Collect what the process printed, waiting up to `timeout` for more."""
        if self._master < 0:
            time.sleep(timeout)
            return
        ready, _, _ = select.select([self._master], [], [], timeout)
        if ready:
            try:
                self.output += os.read(self._master, 65536)
            except OSError:  # EIO: the process is gone and the pty closed
                os.close(self._master)
                self._master = -1

    def alive(self) -> bool:
        if self.proc.poll() is None:
            return True
        if self.exited_at is None:
            self.exited_at = self.elapsed()
        return False

    def wait_for_output(self, text: bytes, deadline: float) -> bool:
        while text not in self.output and self.alive() and self.elapsed() < deadline:
            self.read(0.001)
        return text in self.output

    def freeze(self) -> bool:
        """SIGSTOP; False when the process had already exited."""
        self.proc.send_signal(signal.SIGSTOP)
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        while self._master >= 0:
            self.read(0)

    def finish(self, timeout: float = 120) -> int:
        while self.alive() and self.elapsed() < timeout:
            self.read(0.05)
        if self.alive():
            self.kill()
            pytest.fail(f"syncd sync did not finish in {timeout}s: {self.output[-2000:]!r}")
        self.kill()  # reaps it and drains the pty
        return self.proc.returncode


@dataclass(frozen=True)
class Timing:
    total: float  # start to exit
    apply: float  # "applying" printed to the commit visible to a reader
    tail: float  # commit visible to exit: closing the store, leaving Python


def sync_watched(config: Path, env: dict[str, str], db: Path, target: str) -> Timing | None:
    """A sync without a kill, watched from outside: when it applies, commits and exits (None
    when it had nothing to apply)."""
    already = committed(db, target)
    child = SyncProcess(config, env, target)
    applying = commit = None
    while child.alive() and child.elapsed() < 120:
        child.read(0.001)
        if applying is None and APPLYING in child.output:
            applying = child.elapsed()
        if commit is None and applying is not None and committed(db, target):
            commit = child.elapsed()
    assert child.finish() == 0, child.output[-2000:]
    if already or applying is None or child.exited_at is None:
        return None
    commit = commit or child.exited_at
    return Timing(child.exited_at, commit - applying, child.exited_at - commit)


def estimate(samples: list[Timing]) -> Timing:
    """The median of every uninterrupted sync seen so far: one slow run does not skew aims."""
    return Timing(
        statistics.median(t.total for t in samples),
        statistics.median(t.apply for t in samples),
        statistics.median(t.tail for t in samples),
    )


@dataclass(frozen=True)
class Kill:
    aim: str
    delay: float  # seconds after the aim's anchor
    exited: bool  # the sync had finished before the kill
    applying: bool  # it had printed "applying"
    lock_held: bool  # it held SQLite's write lock


def kill_once(
    config: Path,
    env: dict[str, str],
    db: Path,
    target: str,
    aim: str,
    timing: Timing,
    rng: random.Random,
) -> Kill:
    """Start a sync towards `target`, freeze it at a moment picked by `aim`, then SIGKILL it."""
    child = SyncProcess(config, env, target)
    deadline = 4 * timing.total + 10
    if aim == "run":  # anywhere from start to exit
        delay = rng.uniform(0, timing.total)
        while child.elapsed() < delay and child.alive():
            child.read(min(0.005, max(0.0, delay - child.elapsed())))
    elif aim == "apply":  # inside the transaction: from "applying" to the commit
        delay = rng.uniform(0, timing.apply)
        if child.wait_for_output(APPLYING, deadline):
            anchor = child.elapsed()
            while child.elapsed() - anchor < delay and child.alive():
                child.read(min(0.002, max(0.0, delay - (child.elapsed() - anchor))))
    else:  # "commit": committed, while the process closes the store and exits
        delay = rng.uniform(0, timing.tail / 2)
        if child.wait_for_output(APPLYING, deadline):
            while child.alive() and child.elapsed() < deadline and not committed(db, target):
                time.sleep(0.0005)
            anchor = time.monotonic()
            while time.monotonic() - anchor < delay and child.alive():
                time.sleep(0.0005)
    alive = child.freeze()
    child.read(0)  # everything it printed before the stop
    lock_held = alive and write_lock_held(db)
    child.kill()
    return Kill(aim, delay, not alive, APPLYING in child.output, lock_held)


def outcome(kill: Kill, survived_new: bool) -> str:
    if kill.exited:
        return "exited"
    if survived_new:
        return "after-commit"
    return "mid-apply" if kill.applying else "before-apply"


@pytest.mark.timeout(120 + 20 * TRIALS)  # a trial takes 3-7 s: two runs and two store reads
def test_sigkill_during_sync_leaves_one_commit_or_the_other(
    git_server: GitServer,
    repo: tuple[str, WorkTree],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    trials = TRIALS
    seed = int(os.environ.get("SYNCD_CRASH_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    url, tree = repo
    commits = build_commits(tree)
    sha_a, sha_b = commits
    config = write_config(tmp_path, [workspace(WS, url, git_server)])
    env = daemon_env(git_server)

    # Sync A in-process; this also fetches B into the mirror, so no trial touches the network.
    core = build_core(load_config(config, env))
    try:
        out = core.engine.sync(core.config.workspace(WS), Trigger.MANUAL, revision=sha_a)
        db = core.config.store.sqlite_path
    finally:
        core.close()
    assert out.run.result is RunResult.SUCCEEDED, out.run.error
    assert assert_one_commit(inspect(db), commits) == sha_a

    # Uninterrupted runs say where apply falls, each way (deleting 1,800 steps is quicker than
    # creating them): one each now, then every converging run that had a plan to apply.
    samples: dict[str, list[Timing]] = {sha_a: [], sha_b: []}
    for target in (sha_b, sha_a):
        timing = sync_watched(config, env, db, target)
        assert timing is not None, "a sync between A and B had nothing to apply"
        samples[target].append(timing)
        assert assert_one_commit(inspect(db), commits) == target

    results: list[tuple[Kill, str]] = []
    current = sha_a
    for i in range(trials):
        target = sha_a if current == sha_b else sha_b
        aim = AIMS[i % len(AIMS)]
        kill = kill_once(config, env, db, target, aim, estimate(samples[target]), rng)
        found = assert_one_commit(inspect(db), commits)
        if kill.exited:
            assert found == target, f"a finished sync left the old steps: {kill}"
        if not kill.applying:
            assert found == current, f"a kill before apply changed the steps: {kill}"
        results.append((kill, outcome(kill, found == target)))
        # The next sync, not killed, converges to the wanted commit.
        if (timing := sync_watched(config, env, db, target)) is not None:
            samples[target].append(timing)
        assert assert_one_commit(inspect(db), commits) == target
        current = target

    outcomes = collections.Counter(o for _, o in results)
    locked_old = sum(k.lock_held and o == "mid-apply" for k, o in results)
    locked_new = sum(k.lock_held and o == "after-commit" for k, o in results)
    to_a, to_b = estimate(samples[sha_a]), estimate(samples[sha_b])
    with capsys.disabled():
        print(
            f"\ncrash trials: {trials} (seed {seed}); medians: A->B run {to_b.total:.2f}s, apply"
            f" {to_b.apply * 1000:.0f}ms, commit to exit {to_b.tail * 1000:.0f}ms; B->A run"
            f" {to_a.total:.2f}s, apply {to_a.apply * 1000:.0f}ms\n"
            f"  kills before apply: {outcomes['before-apply']}; mid-apply, old state survived:"
            f" {outcomes['mid-apply']} ({locked_old} inside the write transaction); after the"
            f" commit, new state survived: {outcomes['after-commit']} ({locked_new} still"
            f" holding the store's lock: committing or checkpointing on close); exited before"
            f" the kill: {outcomes['exited']}"
        )
    if trials >= DEFAULT_TRIALS:
        assert locked_old >= 1, f"no kill landed inside the apply transaction: {results}"
        assert outcomes["after-commit"] >= 1, f"no kill landed after a commit: {results}"
