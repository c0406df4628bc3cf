"""The CLI in client mode reads the workspace list a page at a time: it follows `next_cursor`
until the server gives none, and refuses a server whose cursors lead nowhere or never end,
after a bounded number of pages."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import pytest

from syncd import __version__
from syncd.cli import client as client_module
from syncd.cli.apiclient import ApiClient, BadServer
from syncd.cli.client import RemoteBackend
from syncd.service.paging import MAX_LIMIT


@dataclass
class Pages(ApiClient):
    """A server's answers to the list, by cursor (None: the first page); what was asked."""

    pages: dict[str | None, dict[str, Any]] = field(default_factory=dict)
    asked: list[dict[str, str]] = field(default_factory=list)

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        auth: bool = True,
        holds: float = 0.0,
    ) -> dict[str, Any]:
        if path == "/openapi.json":
            return {"openapi": "3.1.0", "info": {"version": __version__}}
        where, _, query = path.partition("?")
        assert method == "GET" and where == "/api/v1/workspaces", path
        params = dict(urllib.parse.parse_qsl(query))
        self.asked.append(params)
        return self.pages[params.get("cursor")]


def serving(pages: dict[str | None, dict[str, Any]]) -> tuple[RemoteBackend, Pages]:
    api = Pages("http://127.0.0.1:9", token="t0ken-of-the-test", pages=pages)
    return RemoteBackend(api), api


def views(*ids: str) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"ws {i}"} for i in ids]


def test_every_page_is_read_in_turn() -> None:
    backend, api = serving(
        {
            None: {"workspaces": views("a", "b"), "next_cursor": "c1"},
            "c1": {"workspaces": views("c", "d"), "next_cursor": "c2"},
            "c2": {"workspaces": views("e"), "next_cursor": None},
        }
    )
    assert [v["id"] for v in backend.views(None)] == ["a", "b", "c", "d", "e"]
    assert backend.workspace_ids() == ["a", "b", "c", "d", "e"]
    assert api.asked[:3] == [
        {"limit": str(MAX_LIMIT)},
        {"limit": str(MAX_LIMIT), "cursor": "c1"},
        {"limit": str(MAX_LIMIT), "cursor": "c2"},
    ]


def test_a_server_without_pages_answers_in_one() -> None:
    """A server that ignores `limit` (the whole list, no `next_cursor` at all): one request."""
    backend, api = serving({None: {"workspaces": views("a", "b")}})
    assert [v["id"] for v in backend.views(None)] == ["a", "b"]
    assert len(api.asked) == 1


LOOP = {"workspaces": [], "next_cursor": "same"}
NOWHERE: list[dict[str | None, Any]] = [
    {None: LOOP, "same": LOOP},  # the same cursor again
    {None: {"workspaces": [], "next_cursor": 7}},
    {None: {"workspaces": [], "next_cursor": ""}},
    {None: {"workspaces": "all of them", "next_cursor": None}},
]


@pytest.mark.parametrize("following", NOWHERE)
def test_cursors_that_lead_nowhere_are_refused(following: dict[str | None, Any]) -> None:
    backend, _ = serving(following)
    with pytest.raises(BadServer):
        backend.views(None)


def test_a_walk_that_never_ends_stops_after_a_bounded_number_of_pages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_module, "MAX_PAGES", 5)
    endless: dict[str | None, dict[str, Any]] = {None: {"workspaces": [], "next_cursor": "p1"}}
    for n in range(1, 10):
        endless[f"p{n}"] = {"workspaces": views(f"w{n}"), "next_cursor": f"p{n + 1}"}
    backend, api = serving(endless)
    with pytest.raises(BadServer, match="more than 5 pages"):
        backend.views(None)
    assert len(api.asked) == 5
