"""From a push webhook to the step applied: how does it compare with `git fetch` of the commit?

    python bench/webhook_latency.py [--quick]

Starts its own https git server on loopback, a repository of 100 steps, a mirror clone of it
(`git clone --mirror`, the baseline's), and the installed `syncd serve` with one automatic
workspace on the repository (webhooks only, no polling). Then, 50 times (--quick: 10), after
2 untimed warm-up pushes: change one step, commit and push with git's CLI (untimed), and time

- syncd: from sending GitHub's signed push webhook (`POST /hooks/github`, the body shaped
  like GitHub's, built by `syncd.demo.webhook`) to the first
  `GET /api/v1/workspaces/{id}` (asked every 5 ms) whose `last_applied_revision` is the
  pushed commit. In between, syncd asks the remote for the branch head (ls-remote), fetches
  the commit on that same connection, reads the changed step file and applies it in one
  SQLite transaction.
- the baseline: `git fetch` by git's CLI into the mirror clone, which brings the same commit
  (a new process, TLS, the same credentials helper as the git server's own `run_git`).

The two alternate in which goes first. The git server counts the requests each makes for a
push (`git fetch` asks for the refs, then for the pack, after a 401 that asks for the
credentials; syncd should ask for no more). The daemon's log is searched for git retries (a
transient network error is retried with backoff), which explain a slow push. Goals: p50 and
p99 of syncd each at most 1.1 times those of `git fetch`. Prints a markdown table; always
exits 0 (benches do not fail CI).
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
from common import (
    STEPS_PATH,
    Figure,
    change_step,
    failed_row,
    figures_table,
    make_repo,
    markdown_table,
    median,
    percentile,
    spread,
    step_name,
    temp_git_server,
    workspace,
)
from daemon import WEBHOOK_SECRET, ServeProcess

from syncd.core.steps import step_file_name
from syncd.demo.gitserver import GitServer
from syncd.demo.webhook import github_push

STEPS = 100
WARMUP = 2
POLL_EVERY = 0.005  # seconds between two GETs of the workspace
APPLY_TIMEOUT = 30.0
GOAL_RATIO = 1.1
WS = "latency"


def time_git_fetch(server: GitServer, mirror: Path, sha: str) -> float:
    started = time.perf_counter()
    server.run_git("-C", str(mirror), "fetch", "--quiet")
    seconds = time.perf_counter() - started
    server.run_git("-C", str(mirror), "cat-file", "-e", f"{sha}^{{commit}}")  # it arrived
    return seconds


def time_webhook(
    daemon: ServeProcess,
    client: httpx.Client,
    url: str,
    path: str,
    sha: str,
    before: str,
    ws: str = WS,
) -> float:
    """Seconds from a signed push webhook for `sha` to workspace `ws` having applied it."""
    headers, body = github_push(
        url, sha, WEBHOOK_SECRET, before=before, added=[path], delivery=uuid.uuid4().hex
    )
    started = time.perf_counter()
    answer = client.post("/hooks/github", content=body, headers=headers)
    if answer.status_code != 202 or answer.json().get("matched") != [ws]:
        raise RuntimeError(f"webhook for {ws} answered {answer.status_code}: {answer.text}")
    deadline = started + APPLY_TIMEOUT
    while time.perf_counter() < deadline:
        view = client.get(f"/api/v1/workspaces/{ws}").json()
        if view["last_applied_revision"] == sha:
            return time.perf_counter() - started
        if view["failed_revision"] == sha:
            raise RuntimeError(f"{ws}: {sha[:12]} failed: {view['last_run']['error']}")
        time.sleep(POLL_EVERY)
    raise TimeoutError(
        f"{ws}: {sha[:12]} not applied {APPLY_TIMEOUT:.0f} s after the webhook\n{daemon.log_tail()}"
    )


@dataclass(frozen=True)
class Measured:
    hooks: list[float]  # seconds, webhook to applied, a push each
    fetches: list[float]  # seconds, `git fetch` of the same commits
    retries: list[str]  # the daemon's "git retry" log lines: why a push took long
    hook_requests: collections.Counter[str]  # at the git server, all pushes, by kind
    fetch_requests: collections.Counter[str]


def measure(pushes: int) -> Measured:
    with temp_git_server() as (server, tmp):
        url, tree = make_repo(server, tmp, "latency", STEPS)
        mirror = tmp / "mirror.git"
        server.run_git("clone", "--quiet", "--mirror", url, str(mirror))
        ws = workspace(WS, url, server)  # automatic, poll 0s: webhooks only
        with ServeProcess.start(tmp / "syncd", [ws], server) as daemon:
            daemon.wait_ready(60)
            daemon.wait_all_applied(1, tree.head(), timeout=60)
            client = daemon.client()
            hooks, fetches = [], []
            asked: tuple[collections.Counter[str], collections.Counter[str]] = (
                collections.Counter(),
                collections.Counter(),
            )
            for k in range(WARMUP + pushes):
                i = (k * 37) % STEPS  # a different step each time
                before = tree.head()
                sha = change_step(tree, i, version=k + 1)  # commit and push: untimed
                path = f"{STEPS_PATH}/{step_file_name(step_name(i))}"
                timed = [0.0, 0.0]
                for which in (1, 0) if k % 2 else (0, 1):
                    seen = server.snapshot()
                    if which == 0:
                        timed[0] = time_webhook(daemon, client, url, path, sha, before)
                    else:
                        timed[1] = time_git_fetch(server, mirror, sha)
                    if k >= WARMUP:
                        asked[which].update(server.snapshot() - seen)
                if k >= WARMUP:
                    hooks.append(timed[0])
                    fetches.append(timed[1])
            log = daemon.log_path.read_text(errors="replace").splitlines()
        retries = [line for line in log if "git retry" in line]
        return Measured(hooks, fetches, retries, *asked)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 pushes instead of 50")
    args = parser.parse_args(argv)
    pushes = 10 if args.quick else 50
    print(
        f"# push to applied ({'quick' if args.quick else 'full'}): {pushes} pushes to a"
        f" repository of {STEPS} steps, webhook to applied vs `git fetch` of the same commit\n"
    )
    try:
        m = measure(pushes)
    except Exception as e:
        traceback.print_exc()
        print(markdown_table([]) + "\n" + failed_row("push to applied", e))
        return 0
    hooks, fetches = m.hooks, m.fetches
    rows = [
        Figure(
            f"push to applied: webhook to applied, p{q} of {pushes} (baseline: `git fetch`)",
            percentile(hooks, q),
            "s",
            percentile(fetches, q),
            at_most=GOAL_RATIO,
        )
        for q in (50, 99)
    ]
    print(figures_table(rows))
    print(
        f"\nmin/median/max: webhook to applied {spread(hooks)}, `git fetch` {spread(fetches)};"
        f" the applied revision is read every {POLL_EVERY * 1000:.0f} ms, so syncd's figure"
        f" includes up to that much wait (median of the difference:"
        f" {median([h - f for h, f in zip(hooks, fetches, strict=True)]) * 1000:.0f} ms);"
        f" slowest pushes {', '.join(f'{h * 1000:.0f}' for h in sorted(hooks)[-3:])} ms;"
        f" requests at the git server per push: syncd {_requests(m.hook_requests, pushes)},"
        f" `git fetch` {_requests(m.fetch_requests, pushes)};"
        f" git retries in the daemon's log: {len(m.retries)}"
        + "".join(f"; {' '.join(line.split()[3:])[:200]}" for line in m.retries[:3])
    )
    return 0


def _requests(counts: collections.Counter[str], pushes: int) -> str:
    """Requests per push at the git server: `4 (2 info_refs, 2 upload_pack, 1 unauthorized)`
    (an unauthorized one, answered 401, is counted by its kind too)."""
    kinds = ("info_refs", "upload_pack", "unauthorized")
    shown = ", ".join(f"{counts[k] / pushes:.3g} {k}" for k in kinds if counts[k])
    return f"{counts['total'] / pushes:.3g} ({shown})"


if __name__ == "__main__":
    sys.exit(main())
