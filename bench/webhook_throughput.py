"""How many signed GitHub pushes a second does `POST /hooks/github` take in, next to the Go
webhook receiver many teams use instead (adnanh/webhook) and to a bare Starlette endpoint?

    python bench/webhook_throughput.py [--quick]

Starts its own https git server on loopback and two installed `syncd serve`s with one
workspace on one repository: one with `server.intake_workers` set to the cores but one (at
least 1), so that webhooks are answered on more than one core as the Go receiver answers them;
one as configured by default (the daemon's process alone). The load is GitHub's push webhook
for another repository, signed with the configured secret: syncd verifies the signature,
parses the body, matches no workspace and answers 202 `{"matched": [], "queued": []}`. Every
request carries its own X-GitHub-Delivery (a wrk Lua script counts per thread), as GitHub's do.

The peer is adnanh/webhook (`webhook`, Debian's package; .ci/run installs it) with a
hooks.json whose trigger rules do what syncd does with this push: verify the same HMAC-SHA256
(X-Hub-Signature-256, the same secret), then match the ref and the repository's clone URL
against the one watched repository; the push names another, so the rules are not satisfied
and nothing runs (answered 202, as syncd answers). It uses every core. Same wrk command, script
and body. When `webhook` is not installed the bench says so and measures the others.

The second baseline is a bare Starlette app with one POST route that reads the body and answers
the same JSON with 202, under uvicorn with the daemon's settings (one process, the same
uvicorn.Config arguments as `syncd serve`): what one Python process can do with no work at all.
It is compared with syncd in one process, so that the ratio is syncd's own cost per request.

wrk runs with max(1, nproc - 1) threads (up to 4; wrk and the servers share the machine) and
32 connections, after a 1 s warm-up, for 5 s (--quick: 2 s); the servers take turns, 5 rounds
each (--quick: 2), so that a neighbour's load falls on all of them, and the median counts.
Goals: syncd (with intake processes) at least 1.0 times adnanh/webhook's rate; syncd in one
process at least 0.7 times the bare endpoint's. Each server's CPU a request (user and system
time of its processes, from /proc, over its rounds, divided by the requests wrk completed) is
printed too: steadier than a rate on a shared machine, and what a rate follows when every
server is CPU-bound.
Prints a markdown table; always exits 0 (benches do not fail CI).

    python bench/webhook_throughput.py --bare-server PORT

runs the baseline server alone (the bench starts it so).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from common import (
    Figure,
    failed_row,
    figures_table,
    make_repo,
    markdown_table,
    median,
    temp_git_server,
    workspace,
)
from daemon import HOST, WEBHOOK_SECRET, ServeProcess, free_port
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from syncd.demo.webhook import github_push

CONNECTIONS = 32
GOAL_RATIO = 0.7  # against bare Starlette
GOAL_PEER_RATIO = 1.0  # against adnanh/webhook
PEER = "adnanh/webhook"
WS = "watched"
# The cores but one answer webhooks; wrk has the last (on a 2-core machine: 1 intake process).
INTAKE_WORKERS = max(1, min(7, (os.cpu_count() or 2) - 1))
HOOK_PATH = "/hooks/github"

LUA = """
-- One signed body; a delivery id of its own for every request, as GitHub sends them.
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
%(headers)s
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local run = "run"
local counter = 0
function init(args)
  run = args[1] or run
end
function request()
  counter = counter + 1
  wrk.headers["X-GitHub-Delivery"] = run .. "-" .. tid .. "-" .. counter
  return wrk.format(nil, "%(path)s")
end
"""


def bare_app() -> Starlette:
    async def hook(request: Request) -> Response:
        await request.body()
        return JSONResponse({"matched": [], "queued": []}, status_code=202)

    return Starlette(routes=[Route(HOOK_PATH, hook, methods=["POST"])])


def run_bare_server(port: int) -> int:
    """The baseline: uvicorn as `syncd serve` configures it (syncd/daemon.py), one worker."""
    server = uvicorn.Server(
        uvicorn.Config(
            bare_app(),
            host=HOST,
            port=port,
            lifespan="on",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=2,
            server_header=False,
        )
    )
    server.run()
    return 0


def peer_hooks(directory: Path, watched_url: str) -> Path:
    """adnanh/webhook's hooks.json: the same checks syncd makes of a GitHub push."""
    rules = [
        {
            "match": {
                "type": "payload-hmac-sha256",
                "secret": WEBHOOK_SECRET,
                "parameter": {"source": "header", "name": "X-Hub-Signature-256"},
            }
        },
        {
            "match": {
                "type": "value",
                "value": "refs/heads/main",
                "parameter": {"source": "payload", "name": "ref"},
            }
        },
        {
            "match": {
                "type": "value",
                "value": watched_url,
                "parameter": {"source": "payload", "name": "repository.clone_url"},
            }
        },
    ]
    hook = {
        "id": HOOK_PATH.rsplit("/", 1)[1],
        "execute-command": shutil.which("true") or "/bin/true",
        "success-http-response-code": 202,
        "trigger-rule-mismatch-http-response-code": 202,
        "trigger-rule": {"and": rules},
    }
    path = directory / "hooks.json"
    path.write_text(json.dumps([hook], indent=2))
    return path


def start_peer(directory: Path, watched_url: str, port: int) -> subprocess.Popen[bytes] | None:
    """adnanh/webhook on loopback, serving /hooks/github; None when it is not installed."""
    binary = shutil.which("webhook")
    if binary is None:
        return None
    return subprocess.Popen(
        [
            binary,
            "-hooks",
            str(peer_hooks(directory, watched_url)),
            "-ip",
            HOST,
            "-port",
            str(port),
            "-urlprefix",
            HOOK_PATH.strip("/").rsplit("/", 1)[0],
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )


def lua_script(directory: Path, url: str) -> Path:
    """The wrk script: GitHub's push for `url` (a repository no workspace watches), signed."""
    headers, body = github_push(url, "f" * 40, WEBHOOK_SECRET, added=["README.md"])
    headers.pop("X-GitHub-Delivery")
    text = body.decode()
    if "]==]" in text:
        raise ValueError("the body cannot be quoted in Lua")
    lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    path = directory / "signed_push.lua"
    path.write_text(LUA % {"body": text, "headers": lines, "path": HOOK_PATH})
    return path


def check_answer(base_url: str, url: str, peer: bool = False) -> None:
    """One request as wrk sends it must be answered 202 with nothing matched (by the peer: 202,
    its answer when the rules are not satisfied)."""
    headers, body = github_push(
        url, "f" * 40, WEBHOOK_SECRET, added=["README.md"], delivery=uuid.uuid4().hex
    )
    answer = httpx.post(base_url + HOOK_PATH, content=body, headers=headers, timeout=10)
    if answer.status_code != 202 or (not peer and answer.json().get("matched") != []):
        raise RuntimeError(f"{base_url}{HOOK_PATH} answered {answer.status_code}: {answer.text}")


def wrk(base_url: str, script: Path, seconds: int, threads: int) -> tuple[float, int, int]:
    """(requests a second, requests, non-2xx answers) from one wrk run."""
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{CONNECTIONS}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            base_url,
            "--",
            uuid.uuid4().hex[:12],
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    if out.returncode != 0:
        raise RuntimeError(f"wrk exited {out.returncode}: {out.stderr or out.stdout}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    total = re.search(r"(\d+) requests in", out.stdout)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    errors = re.search(r"Socket errors: (.*)", out.stdout)
    if rate is None or total is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out.stdout}")
    if errors:
        print(f"wrk socket errors against {base_url}: {errors.group(1)}", file=sys.stderr)
    return float(rate.group(1)), int(total.group(1)), int(bad.group(1)) if bad else 0


def wait_listening(base_url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the bare server exited {process.returncode}")
        try:
            httpx.get(base_url + "/", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise TimeoutError(f"the bare server at {base_url} did not listen within {timeout:.0f} s")


def webhook_counts(client: httpx.Client) -> dict[str, float]:
    """syncd_webhook_requests_total for github, by result, from /metrics."""
    counts: dict[str, float] = {}
    for line in client.get("/metrics").text.splitlines():
        m = re.match(r"syncd_webhook_requests_total\{(.*)\} ([\d.e+]+)$", line)
        if m and 'provider="github"' in m.group(1):
            result = re.search(r'result="([^"]+)"', m.group(1))
            if result:
                counts[result.group(1)] = float(m.group(2))
    return counts


@dataclass(frozen=True)
class Measured:
    rates: dict[str, list[float]]  # requests a second a round: syncd, single, bare, peer
    cpu_per_request: dict[str, float]  # µs of CPU a request, over all rounds, by server
    syncd_total: int  # requests wrk completed against syncd
    bad: int  # non-2xx answers, all servers
    results: dict[str, int]  # syncd's own count of the webhooks, by result


def cpu_times(pids: list[int]) -> dict[int, float]:
    """User and system CPU seconds of each of these processes so far (/proc/PID/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    times = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone
        times[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return times


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds between two readings, of the processes in both (an intake process that
    exited in between is left out, not counted as negative time)."""
    return sum(after[pid] - before[pid] for pid in before.keys() & after.keys())


def process_tree(pid: int) -> list[int]:
    """The process and its children (a daemon's intake processes)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [pid, *(int(c) for c in f.read().split())]
    except OSError:
        return [pid]


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    if process is None:
        return
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def measure(seconds: int, rounds: int, threads: int) -> Measured:
    with temp_git_server() as (server, tmp):
        url, tree = make_repo(server, tmp, "watched", 10)
        unmatched = server.url("somebody-else")  # no workspace watches it
        script = lua_script(tmp, unmatched)
        bare_port, peer_port = free_port(), free_port()
        bare_url, peer_url = f"http://{HOST}:{bare_port}", f"http://{HOST}:{peer_port}"
        bare = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--bare-server", str(bare_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        peer = start_peer(tmp, url, peer_port)
        try:
            ws = [workspace(WS, url, server)]
            fronted = {"intake_workers": INTAKE_WORKERS}
            with (
                ServeProcess.start(tmp / "syncd", ws, server, server_options=fronted) as daemon,
                ServeProcess.start(tmp / "single", ws, server) as single,
            ):
                for d in (daemon, single):
                    d.wait_ready(60)
                    d.wait_all_applied(1, tree.head(), timeout=60)
                wait_listening(bare_url, bare)
                targets = [("bare", bare_url), ("syncd", daemon.url), ("single", single.url)]
                pids = {"bare": bare.pid, "syncd": daemon.process.pid, "single": single.process.pid}
                if peer is not None:
                    wait_listening(peer_url, peer)
                    targets.insert(1, ("peer", peer_url))
                    pids["peer"] = peer.pid
                for name, target in targets:
                    check_answer(target, unmatched, peer=name == "peer")
                    wrk(target, script, 1, threads)  # warm-up, not counted
                metrics = daemon.client()
                before = webhook_counts(metrics)
                rates: dict[str, list[float]] = {name: [] for name, _ in targets}
                cpu = dict.fromkeys(pids, 0.0)
                requests = dict.fromkeys(pids, 0)
                syncd_total, bad = 0, 0
                for _ in range(rounds):
                    for name, target in targets:
                        procs = process_tree(pids[name])
                        before_cpu = cpu_times(procs)
                        rate, n, nbad = wrk(target, script, seconds, threads)
                        cpu[name] += cpu_used(before_cpu, cpu_times(procs))
                        requests[name] += n
                        rates[name].append(rate)
                        bad += nbad
                        syncd_total += n if name == "syncd" else 0
                time.sleep(1.5)  # intake processes report their counts once a second
                after = webhook_counts(metrics)
        finally:
            stop_process(bare)
            stop_process(peer)
        results = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
        counted = {k: int(v) for k, v in sorted(results.items()) if v}
        per_request = {k: cpu[k] / requests[k] * 1e6 for k in cpu if requests[k]}
        return Measured(rates, per_request, syncd_total, bad, counted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s runs, 2 rounds")
    parser.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_server:
        return run_bare_server(args.bare_server)
    seconds, rounds = (2, 2) if args.quick else (5, 5)
    threads = max(1, min(4, (os.cpu_count() or 2) - 1))
    print(
        f"# webhook intake ({'quick' if args.quick else 'full'}): signed GitHub pushes for an"
        f" unmatched repository, `wrk -t{threads} -c{CONNECTIONS} -d{seconds}s`, {rounds}"
        f" round(s) against syncd, {PEER} and a bare Starlette endpoint\n"
    )
    scenario = "webhook intake: signed GitHub pushes a second, unmatched"
    try:
        m = measure(seconds, rounds, threads)
    except Exception as e:
        traceback.print_exc()
        print(markdown_table([]) + "\n" + failed_row(scenario, e))
        return 0
    syncd_rates, bare_rates, single_rates = m.rates["syncd"], m.rates["bare"], m.rates["single"]
    peer_rates = m.rates.get("peer", [])
    fronted = f"syncd with {INTAKE_WORKERS} intake process{'es' if INTAKE_WORKERS > 1 else ''}"
    rows = []
    if peer_rates:
        rows.append(
            Figure(
                f"{scenario}, {fronted} (baseline: {PEER})",
                median(syncd_rates),
                "req/s",
                median(peer_rates),
                at_least=GOAL_PEER_RATIO,
            )
        )
    rows += [
        Figure(
            f"{scenario}, syncd in one process (baseline: bare Starlette, one process)",
            median(single_rates),
            "req/s",
            median(bare_rates),
            at_least=GOAL_RATIO,
        ),
        Figure(
            f"webhook intake, {fronted} (baseline: syncd in one process; for information)",
            median(syncd_rates),
            "req/s",
            median(single_rates),
        ),
    ]
    print(figures_table(rows))
    peer_text = (
        f"{PEER} {', '.join(f'{r:,.0f}' for r in peer_rates)}"
        if peer_rates
        else f"{PEER} not measured: `webhook` is not installed (apt-get install webhook)"
    )
    print(
        f"\nrates a round: {fronted} {', '.join(f'{r:,.0f}' for r in syncd_rates)}; {peer_text};"
        f" bare {', '.join(f'{r:,.0f}' for r in bare_rates)}; syncd in one process"
        f" {', '.join(f'{r:,.0f}' for r in single_rates)} req/s; non-2xx answers {m.bad};"
        f" syncd's own count of these webhooks by result: {m.results}"
        f" (wrk completed {m.syncd_total:,})"
    )
    names = {"syncd": fronted, "peer": PEER, "bare": "bare", "single": "syncd in one process"}
    print(
        "CPU a request: "
        + "; ".join(f"{names[k]} {v:.1f} µs" for k, v in m.cpu_per_request.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
