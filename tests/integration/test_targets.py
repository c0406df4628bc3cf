"""Chat and webhook targets through apprise, against a real HTTP receiver on loopback, with the
real digest (ticks and loop) and a real SQLite store file."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from syncd.config import Config, load_config
from syncd.core.errors import ConfigError
from syncd.core.model import Run, RunResult, SyncState, Trigger
from syncd.core.retry import Policy
from syncd.notify.digester import STATE_KEY, Digester
from syncd.ops.logs import register_secrets
from syncd.ops.metrics import Metrics
from syncd.store import SqliteStore

T0 = 1_700_000_000.0
PROD, DEV = "12345", "678"
HOOK_TOKEN = "hook-token-5f0e3a9c"  # a path part of the target's URL: a secret


class Receiver:
    """An HTTP server that keeps the JSON bodies posted to it and can fail on purpose."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.failures = 0  # answer 500 to this many more posts
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.attempts += 1
                if receiver.failures > 0:
                    receiver.failures -= 1
                    self.send_response(500)
                else:
                    receiver.posts.append((self.path, json.loads(body)))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"json://127.0.0.1:{self.port}/{name}/{HOOK_TOKEN}"

    def to(self, name: str) -> list[dict[str, Any]]:
        return [doc for path, doc in self.posts if path.startswith(f"/{name}/")]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


def write_config(
    tmp: Path, targets: list[dict[str, Any]], environ: dict[str, str], interval: str = "15m"
) -> Config:
    doc = {
        "state_dir": str(tmp / "state"),
        "notifications": {"interval": interval, "targets": targets},
        "workspaces": [
            {
                "id": PROD,
                "name": "prod",
                "tags": ["live"],
                "source": {"url": "https://g.example/p.git"},
            },
            {"id": DEV, "name": "dev", "source": {"url": "https://g.example/d.git"}},
        ],
    }
    path = tmp / "syncd.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_config(path, environ=environ)


def two_targets(tmp: Path, receiver: Receiver, interval: str = "15m") -> Config:
    """`chat` watches every workspace; `oncall` only those tagged live (prod)."""
    targets: list[dict[str, Any]] = [
        {"name": "chat", "url_env": "CHAT_URL"},
        {"name": "oncall", "url_file": str(tmp / "oncall.url"), "tags": ["live"]},
    ]
    (tmp / "oncall.url").write_text(receiver.url("oncall") + "\n")
    return write_config(tmp, targets, {"CHAT_URL": receiver.url("chat")}, interval)


def record(store: SqliteStore, ws: str, result: RunResult, at: float, error: str = "") -> None:
    error_or_none = (error or f"sync of {ws} failed") if result is RunResult.FAILED else None
    run = Run(
        uuid.uuid4().hex, ws, Trigger.POLL, "ab" * 20, result, at - 1, at, error=error_or_none
    )
    store.record_run(run, SyncState(ws))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "syncd.db")
    yield s
    s.close()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def sent(metrics: Metrics, result: str) -> float:
    labels = {"result": result, "channel": "target"}
    return metrics.registry.get_sample_value("syncd_notifications_sent_total", labels) or 0.0


def digester(store: SqliteStore, config: Config, metrics: Metrics, clock: Clock) -> Digester:
    quick = Policy(base=0.01, cap=0.01, attempts=3)
    d = Digester(store, lambda: config, metrics, clock=clock, target_policy=quick)
    assert d.tick() == 0  # the first tick only starts the bookkeeping
    return d


def test_one_message_per_target_per_tick_then_recovery(
    tmp_path: Path, receiver: Receiver, store: SqliteStore, metrics: Metrics
) -> None:
    clock = Clock()
    config = two_targets(tmp_path, receiver)
    d = digester(store, config, metrics, clock)
    record(store, PROD, RunResult.FAILED, T0 + 10, "bad step file a.step.json")
    record(store, PROD, RunResult.FAILED, T0 + 20, "bad step file b.step.json")
    record(store, DEV, RunResult.FAILED, T0 + 30, "fetch failed: timeout")
    clock.now += 900
    assert d.tick() == 2
    [chat] = receiver.to("chat")
    [oncall] = receiver.to("oncall")
    assert chat["type"] == "failure" and chat["title"].startswith("syncd: 2 workspaces failing")
    assert "a.step.json" in chat["message"] and "fetch failed" in chat["message"]
    assert "prod" in oncall["title"] and "dev" not in oncall["title"]
    assert "fetch failed" not in oncall["message"]
    assert sent(metrics, "ok") == 2 and sent(metrics, "error") == 0

    # Nothing new: no message.
    clock.now += 900
    assert d.tick() == 0 and len(receiver.posts) == 2
    # prod recovers: one short note to each target that watches it.
    record(store, PROD, RunResult.SUCCEEDED, clock.now + 100)
    clock.now += 900
    assert d.tick() == 2
    assert receiver.to("chat")[-1]["type"] == "success"
    assert "recovered" in receiver.to("oncall")[-1]["title"]

    # The cursors are kept in the store: a restarted digester sends nothing again.
    state = json.loads(store.get_meta(STATE_KEY) or "{}")
    assert {"target:chat", "target:oncall"} <= state["recipients"].keys()
    clock.now += 900
    again = Digester(store, lambda: config, metrics, clock=clock)
    assert again.tick() == 0 and len(receiver.posts) == 4


def test_a_failing_target_is_retried_counted_and_catches_up(
    tmp_path: Path,
    receiver: Receiver,
    store: SqliteStore,
    metrics: Metrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    config = two_targets(tmp_path, receiver)
    register_secrets([receiver.url("chat"), receiver.url("oncall")])
    d = digester(store, config, metrics, clock)
    record(store, DEV, RunResult.FAILED, T0 + 10, "dev is broken")
    clock.now += 900
    # Three attempts under the test's policy: two 500s, then it is taken.
    receiver.failures = 2
    caplog.set_level(logging.DEBUG)
    assert d.tick() == 1 and receiver.attempts == 3 and len(receiver.to("chat")) == 1
    retries = [r for r in caplog.records if r.getMessage() == "notification retry"]
    assert len(retries) == 2 and sent(metrics, "ok") == 1

    # Down for a whole tick: counted, cursor kept, sent at the next tick.
    record(store, DEV, RunResult.FAILED, clock.now + 100, "dev is still broken")
    clock.now += 900
    receiver.failures = 3
    assert d.tick() == 0 and sent(metrics, "error") == 1
    assert any(r.getMessage() == "notification not sent" for r in caplog.records)
    clock.now += 900
    assert d.tick() == 1 and "still broken" in receiver.to("chat")[-1]["message"]
    # The URL (its token) is in no log record, nor what apprise logged.
    assert HOOK_TOKEN not in caplog.text
    for record_ in caplog.records:
        assert HOOK_TOKEN not in str(getattr(record_, "syncd_fields", ""))


def test_an_unreachable_target_never_blocks_the_others(
    tmp_path: Path, receiver: Receiver, store: SqliteStore, metrics: Metrics
) -> None:
    clock = Clock()
    targets = [
        {"name": "gone", "url_env": "GONE_URL"},
        {"name": "chat", "url_env": "CHAT_URL"},
    ]
    # A closed port: the connection is refused at once.
    closed = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = closed.server_address[1]
    closed.server_close()
    environ = {"GONE_URL": f"json://127.0.0.1:{port}/x", "CHAT_URL": receiver.url("chat")}
    config = write_config(tmp_path, targets, environ)
    d = digester(store, config, metrics, clock)
    record(store, PROD, RunResult.FAILED, T0 + 10)
    clock.now += 900
    assert d.tick() == 1 and len(receiver.to("chat")) == 1
    assert sent(metrics, "error") == 1 and sent(metrics, "ok") == 1


def test_the_loop_posts_each_interval(
    tmp_path: Path, receiver: Receiver, store: SqliteStore, metrics: Metrics
) -> None:
    config = two_targets(tmp_path, receiver, interval="500ms")

    async def wait_for_posts(n: int) -> None:
        deadline = time.monotonic() + 10
        while len(receiver.to("chat")) < n:
            assert time.monotonic() < deadline, f"no message {n}"
            await asyncio.sleep(0.02)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(Digester(store, lambda: config, metrics).run(stop))
        await asyncio.sleep(0.05)
        record(store, DEV, RunResult.FAILED, time.time(), "first failure")
        await wait_for_posts(1)
        record(store, DEV, RunResult.FAILED, time.time(), "second failure")
        await wait_for_posts(2)
        stop.set()
        await asyncio.wait_for(task, timeout=5)

    asyncio.run(main())
    first, second = receiver.to("chat")[:2]
    assert "first failure" in first["message"] and "second failure" not in first["message"]
    assert "second failure" in second["message"]
    assert receiver.to("oncall") == []  # dev is not tagged live


@pytest.mark.parametrize(
    "url",
    ["not a url", "nosuchservice://abc/def", "slack://", "json://"],
)
def test_a_bad_target_url_is_named_at_config_check_and_not_shown(tmp_path: Path, url: str) -> None:
    targets = [{"name": "chat", "url_env": "CHAT_URL"}]
    with pytest.raises(ConfigError) as e:
        write_config(tmp_path, targets, {"CHAT_URL": url})
    text = str(e.value)
    assert "notifications.targets[0]" in text and "url_env" in text and "not shown" in text
    if len(url) > 8:
        assert url not in text


def test_target_config_problems(tmp_path: Path, receiver: Receiver) -> None:
    environ = {"CHAT_URL": receiver.url("chat")}
    targets = [
        {"name": "plain", "url": receiver.url("chat")},  # secrets never sit in the file
        {"name": "chat", "url_env": "CHAT_URL"},
        {"name": "chat", "url_env": "CHAT_URL"},
        {"name": "other"},
    ]
    with pytest.raises(ConfigError) as e:
        write_config(tmp_path, targets, environ)
    text = str(e.value)
    assert HOOK_TOKEN not in text and "secrets never sit in the file" in text
    assert "duplicate target name" in text and "needs url_env or url_file" in text
    with pytest.raises(ConfigError) as e:
        write_config(
            tmp_path, [{"name": "chat", "url_env": "CHAT_URL", "workspaces": ["nope"]}], environ
        )
    assert 'targets[0] (name "chat").workspaces[0]: no workspace "nope"' in str(e.value)
