"""Three `syncd serve` replicas on one PostgreSQL database share the work, and lose nothing when
one is killed or the database goes away for a few seconds.

Bounded by default (a few hundred webhooks); `SYNCD_RELIABILITY=full` sends 2,000. Where no
PostgreSQL server answers, every case skips with one line.
"""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd.core.times import parse_time
from tests.support import GitServer, WorkTree, postgres, write_step
from tests.support.configs import workspace
from tests.support.daemon import (
    Daemon,
    converged,
    get,
    kill_daemon,
    report,
    runs,
    scaled,
    start_daemon,
    stop_daemon,
    wait_for,
)
from tests.support.payloads import build

REMOTES = 5
PER_REMOTE = 4  # workspaces on each remote: 20 in all
ROUNDS = int(scaled(6, 40))  # pushes to each remote
PER_PUSH = 10  # webhook deliveries of each push, spread over the replicas
_deliveries = itertools.count()


@dataclass
class Repo:
    name: str
    url: str
    tree: WorkTree
    workspaces: list[str]


@pytest.fixture
def database() -> Iterator[str]:
    postgres.require()
    with postgres.fresh_database() as url:
        yield url


def make_repos(server: GitServer, root: Path, count: int, per: int, tag: str) -> list[Repo]:
    repos = []
    for r in range(count):
        name = f"{tag}{r}-{root.name[-8:]}"
        url = server.create_repo(name)
        tree = WorkTree(server, name, root / f"{name}-work")
        write_step(tree, "base", "first()")
        tree.commit("first")
        tree.push()
        repos.append(Repo(name, url, tree, [f"{tag}{r}w{i}" for i in range(per)]))
    return repos


def start_replicas(
    root: Path,
    server: GitServer,
    repos: list[Repo],
    db: str,
    count: int = 3,
    **ws_extra: Any,
) -> list[Daemon]:
    configs = [
        workspace(ws, repo.url, server, "automatic", **ws_extra)
        for repo in repos
        for ws in repo.workspaces
    ]
    replicas = []
    for i in range(count):
        home = root / f"replica{i}"
        home.mkdir(parents=True)
        replicas.append(
            start_daemon(home, server, repos[0].tree, repos[0].url, configs, store={"url": db})
        )
    return replicas


def post_hook(d: Daemon, repo: Repo, path: str) -> tuple[int, list[str]]:
    headers, body = build(
        "github", repo.url, "main", [path], repo.tree.head(), f"d-{next(_deliveries)}"
    )
    try:
        r = httpx.post(f"{d.url}/hooks/github", content=body, headers=headers, timeout=30)
    except httpx.HTTPError:
        return 0, []
    return r.status_code, list(r.json().get("queued", [])) if r.status_code == 202 else []


def replicas_alive(d: Daemon) -> list[dict[str, Any]]:
    return [r for r in get(d, "/api/v1/replicas")["replicas"] if r["alive"]]


def settled(d: Daemon, ws: str, quiet: float = 2.0) -> int:
    """The number of runs of `ws` once no new one came for `quiet` seconds, none held."""
    last, since = -1, time.monotonic()
    deadline = since + 60
    while time.monotonic() < deadline:
        count = len(runs(d, ws))
        held = any(r["holds"] for r in replicas_alive(d))
        if count != last or held or count == 0:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return count
        time.sleep(0.2)
    raise AssertionError(f"the runs of {ws} did not settle")


def all_runs(d: Daemon, ws: str) -> list[dict[str, Any]]:
    """The runs of `ws`, oldest first, with their times as unix seconds."""
    found = [
        {
            **r,
            "started_at": parse_time(r["started_at"]),
            "finished_at": None if r["finished_at"] is None else parse_time(r["finished_at"]),
        }
        for r in runs(d, ws)
    ]
    return sorted(found, key=lambda r: r["started_at"])


def assert_no_overlap(d: Daemon, ws: str) -> list[dict[str, Any]]:
    found = all_runs(d, ws)
    for a, b in itertools.pairwise(found):
        assert a["finished_at"] is not None, a
        assert a["finished_at"] <= b["started_at"], f"runs of {ws} overlap: {a} {b}"
    return found


def test_three_replicas_share_the_work_and_survive_a_kill(
    git_server: GitServer, tmp_path: Path, database: str
) -> None:
    repos = make_repos(git_server, tmp_path, REMOTES, PER_REMOTE, "rk")
    replicas = start_replicas(tmp_path, git_server, repos, database)
    try:
        alive = list(replicas)
        accepted: list[tuple[float, str]] = []  # (sent at, workspace) of each 202
        manual: list[tuple[str, str]] = []  # (workspace, run id) of each manual 202
        refused = 0
        sent = 0
        killed_at = 0.0
        with ThreadPoolExecutor(8) as pool:
            for rnd in range(ROUNDS):
                jobs = []
                for repo in repos:
                    path = write_step(repo.tree, f"step {rnd}", f"v({rnd})")
                    write_step(repo.tree, "base", f"base({rnd})")
                    repo.tree.commit(f"round {rnd}")
                    repo.tree.push()
                    for k in range(PER_PUSH):
                        d = alive[(rnd + k) % len(alive)]
                        jobs.append((time.time(), pool.submit(post_hook, d, repo, path)))
                for t, job in jobs:
                    status, queued = job.result()
                    sent += 1
                    if status == 202:
                        accepted += [(t, ws) for ws in queued]
                    else:
                        refused += 1
                # A manual sync on some replica, whose run id must end as a run.
                ws = repos[rnd % REMOTES].workspaces[rnd % PER_REMOTE]
                with alive[rnd % len(alive)].client() as c:
                    r = c.post(f"/api/v1/workspaces/{ws}/sync")
                assert r.status_code == 202, r.text
                manual.append((ws, r.json()["run_id"]))
                if rnd == ROUNDS // 2:
                    # Killed in the middle of it all: with runs in flight and requests waiting.
                    victim = alive.pop(0)
                    victim.process.send_signal(signal.SIGKILL)
                    victim.process.wait(10)
                    killed_at = time.time()
        assert killed_at
        survivor = alive[0]
        everything = [(repo, ws) for repo in repos for ws in repo.workspaces]
        wait_for(
            lambda: all(converged(survivor, ws, repo.tree) for repo, ws in everything),
            180,
            "every workspace at its branch head",
            every=0.5,
        )
        total_runs = 0
        for _repo, ws in everything:
            found = assert_no_overlap(survivor, ws)
            total_runs += len(found)
            # Every accepted webhook was served by a run that started after it was taken.
            for t, _ in (a for a in accepted if a[1] == ws):
                assert any(r["started_at"] >= t - 0.01 for r in found), (ws, t)
        for ws, run_id in manual:
            run = get(survivor, f"/api/v1/runs/{run_id}")
            assert run["workspace"] == ws

        # What the killed replica held was taken over, and nothing is left waiting. The killed
        # one shows as gone once its last heartbeat is 6 s old (the runs may all be over
        # sooner); another replica's holds are as of its last heartbeat (every 2 s).
        def replicas_settled() -> bool:
            listed = get(survivor, "/api/v1/replicas")
            assert listed["shared"] is True
            alive = [r for r in listed["replicas"] if r["alive"]]
            gone = [r for r in listed["replicas"] if not r["alive"]]
            return len(gone) == 1 and len(alive) == 2 and not any(r["holds"] for r in alive)

        wait_for(replicas_settled, 30, "the killed replica gone, no workspace held", every=0.5)
        report(
            "replicas-kill",
            webhooks=sent,
            accepted=len(accepted),
            refused=refused,
            manual=len(manual),
            runs=total_runs,
            workspaces=len(everything),
        )
        assert refused == 0
        # Coalesced across replicas: far fewer runs than requests.
        assert total_runs < len(accepted)
    finally:
        for d in replicas:
            stop_daemon(d)
            kill_daemon(d)


def test_a_redelivery_after_a_full_restart_starts_nothing(
    git_server: GitServer, tmp_path: Path, database: str
) -> None:
    repos = make_repos(git_server, tmp_path, 1, 1, "rr")
    repo, ws = repos[0], repos[0].workspaces[0]
    replicas = start_replicas(tmp_path, git_server, repos, database, count=2)
    try:
        path = write_step(repo.tree, "new", "new()")
        repo.tree.commit("new")
        repo.tree.push()
        headers, body = build("github", repo.url, "main", [path], repo.tree.head(), "redeliver-1")
        r = httpx.post(f"{replicas[0].url}/hooks/github", content=body, headers=headers)
        assert r.status_code == 202, r.text
        wait_for(lambda: converged(replicas[1], ws, repo.tree), 60, "the webhook's run")
        for d in replicas:
            assert d.stop() == 0, d.log()
        replicas = start_replicas(tmp_path / "again", git_server, repos, database, count=2)
        # Each replica asks for a startup run; they coalesce or follow each other.
        before = settled(replicas[0], ws)
        for d in replicas:
            r = httpx.post(f"{d.url}/hooks/github", content=body, headers=headers)
            assert r.status_code == 200 and r.json()["duplicate"] is True, r.text
        time.sleep(2)
        assert len(runs(replicas[0], ws)) == before
    finally:
        for d in replicas:
            stop_daemon(d)
            kill_daemon(d)


def _terminate_backends(database: str) -> None:
    import psycopg

    name = database.rsplit("/", 1)[1]
    with psycopg.connect(f"{postgres.SERVER}/postgres", autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )


def _allow_connections(database: str, allow: bool) -> None:
    import psycopg

    name = database.rsplit("/", 1)[1]
    with psycopg.connect(f"{postgres.SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allow).lower()}')


def _requests(database: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(database, autocommit=True) as conn:
        return list(conn.execute("SELECT * FROM sync_requests ORDER BY id").fetchall())


def _ready(d: Daemon) -> bool:
    try:
        return httpx.get(f"{d.url}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_losing_the_database_for_seconds(
    git_server: GitServer, tmp_path: Path, database: str
) -> None:
    repos = make_repos(git_server, tmp_path, 2, 2, "rd")
    replicas = start_replicas(tmp_path, git_server, repos, database)
    everything = [(repo, ws) for repo in repos for ws in repo.workspaces]
    try:
        wait_for(
            lambda: all(converged(replicas[0], ws, repo.tree) for repo, ws in everything),
            60,
            "the startup runs",
        )
        # The database goes away: no new connection is taken, and every one open is cut.
        _allow_connections(database, False)
        _terminate_backends(database)
        lost_at = time.monotonic()
        for repo in repos:
            path = write_step(repo.tree, "while away", "away()")
            repo.tree.commit("while the database was away")
            repo.tree.push()
        wait_for(lambda: not any(_ready(d) for d in replicas), 15, "every replica not ready")
        for d in replicas:
            with d.client(token=None) as c:
                headers, body = build(
                    "github", repos[0].url, "main", [path], repos[0].tree.head(), f"away-{d.url}"
                )
                r = c.post("/hooks/github", content=body, headers=headers)
            # Nothing is taken that cannot be recorded: the provider tries again.
            assert r.status_code == 503, r.text
        time.sleep(max(0.0, 5 - (time.monotonic() - lost_at)))
        assert all(d.process.poll() is None for d in replicas)
        _allow_connections(database, True)
        back_at = time.monotonic()
        wait_for(lambda: all(_ready(d) for d in replicas), 30, "every replica ready again")
        ready_after = time.monotonic() - back_at
        # The provider redelivers what was refused; any replica takes it.
        for repo in repos:
            headers, body = build(
                "github", repo.url, "main", [path], repo.tree.head(), f"back-{repo.name}"
            )
            r = httpx.post(f"{replicas[1].url}/hooks/github", content=body, headers=headers)
            assert r.status_code == 202 and r.json()["queued"], r.text
        try:
            wait_for(
                lambda: all(converged(replicas[2], ws, repo.tree) for repo, ws in everything),
                60,
                "every workspace at its branch head after the database came back",
            )
        except AssertionError as e:
            raise AssertionError(f"{e}\nwaiting: {_requests(database)}") from None
        report("replicas-database-lost", ready_after_s=round(ready_after, 2))
    finally:
        _allow_connections(database, True)
        for d in replicas:
            stop_daemon(d)
            kill_daemon(d)


def test_a_remote_is_polled_by_one_replica_per_cycle(
    git_server: GitServer, tmp_path: Path, database: str
) -> None:
    repos = make_repos(git_server, tmp_path, 1, 2, "rp")
    replicas = start_replicas(tmp_path, git_server, repos, database, poll_interval="1s")
    try:
        time.sleep(1)
        before = sum(_ls_remotes(d) for d in replicas)
        time.sleep(6)
        polls = sum(_ls_remotes(d) for d in replicas) - before
        # One ls-remote a cycle in all (a little slack for the cycle's jitter), not three.
        assert 2 <= polls <= 9, polls
        repo = repos[0]
        write_step(repo.tree, "polled", "polled()")
        repo.tree.commit("polled")
        repo.tree.push()
        wait_for(
            lambda: all(converged(replicas[0], ws, repo.tree) for ws in repo.workspaces),
            30,
            "the polled commit applied",
        )
    finally:
        for d in replicas:
            stop_daemon(d)
            kill_daemon(d)


def _ls_remotes(d: Daemon) -> float:
    r = httpx.get(f"{d.url}/metrics", timeout=10)
    total = 0.0
    for line in r.text.splitlines():
        if line.startswith('syncd_git_operations_total{op="ls_remote"'):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_an_outside_edit_heals_even_when_the_replica_that_took_it_dies(
    git_server: GitServer, tmp_path: Path, database: str
) -> None:
    repos = make_repos(git_server, tmp_path, 1, 1, "rh")
    repo, ws = repos[0], repos[0].workspaces[0]
    replicas = start_replicas(tmp_path, git_server, repos, database, count=2)
    try:
        # A caller waiting on a run hears how it ended, whichever replica served it.
        for d in replicas:
            with d.client() as c:
                r = c.post(f"/api/v1/workspaces/{ws}/sync?wait=true")
            assert r.status_code == 200 and r.json()["result"] == "succeeded", r.text
        with replicas[1].client() as c:
            body = {"content": {"if": "true", "do": "hand()"}}
            r = c.put(f"/api/v1/workspaces/{ws}/steps/base", json=body)
        assert r.status_code == 200 and r.json()["origin"] == "outside", r.text
        # Gone before its self-heal delay (1 s) is up: the request row outlives it.
        replicas[1].process.send_signal(signal.SIGKILL)
        replicas[1].process.wait(10)
        wait_for(lambda: converged(replicas[0], ws, repo.tree), 30, "the outside edit healed")
        assert any(r["trigger"] == "drift" for r in runs(replicas[0], ws))
    finally:
        for d in replicas:
            stop_daemon(d)
            kill_daemon(d)
