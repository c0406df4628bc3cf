"""A page of the workspace list at 10,000 workspaces, against the same page at 100.

    python bench/list_pages.py [--quick]

Starts its own https git server on loopback with 10 remotes and two installed `syncd serve`s
one after the other, with 100 and with 10,000 manual workspaces (--quick: 1,000) dealt over
them, no polling. Once every startup run of a daemon has ended (its log's `sync end` lines),
times `GET /api/v1/workspaces?limit=100` (the first page), a page in the middle (by its
cursor) and the first page filtered by status, 40 times each, and the console's list page
(`/ui/`, signed in by token), 20 times. The median at the large size against the median at
100 is the ratio; the whole list without `limit` at the large size is printed for
information (size and time).
Bar (issue #27): `?limit=100` at 10,000 workspaces at most 1.5 times its time at 100.
Prints a markdown table; always exits 0 (benches do not fail CI).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import httpx
from common import Figure, failed_row, figures_table, make_remotes, spread_workspaces
from common import temp_git_server as git_server
from daemon import API_TOKEN, LogLines, ServeProcess

from syncd.demo.gitserver import GitServer

REMOTES = 10
SMALL = 100
SIZES = {True: 1_000, False: 10_000}
GOAL = 1.5
REPEATS = 40


def timed(client: httpx.Client, path: str, params: dict[str, str], repeats: int) -> float:
    """The median seconds of `repeats` GETs (each must answer 200)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        client.get(path, params=params).raise_for_status()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(count: int, urls: list[str], server: GitServer, tmp: Path) -> dict[str, float]:
    """The figures of one daemon with `count` manual workspaces (seconds; `whole_mb`, MB)."""
    spaces = spread_workspaces(urls, count, server)
    for ws in spaces:
        ws["mode"] = "manual"
    with ServeProcess.start(tmp / f"d{count}", spaces, server) as daemon:
        daemon.wait_ready(300)
        ended = LogLines(daemon.log_path, '"sync end"')
        deadline = time.monotonic() + 600
        while ended.count() < count and time.monotonic() < deadline:
            time.sleep(0.5)
        auth = {"Authorization": f"Bearer {API_TOKEN}"}
        with httpx.Client(base_url=daemon.url, headers=auth, timeout=120) as c:
            first = c.get("/api/v1/workspaces", params={"limit": "100"}).json()
            middle = {"limit": "100", "cursor": middle_cursor(c, count)}
            out = {
                "first": timed(c, "/api/v1/workspaces", {"limit": "100"}, REPEATS),
                "middle": timed(c, "/api/v1/workspaces", middle, REPEATS),
                "status": timed(
                    c, "/api/v1/workspaces", {"limit": "100", "status": "OutOfSync"}, REPEATS
                ),
            }
            assert len(first["workspaces"]) == 100, first
            started = time.perf_counter()
            whole = c.get("/api/v1/workspaces")
            out["whole"], out["whole_mb"] = time.perf_counter() - started, len(whole.content) / 1e6
        with httpx.Client(base_url=daemon.url, timeout=120) as console:
            sign_in(console)
            out["console"] = timed(console, "/ui/", {}, REPEATS // 2)
        return out


def sign_in(client: httpx.Client) -> None:
    """Sign in to the console with the bench's token, as its form does (CSRF, same origin)."""
    form = client.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    if csrf is None:
        raise RuntimeError("the console's sign-in page has no CSRF token")
    answer = client.post(
        "/ui/login",
        data={"token": API_TOKEN, "csrf": csrf.group(1)},
        headers={"sec-fetch-site": "same-origin"},
    )
    if answer.status_code != 303:
        raise RuntimeError(f"console sign-in answered {answer.status_code}")


def middle_cursor(client: httpx.Client, count: int) -> str:
    """The cursor of the page that starts halfway through the list (walked to, by pages)."""
    step = min(500, count // 2)
    params = {"limit": str(step)}
    cursor = ""
    for _ in range(count // 2 // step):
        cursor = client.get("/api/v1/workspaces", params=params).json()["next_cursor"]
        params = {"limit": str(step), "cursor": cursor}
    return cursor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 workspaces, not 10,000")
    args = parser.parse_args(argv)
    large = SIZES[args.quick]
    name = f"workspace list, {large:,} workspaces (baseline: {SMALL})"
    try:
        with git_server() as (server, gtmp), tempfile.TemporaryDirectory() as tmp:
            urls, _tree = make_remotes(server, gtmp, REMOTES, 10)
            small = measure(SMALL, urls, server, Path(tmp))
            big = measure(large, urls, server, Path(tmp))
        rows = [
            Figure(f"{name}: `?limit=100`", big["first"], "s", small["first"], GOAL),
            Figure(f"{name}: a page in the middle, by cursor", big["middle"], "s", small["middle"]),
            Figure(f"{name}: `?limit=100&status=OutOfSync`", big["status"], "s", small["status"]),
            Figure(f"{name}: console list page `/ui/`", big["console"], "s", small["console"]),
            Figure(f"{name}: the whole list, no `limit`", big["whole"], "s", small["whole"]),
        ]
        print(figures_table(rows))
        print(f"\nthe whole list at {large:,} workspaces: {big['whole_mb']:.1f} MB")
    except Exception as e:  # a bench reports, it does not fail CI
        traceback.print_exc()
        print(failed_row(name, e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
