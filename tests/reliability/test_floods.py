"""Floods against the real daemon: a storm of one push's webhooks, and pushes interleaved with
manual syncs and outside edits on one automatic workspace.

1. 1,000 signed deliveries of the same push (distinct delivery ids, one commit), 16 at a time:
   each is answered 202 or 503, the remote sees a handful of fetches at most (every trigger
   coalesces into the one queued run, and the mirror already holds the commit after the first
   fetch), and the workspaces end at the pushed commit.
2. Pushes (each announced by a webhook), manual syncs with `?wait=true` and edits outside git
   (PUT and DELETE of steps) race on one automatic workspace from three threads: its runs never
   overlap, every manual sync succeeds (a network hiccup aside), and once things settle the
   workspace equals the branch head exactly, by itself (webhook and self-heal), with no sync
   asked for at the end.

SYNCD_RELIABILITY=full raises the deliveries to 5,000 and the racing rounds fivefold.
"""

from __future__ import annotations

import collections
import concurrent.futures
import http.client
import itertools
import random
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.core.steps import step_file_name
from syncd.core.times import parse_time
from tests.support import workspace, write_step
from tests.support.daemon import (
    STEPS_DIR,
    Daemon,
    Remote,
    converged,
    metric,
    metrics_text,
    network_hiccup,
    remote,
    report,
    runs,
    scaled,
    start_daemon,
    stop_daemon,
    tree_steps,
    view,
    wait_for,
)
from tests.support.payloads import build

DELIVERIES = int(scaled(1_000, 5_000))
IN_FLIGHT = 16
MAX_FETCHES = 5
ROUNDS = int(scaled(8, 40))


@pytest.fixture
def flooded(tmp_path: Path) -> Iterator[tuple[Daemon, Remote]]:
    with remote(tmp_path) as rm:
        workspaces = [
            workspace("auto", rm.url, rm.server, "automatic"),
            workspace("manual", rm.url, rm.server, "manual"),
        ]
        d = start_daemon(tmp_path, rm.server, rm.tree, rm.url, workspaces)
        try:
            wait_for(lambda: converged(d, "auto", rm.tree), 30, "the startup sync")
            wait_for(lambda: view(d, "manual")["last_run"], 30, "the manual startup run")
            yield d, rm
        finally:
            stop_daemon(d)


def push_hook(rm: Remote, files: list[str]) -> tuple[dict[str, str], bytes]:
    """GitHub's signed push of the branch head, with a delivery id of its own."""
    return build("github", rm.url, "main", files, rm.tree.head(), str(uuid.uuid4()))


def deliver_all(d: Daemon, hooks: list[tuple[dict[str, str], bytes]]) -> list[int]:
    """POST every delivery, IN_FLIGHT at a time over kept-alive connections (http.client: the
    sender must not be the bottleneck on a small machine)."""
    port = int(d.url.rsplit(":", 1)[1])
    local = threading.local()
    opened: list[http.client.HTTPConnection] = []

    def send(hook: tuple[dict[str, str], bytes]) -> int:
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            opened.append(local.conn)
        headers, body = hook
        local.conn.request("POST", "/hooks/github", body=body, headers=headers)
        response = local.conn.getresponse()
        response.read()
        return int(response.status)

    try:
        with concurrent.futures.ThreadPoolExecutor(IN_FLIGHT) as pool:
            return list(pool.map(send, hooks))
    finally:
        for conn in opened:
            conn.close()


def test_a_thousand_deliveries_of_one_push(flooded: tuple[Daemon, Remote]) -> None:
    d, rm = flooded
    path = write_step(rm.tree, "flooded", "arrived()")
    head = rm.commit_and_push("the push everyone announces")
    hooks = [push_hook(rm, [path]) for _ in range(DELIVERIES)]
    before, m0 = rm.server.snapshot(), metrics_text(d)
    started = time.monotonic()
    statuses = collections.Counter(deliver_all(d, hooks))
    answered_in = time.monotonic() - started

    assert set(statuses) <= {202, 503}, statuses
    wait_for(lambda: converged(d, "auto", rm.tree), 60, "the automatic workspace to apply")
    wait_for(lambda: view(d, "manual")["last_seen_revision"] == head, 60, "the manual one")
    assert view(d, "manual")["status"] == "OutOfSync"
    seen = rm.server.snapshot() - before
    m1 = metrics_text(d)
    accepted = metric(m1, "syncd_webhook_requests_total", provider="github", result="accepted")
    overloaded = metric(m1, "syncd_webhook_requests_total", provider="github", result="overloaded")
    accepted -= metric(m0, "syncd_webhook_requests_total", provider="github", result="accepted")
    overloaded -= metric(m0, "syncd_webhook_requests_total", provider="github", result="overloaded")
    webhook_runs = {
        ws: sum(r["trigger"] == "webhook" for r in runs(d, ws)) for ws in ("auto", "manual")
    }
    report(
        "webhook flood",
        deliveries=DELIVERIES,
        answered_202=statuses[202],
        answered_503=statuses[503],
        answered_in_s=round(answered_in, 1),
        fetches=seen["upload_pack"],
        ls_remotes=seen["info_refs"],
        runs=webhook_runs,
    )
    assert seen["upload_pack"] <= MAX_FETCHES, f"{seen['upload_pack']} fetches for one push"
    assert (accepted, overloaded) == (statuses[202], statuses[503])
    # Coalesced: far fewer runs than deliveries, and only the first one applied anything.
    assert max(webhook_runs.values()) <= DELIVERIES // 10, webhook_runs
    applied = [r for r in runs(d, "auto") if r["trigger"] == "webhook" and r["created"]]
    assert len(applied) == 1 and applied[0]["revision"] == head, applied


class Race:
    """Three threads on one automatic workspace: pushes, manual syncs, outside edits."""

    def __init__(self, d: Daemon, rm: Remote, rng: random.Random) -> None:
        self.d, self.rm, self.rng = d, rm, rng
        self.names = sorted(tree_steps(rm.tree))
        self.errors: list[str] = []
        self.manual_runs: list[dict[str, Any]] = []
        self.edits = collections.Counter[str]()
        self.pushes = 0

    def run(self) -> None:
        threads = [
            threading.Thread(target=self._guard, args=(f,), name=f.__name__)
            for f in (self._push, self._sync, self._edit)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)

    def _guard(self, body: Any) -> None:
        try:
            body()
        except Exception as e:  # reported by the test
            self.errors.append(f"{body.__name__}: {e!r}")

    def _push(self) -> None:
        rng = random.Random(self.rng.random())
        for i in range(ROUNDS):
            name = rng.choice([*self.names, f"pushed {i}"])
            files = [write_step(self.rm.tree, name, f"push({i})")]
            if rng.random() < 0.3 and len(self.names) > 2:
                gone = self.names.pop(rng.randrange(len(self.names)))
                self.rm.tree.remove(f"{STEPS_DIR}/{step_file_name(gone)}")
            self.rm.commit_and_push(f"push {i}")
            with self.d.client(token=None) as c:
                headers, body = push_hook(self.rm, files)
                r = c.post("/hooks/github", content=body, headers=headers)
            assert r.status_code in (202, 503), r.text
            self.pushes += 1
            time.sleep(rng.uniform(0, 0.3))

    def _sync(self) -> None:
        rng = random.Random(self.rng.random())
        with self.d.client() as c:
            for _ in range(ROUNDS):
                r = c.post("/api/v1/workspaces/auto/sync?wait=true", timeout=120)
                assert r.status_code == 200, r.text
                self.manual_runs.append(r.json())
                time.sleep(rng.uniform(0, 0.3))

    def _edit(self) -> None:
        rng = random.Random(self.rng.random())
        names = [*self.names, "made outside"]  # some of them gone from git meanwhile
        with self.d.client() as c:
            for i in range(2 * ROUNDS):
                name = rng.choice(names)
                path = f"/api/v1/workspaces/auto/steps/{name}"
                if rng.random() < 0.3:
                    r = c.delete(path)
                    assert r.status_code in (204, 404), r.text
                    self.edits["delete"] += 1
                else:
                    body = {"content": {"if": "true", "do": f"outside({i})"}}
                    r = c.put(path, json=body)
                    assert r.status_code == 200, r.text
                    self.edits["put"] += 1
                time.sleep(rng.uniform(0, 0.15))


def test_pushes_manual_syncs_and_outside_edits_are_serialized(
    flooded: tuple[Daemon, Remote],
) -> None:
    d, rm = flooded
    seed = random.randrange(2**32)
    race = Race(d, rm, random.Random(seed))
    started = time.monotonic()
    race.run()
    raced = time.monotonic() - started
    assert not race.errors, race.errors
    # The last word is an edit outside git: self-heal must undo it with nothing else to prompt.
    with d.client() as c:
        edit = c.put(f"/api/v1/workspaces/auto/steps/{race.names[0]}", json={"if": "x", "do": "y"})
        assert edit.status_code == 200, edit.text
    settled = time.monotonic()
    wait_for(lambda: converged(d, "auto", rm.tree), 60, "the workspace to settle on the head")
    settle = time.monotonic() - settled
    history = sorted(runs(d, "auto"), key=lambda r: parse_time(r["started_at"]))
    overlaps = [
        (a["id"], b["id"])
        for a, b in itertools.pairwise(history)
        if parse_time(b["started_at"]) < parse_time(a["finished_at"])
    ]
    failed = [r for r in history if r["result"] == "failed"]
    report(
        "pushes, manual syncs and outside edits racing",
        seed=seed,
        pushes=race.pushes,
        manual_syncs=len(race.manual_runs),
        edits=dict(race.edits),
        runs=len(history),
        triggers=dict(collections.Counter(r["trigger"] for r in history)),
        overlapping_runs=len(overlaps),
        failed_runs=len(failed),
        raced_s=round(raced, 1),
        settled_s=round(settle, 1),
    )
    assert not overlaps, f"runs of one workspace overlapped: {overlaps}"
    # A run may fail on a network hiccup (the loop retries it); none may fail for another reason.
    assert all(network_hiccup(r) for r in failed), failed
    assert all(r["result"] == "succeeded" or network_hiccup(r) for r in race.manual_runs), (
        race.manual_runs
    )
