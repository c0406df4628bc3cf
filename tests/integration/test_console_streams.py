"""The console's live streams (/ui/events) under a real uvicorn, in process, with small limits:
a session past its limit loses its oldest stream (and that tab does not come back to take a
place from another), past the limit in all a new stream is answered 429 with Retry-After while
the API and the pages still answer, and streams end when their client goes or syncd stops."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from syncd.app import Parts, build
from syncd.config import load_config
from syncd.http.console import mount_console, streams
from syncd.http.routes import create_app
from tests.support import (
    API_TOKEN,
    READ_TOKEN,
    GitServer,
    WorkTree,
    daemon_env,
    workspace,
    write_config,
    write_step,
)

WAIT = 10.0
PER_SESSION = 2
TOTAL = 3


@dataclass
class Console:
    url: str
    parts: Parts


@pytest.fixture
def console(
    tmp_path: Path,
    git_server: GitServer,
    repo: tuple[str, WorkTree],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Console]:
    # Small limits, set before the console is made (it reads them then).
    monkeypatch.setattr(streams, "PER_SESSION", PER_SESSION)
    monkeypatch.setattr(streams, "TOTAL", TOTAL)
    monkeypatch.setattr(streams, "EVENT_INTERVAL", 0.2)
    url, tree = repo
    write_step(tree, "plain/one")
    tree.commit("a step")
    tree.push()
    workspaces = [
        workspace("man", url, git_server, "manual"),
        workspace("auto", url, git_server, "automatic"),
    ]
    parts = build(load_config(write_config(tmp_path, workspaces), daemon_env(git_server)))

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        await parts.scheduler.start(startup_sync=False)
        yield
        await parts.scheduler.stop()

    app = create_app(parts, lifespan=lifespan)
    mount_console(app, parts)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test-console", daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Console(f"http://127.0.0.1:{port}", parts)
    finally:
        parts.closing = True  # as the first stop signal does: open streams end
        server.should_exit = True
        thread.join(WAIT + 2)
        parts.close()
        assert not thread.is_alive(), "uvicorn did not stop"


async def signed_in(console: Console, token: str = API_TOKEN) -> httpx.AsyncClient:
    """A client with a console session of its own (a browser, with its tabs)."""
    client = httpx.AsyncClient(base_url=console.url, timeout=httpx.Timeout(WAIT, read=None))
    form = (await client.get("/ui/login")).text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf
    answer = await client.post("/ui/login", data={"token": token, "csrf": csrf.group(1)})
    assert answer.status_code == 303
    return client


@dataclass
class Tab:
    """One page's EventSource: its answer, the lines it read, and whether its stream ended."""

    answer: httpx.Response
    lines: list[str] = field(default_factory=list)
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    rows: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def last_event_id(self) -> str:
        return next(line[4:] for line in self.lines if line.startswith("id: "))

    async def read(self) -> None:
        try:
            async for line in self.answer.aiter_lines():
                self.lines.append(line)
                if line.startswith("retry: "):  # the stream's first line
                    self.opened.set()
                if line.startswith("data: "):
                    self.rows.set()
        except httpx.HTTPError:
            pass
        self.ended.set()

    async def close(self) -> None:
        """The tab is closed: the browser drops the connection."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.answer.aclose()


async def open_tab(client: httpx.AsyncClient, last_event_id: str | None = None) -> Tab:
    """A page opens its stream (or EventSource reconnects one, with Last-Event-ID); returns
    once the stream has started, or with the refusal."""
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    answer = await client.send(
        client.build_request("GET", "/ui/events", headers=headers), stream=True
    )
    tab = Tab(answer)
    if answer.status_code != 200:
        await answer.aread()
        await answer.aclose()
        tab.ended.set()
        return tab
    tab.task = asyncio.create_task(tab.read())
    await asyncio.wait_for(tab.opened.wait(), WAIT)
    return tab


async def ends(tab: Tab) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(tab.ended.wait(), WAIT)
    return tab.ended.is_set()


async def until_opened(client: httpx.AsyncClient, last_event_id: str | None = None) -> Tab:
    """Opens a stream, trying again while the server has not yet seen a closed one go."""
    deadline = time.monotonic() + WAIT
    while True:
        tab = await open_tab(client, last_event_id)
        if tab.answer.status_code == 200 or time.monotonic() > deadline:
            return tab
        await asyncio.sleep(0.05)


def test_a_session_past_its_limit_ends_its_oldest_stream_without_ping_pong(
    console: Console,
) -> None:
    async def main() -> None:
        browser = await signed_in(console)
        first = await open_tab(browser)
        second = await open_tab(browser)
        await asyncio.wait_for(first.rows.wait(), WAIT)  # it sends rows while it is open
        third = await open_tab(browser)  # one tab more than the session may keep

        assert await ends(first), "the oldest stream goes on"
        assert first.lines[-2:] == [streams.DROPPED.strip(), ""]
        assert not second.ended.is_set() and not third.ended.is_set()

        # The first tab's EventSource reconnects: it must not take a place from another tab
        # (which would reconnect and take one back, and so on). 204: EventSource stops.
        again = await open_tab(browser, first.last_event_id)
        assert again.answer.status_code == 204
        await asyncio.sleep(0.5)
        assert not second.ended.is_set() and not third.ended.is_set()

        # A tab is closed: its stream ends on the server, and the place is free again.
        await second.close()
        back = await until_opened(browser, first.last_event_id)
        assert back.answer.status_code == 200
        assert not third.ended.is_set()
        await asyncio.wait_for(back.rows.wait(), WAIT)
        for tab in (third, back):
            await tab.close()
        await browser.aclose()

    asyncio.run(main())


def test_past_the_limit_in_all_a_new_stream_is_429_and_the_rest_answers(
    console: Console,
) -> None:
    async def main() -> None:
        one, two, three = [await signed_in(console, READ_TOKEN) for _ in range(3)]
        held = [await open_tab(one), await open_tab(one), await open_tab(two)]  # TOTAL

        refused = await open_tab(three)
        assert refused.answer.status_code == 429
        assert refused.answer.headers["retry-after"] == str(streams.RETRY_AFTER_SECONDS)
        assert refused.answer.headers["content-type"].startswith("text/plain")
        assert f"{TOTAL} live streams are already open" in refused.answer.text

        # Meanwhile the API, the pages and the open streams go on.
        api = await three.get(
            "/api/v1/workspaces", headers={"Authorization": f"Bearer {API_TOKEN}"}
        )
        assert api.status_code == 200
        assert {w["id"] for w in api.json()["workspaces"]} == {"man", "auto"}
        assert (await three.get("/ui/")).status_code == 200
        for tab in held:
            await asyncio.wait_for(tab.rows.wait(), WAIT)
            assert not tab.ended.is_set()

        # A full session still opens a newer page: it takes its own oldest stream's place.
        newest = await open_tab(one)
        assert newest.answer.status_code == 200 and await ends(held[0])

        # A tab closes anywhere: a new stream finds a place.
        await held[2].close()
        late = await until_opened(three)
        assert late.answer.status_code == 200
        for tab in (held[1], newest, late):
            await tab.close()
        for client in (one, two, three):
            await client.aclose()

    asyncio.run(main())


def test_open_streams_end_when_syncd_stops(console: Console) -> None:
    async def main() -> None:
        browser = await signed_in(console)
        tabs = [await open_tab(browser) for _ in range(PER_SESSION)]
        console.parts.closing = True  # the first stop signal sets it
        for tab in tabs:
            assert await ends(tab), "a stream outlived the stop"
        await browser.aclose()

    asyncio.run(main())


def test_signing_out_ends_the_sessions_streams(console: Console) -> None:
    async def main() -> None:
        browser, other = await signed_in(console), await signed_in(console)
        mine, theirs = await open_tab(browser), await open_tab(other)
        page = (await browser.get("/ui/")).text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf
        answer = await browser.post("/ui/logout", data={"csrf": csrf.group(1)})
        assert answer.status_code == 303
        assert await ends(mine), "a signed-out session's stream goes on"
        assert not theirs.ended.is_set()
        await theirs.close()
        for client in (browser, other):
            await client.aclose()

    asyncio.run(main())
