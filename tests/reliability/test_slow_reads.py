"""A read-only token against a stalling remote: 40 concurrent `GET …/diff` while the git server
sleeps before every answer.

Each diff asks the remote for the branch head. Without bounds they took the shared thread pool
(and the workspace's lock), and plain reads and edits of the workspace, which need no remote,
waited behind them for as long as the remote stalled. The bar: `GET` of the workspace and of
its steps, and `PUT` of a step, answer within 2 s while the diffs hang; the diffs past
`server.max_remote_reads` answer 429 with Retry-After at once.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import workspace
from tests.support.configs import API_TOKEN
from tests.support.daemon import Daemon, Remote, remote, report, start_daemon, stop_daemon, view

DIFFS = 40
STALL = 15.0  # the remote sleeps this long before each answer
ANSWER_WITHIN = 2.0
HEADERS = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def stalled(tmp_path: Path) -> Iterator[tuple[Daemon, Remote]]:
    with remote(tmp_path) as rm:
        ws = [workspace("manual", rm.url, rm.server, "manual")]
        d = start_daemon(tmp_path, rm.server, rm.tree, rm.url, ws)
        try:
            d.wait_until(lambda: view(d, "manual")["last_run"], 30, "the startup run")
            yield d, rm
        finally:
            rm.server.set_fault(None)
            stop_daemon(d)


def timed(method: str, url: str, **kwargs: object) -> tuple[int, float, httpx.Response | None]:
    started = time.monotonic()
    try:
        r = httpx.request(method, url, headers=HEADERS, timeout=STALL * 4, **kwargs)  # type: ignore[arg-type]
    except httpx.HTTPError:
        return 0, time.monotonic() - started, None
    return r.status_code, time.monotonic() - started, r


def test_diffs_against_a_stalling_remote_hold_up_nothing_else(
    stalled: tuple[Daemon, Remote],
) -> None:
    d, rm = stalled
    ws_url = f"{d.url}/api/v1/workspaces/manual"
    rm.server.set_fault("slow", STALL)
    with concurrent.futures.ThreadPoolExecutor(DIFFS) as pool:
        diffs = [pool.submit(timed, "GET", f"{ws_url}/diff") for _ in range(DIFFS)]
        time.sleep(1.0)  # let them all arrive
        others = {
            "GET workspace": timed("GET", ws_url),
            "GET steps": timed("GET", f"{ws_url}/steps"),
            "PUT step": timed(
                "PUT", f"{ws_url}/steps/edited", json={"content": {"if": "", "do": "x()"}}
            ),
            "GET step": timed("GET", f"{ws_url}/steps/edited"),
        }
        refused = [f.result() for f in diffs if f.done() and f.result()[0] == 429]
        rm.server.set_fault(None)
        finished = [f.result() for f in diffs]
    statuses = sorted({status for status, _, _ in finished})
    report(
        "diffs against a stalling remote",
        diffs=DIFFS,
        stall_s=STALL,
        answered_429=sum(status == 429 for status, _, _ in finished),
        statuses=statuses,
        **{k.replace(" ", "_").lower() + "_s": round(t, 2) for k, (_, t, _) in others.items()},
    )
    for what, (status, took, _) in others.items():
        assert status == 200, f"{what}: {status}"
        assert took < ANSWER_WITHIN, f"{what} took {took:.1f} s behind the diffs"
    assert len(refused) >= DIFFS - 8, f"only {len(refused)} diffs were refused at once"
    for _, _, r in refused:
        assert r is not None and r.headers.get("retry-after")
    assert set(statuses) <= {200, 429, 502}, statuses
