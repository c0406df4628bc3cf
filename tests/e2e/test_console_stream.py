"""The console's live updates without a browser: a signed-in session's event stream sends each
workspace's row, and an open stream does not hold up the daemon's stop."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from pathlib import Path

import httpx

from tests.support import API_TOKEN
from tests.support.daemon import Daemon


def signed_in(d: Daemon) -> httpx.Client:
    client = httpx.Client(base_url=d.url, timeout=10)
    form = client.get("/ui/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf
    answer = client.post("/ui/login", data={"token": API_TOKEN, "csrf": csrf.group(1)})
    assert answer.status_code == 303
    return client


def test_event_stream_and_stop(daemon: Daemon, tmp_path: Path) -> None:
    client = signed_in(daemon)
    rows: dict[str, dict[str, object]] = {}
    ended = threading.Event()

    def listen() -> None:
        try:
            with client.stream("GET", "/ui/events", timeout=30) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                for line in stream.iter_lines():
                    if line.startswith("data: "):
                        row = json.loads(line[6:])
                        rows[row["id"]] = row
        except httpx.HTTPError:
            pass
        ended.set()

    threading.Thread(target=listen, daemon=True).start()
    daemon.wait_until(lambda: set(rows) == {"auto", "manual"}, 20, "a row per workspace")
    assert rows["auto"]["mode"] == "automatic" and "status" in rows["auto"]
    assert API_TOKEN not in json.dumps(rows)

    started = time.monotonic()
    assert daemon.stop(signal.SIGTERM, timeout=15) == 0
    took = time.monotonic() - started
    assert ended.wait(5)
    assert took < 1.9, f"stopping took {took:.1f} s with a console stream open"
