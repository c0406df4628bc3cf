"""Do reports to a slow git host slow syncs down? Push to applied of a workspace that reports
commit statuses to a host answering each request after 2 s, against one that reports nothing.

    python bench/report_overhead.py [--quick]

Starts its own https git server on loopback and a slow https "git host" (every request answered
201 after 2 s, as a loaded GitHub Enterprise might), two repositories with one history of 100
steps, and the installed `syncd serve` with two automatic workspaces, webhooks only: `on`
reports commit statuses to the slow host (`providers:`), `off` reports nothing. Then, 20 times
(--quick: 6) after 2 untimed warm-up pushes: the same one-step change is pushed to both and
each is timed from GitHub's signed push webhook to the first `GET /api/v1/workspaces/{id}`
(asked every 5 ms) whose `last_applied_revision` is the pushed commit; the two alternate in
which goes first. Each run of `on` queues a `pending` and a final status: 4 s of host time per
run, which must stay off the sync's path. Goal: the median with reports at most 1.05 times the
median without. Prints a markdown table; always exits 0 (benches do not fail CI).
"""

from __future__ import annotations

import argparse
import ssl
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import trustme
from common import (
    STEPS_PATH,
    Figure,
    clone_bare_repo,
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
    write_step,
)
from daemon import ServeProcess
from webhook_latency import POLL_EVERY, time_webhook

from syncd.core.steps import step_file_name
from syncd.demo.gitserver import WorkTree

STEPS = 100
WARMUP = 2
GOAL_RATIO = 1.05
HOST_DELAY = 2.0
TOKEN_ENV = "SYNCD_BENCH_HOST_TOKEN"


class SlowHost(ThreadingHTTPServer):
    """Answers every request 201 `{}` after HOST_DELAY; counts the statuses it was sent."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SlowHandler)
        self.statuses = 0
        self.lock = threading.Lock()

    def handle_error(self, request: object, client_address: object) -> None:
        return  # the daemon stopping mid-answer: nothing the bench needs to hear about


class _SlowHandler(BaseHTTPRequestHandler):
    server: SlowHost

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(HOST_DELAY)
        if "/statuses/" in self.path:
            with self.server.lock:
                self.server.statuses += 1
        body = b"{}"
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@contextmanager
def slow_host(folder: Path) -> Iterator[tuple[SlowHost, Path]]:
    """The host, serving TLS with a throwaway CA: (server, the CA's PEM file)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_file = folder / "host-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    host = SlowHost()
    host.socket = context.wrap_socket(host.socket, server_side=True)
    thread = threading.Thread(target=host.serve_forever, daemon=True)
    thread.start()
    try:
        yield host, ca_file
    finally:
        host.shutdown()
        host.server_close()


@dataclass(frozen=True)
class Measured:
    on: list[float]  # seconds, webhook to applied, reporting to the slow host
    off: list[float]  # the same content, reporting nothing
    statuses: int  # statuses the host got


def measure(pushes: int) -> Measured:
    with temp_git_server() as (server, tmp), slow_host(tmp) as (host, ca_file):
        # owner/name paths, as the host's API names repositories
        url_on, tree_on = make_repo(server, tmp, "bench/on", STEPS)
        url_off = clone_bare_repo(server, "bench/on", "bench/off")
        tree_off = WorkTree(server, "bench/off", tmp / "off-work")
        api = f"https://127.0.0.1:{host.server_address[1]}"
        providers = {
            "slow": {
                "kind": "github",
                "api_url": api,
                "token_env": TOKEN_ENV,
                "ca_file": str(ca_file),
            }
        }
        on = workspace("on", url_on, server)
        on["source"]["provider"] = "slow"
        off = {
            **workspace("off", url_off, server),
            "report": {"commit_status": False, "pull_requests": False},
        }
        with ServeProcess.start(
            tmp / "syncd",
            [on, off],
            server,
            top={"providers": providers},
            env_extra={TOKEN_ENV: "bench-host-token-0123456789"},
        ) as daemon:
            daemon.wait_ready(60)
            daemon.wait_all_applied(2, tree_on.head(), timeout=60)
            client = daemon.client()
            times: dict[str, list[float]] = {"on": [], "off": []}
            for k in range(WARMUP + pushes):
                i = (k * 37) % STEPS
                path = f"{STEPS_PATH}/{step_file_name(step_name(i))}"
                pushed = {}
                for name, tree, url in (("on", tree_on, url_on), ("off", tree_off, url_off)):
                    before = tree.head()
                    write_step(tree, i, version=k + 1)
                    tree.commit(f"change step {i}")
                    tree.push()
                    pushed[name] = (url, tree.head(), before)
                order = ("on", "off") if k % 2 else ("off", "on")
                for name in order:
                    url, sha, before = pushed[name]
                    seconds = time_webhook(daemon, client, url, path, sha, before, ws=name)
                    if k >= WARMUP:
                        times[name].append(seconds)
            # The last runs' statuses are still on their way: give them the host's time.
            for _ in range(int(3 * HOST_DELAY / 0.1)):
                with host.lock:
                    if host.statuses:
                        break
                time.sleep(0.1)
            with host.lock:
                statuses = host.statuses
        if not statuses:
            raise RuntimeError("the slow host got no status: reports did not run")
        return Measured(times["on"], times["off"], statuses)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="6 pushes instead of 20")
    args = parser.parse_args(argv)
    pushes = 6 if args.quick else 20
    print(
        f"# report overhead ({'quick' if args.quick else 'full'}): {pushes} pushes to each of two"
        f" workspaces of {STEPS} steps, commit statuses to a host answering in"
        f" {HOST_DELAY:.0f} s vs no reports, webhook to applied\n"
    )
    try:
        m = measure(pushes)
    except Exception as e:
        traceback.print_exc()
        print(markdown_table([]) + "\n" + failed_row("push to applied, reports on/off", e))
        return 0
    rows = [
        Figure(
            f"push to applied, commit statuses to a {HOST_DELAY:.0f} s host, median of {pushes}"
            " (baseline: no reports)",
            median(m.on),
            "s",
            median(m.off),
            at_most=GOAL_RATIO,
        ),
        Figure(
            f"push to applied, statuses to a slow host, p90 of {pushes} (baseline: none)",
            percentile(m.on, 90),
            "s",
            percentile(m.off, 90),
        ),
    ]
    print(figures_table(rows))
    print(
        f"\nmin/median/max: reports on {spread(m.on)}, off {spread(m.off)}; the host got"
        f" {m.statuses} statuses meanwhile; the applied revision is read every"
        f" {POLL_EVERY * 1000:.0f} ms, so both include up to that much wait"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
