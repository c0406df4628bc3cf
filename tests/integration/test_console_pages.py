"""The console's list in pages (syncd.service.paging's rules, as the API's): 100 rows a page by
id, links to the next page and back to the first carrying the filters, server-side filters by
tag, status and health, a 400 for a parameter that cannot be used; and its live stream watches
only the page's rows, reads only what open streams watch, and sends only what the session may
read. Over a real SQLite store, in process; the workspaces point at a remote nobody listens on.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from syncd.app import Parts, build
from syncd.config import WorkspaceConfig, load_config
from syncd.core.access import Access
from syncd.core.model import Status, SyncState
from syncd.http.console import mount_console, streams
from syncd.http.console.streams import LiveUpdates
from syncd.http.routes import create_app
from syncd.service import paging
from syncd.service.audit import Actor
from tests.support.console import sign_in

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

FAR_URL = "https://127.0.0.1:9/x.git"
COUNT = 250
ALL_TOKEN = "console-pages-all-0123456789"
ODD_TOKEN = "console-pages-odd-0123456789"


def ws_id(n: int) -> str:
    return f"w{n:03d}"


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parts]:
    tmp: Path = tmp_path_factory.mktemp("console-pages")
    source = {"url": FAR_URL, "branch": "main", "path": "export/steps"}
    doc = {
        "state_dir": str(tmp / "state"),
        "tokens": [
            {"name": "all", "token_env": "T_ALL", "scopes": ["read"]},
            {"name": "odd", "token_env": "T_ODD", "scopes": ["read"], "workspaces": ["tag:odd"]},
        ],
        "workspaces": [
            {
                "id": ws_id(n),
                "name": f"workspace {n}",
                "tags": ["odd" if n % 2 else "even"],
                "mode": "manual",
                "poll_interval": 0,
                "source": source,
            }
            for n in reversed(range(COUNT))  # config order is not id order
        ],
    }
    (tmp / "syncd.yaml").write_text(yaml.safe_dump(doc))
    built = build(load_config(tmp / "syncd.yaml", {"T_ALL": ALL_TOKEN, "T_ODD": ODD_TOKEN}))
    for n in range(0, COUNT, 10):
        built.core.store.save_state(SyncState(ws_id(n), Status.OUT_OF_SYNC))
    yield built
    built.close()


@pytest.fixture
def client(parts: Parts) -> Iterator[TestClient]:
    app = create_app(parts)
    mount_console(app, parts)
    with TestClient(app, follow_redirects=False) as c:
        yield c


def rows(page: str) -> list[str]:
    return re.findall(r'<tr data-ws="([^"]+)">', page)


def link(page: str, text: str) -> str | None:
    found = re.search(rf'<a (?:rel="next" )?href="([^"]+)">{text}</a>', page)
    return html.unescape(found.group(1)) if found else None


def watched(page: str) -> list[str]:
    found = re.search(r'data-live="/ui/events\?ws=([^"]*)"', page)
    assert found, page
    return [i for i in html.unescape(found.group(1)).replace("%2C", ",").split(",") if i]


def test_the_list_pages_by_id_with_next_and_first_links(client: TestClient) -> None:
    sign_in(client, ALL_TOKEN)
    seen: list[str] = []
    page = client.get("/ui/").text
    assert link(page, "First page") is None
    for _ in range(5):
        shown = rows(page)
        assert watched(page) == shown  # the live stream watches the rows shown
        seen += shown
        following = link(page, "Next page")
        if following is None:
            break
        assert "cursor=" in following
        page = client.get(following).text
        assert link(page, "First page") == "/ui/"
    assert seen == [ws_id(n) for n in range(COUNT)]  # each once, by id, 100 a page


def test_filters_are_applied_on_the_server_and_kept_across_pages(client: TestClient) -> None:
    sign_in(client, ALL_TOKEN)
    page = client.get("/ui/", params={"status": "OutOfSync", "limit": "10"}).text
    assert rows(page) == [ws_id(n) for n in range(0, 100, 10)]
    assert '<option value="OutOfSync" selected>' in page
    following = link(page, "Next page")
    assert following is not None and "status=OutOfSync" in following and "limit=10" in following
    second = client.get(following).text
    assert rows(second) == [ws_id(n) for n in range(100, 200, 10)]
    following = link(second, "Next page")
    assert following is not None
    last = client.get(following).text
    assert rows(last) == [ws_id(n) for n in range(200, COUNT, 10)]
    assert link(last, "Next page") is None
    assert link(last, "First page") == "/ui/?status=OutOfSync&limit=10"
    odd = client.get("/ui/", params={"tag": "odd", "health": "Healthy"}).text
    assert rows(odd) == [ws_id(n) for n in range(1, 200, 2)]


def test_a_session_limited_to_some_workspaces_pages_through_those_alone(
    client: TestClient,
) -> None:
    sign_in(client, ODD_TOKEN)
    seen, page = [], client.get("/ui/").text
    for _ in range(5):
        seen += rows(page)
        following = link(page, "Next page")
        if following is None:
            break
        page = client.get(following).text
    assert seen == [ws_id(n) for n in range(1, COUNT, 2)]


@pytest.mark.parametrize(
    "query",
    [{"limit": "0"}, {"limit": "101"}, {"cursor": "%%%"}, {"status": "Green"}, {"health": "x"}],
)
def test_a_parameter_that_cannot_be_used_is_a_400_page(
    client: TestClient, query: dict[str, str]
) -> None:
    sign_in(client, ALL_TOKEN)
    answer = client.get("/ui/", params=query)
    assert answer.status_code == 400
    assert f"`{next(iter(query))}`" in html.unescape(answer.text)


def test_a_stream_watches_at_most_a_page(client: TestClient) -> None:
    sign_in(client, ALL_TOKEN)
    many = ",".join(ws_id(n) for n in range(streams.MAX_WATCHED + 1))
    answer = client.get("/ui/events", params={"ws": many})
    assert answer.status_code == 400 and "at most" in answer.text


def test_the_feed_reads_and_a_stream_sends_only_watched_readable_rows(
    parts: Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streams, "EVENT_INTERVAL", 0.05)
    read: list[list[str]] = []
    overviews = parts.workspaces.overviews

    def recording(chosen: list[WorkspaceConfig]) -> list[dict[str, Any]]:
        read.append([w.id for w in chosen])
        return overviews(chosen)

    monkeypatch.setattr(parts.workspaces, "overviews", recording)
    visitor = Actor("odd", "console", odd_access(parts))
    wanted = {ws_id(7), ws_id(201)}

    async def main() -> set[str]:
        # A page's three ids, one of them (an even one) out of the session's reach.
        page = [ws_id(7), ws_id(8), ws_id(201)]
        answer = LiveUpdates(parts).open("s1", lambda: True, page, False, {}, lambda: visitor)
        body: Any = answer.body_iterator
        sent: set[str] = set()
        try:
            async with asyncio.timeout(10):
                while sent != wanted:
                    chunk = await anext(body)
                    text = chunk if isinstance(chunk, str) else bytes(chunk).decode()
                    sent |= {
                        json.loads(line[6:])["id"]
                        for line in text.splitlines()
                        if line.startswith("data: ")
                    }
                    assert sent <= wanted, sent
        finally:
            await body.aclose()
        return sent

    assert asyncio.run(main()) == wanted
    assert read and all(set(ids) <= wanted for ids in read)  # not one row more was read


def test_a_stream_without_ids_watches_the_first_page_the_session_may_read(parts: Parts) -> None:
    visitor = Actor("odd", "console", odd_access(parts))
    assert paging.first_ids(parts.workspaces, visitor) == [ws_id(n) for n in range(1, 200, 2)]


def odd_access(parts: Parts) -> Access:
    return next(t for t in parts.config.tokens if t.name == "odd").access
