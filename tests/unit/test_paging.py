"""The rules of the workspace list's pages (syncd.service.paging), without I/O: parameters that
cannot be used are refused naming themselves, cursors survive the trip and refuse tampering, and
walking every page gives exactly the filtered list a caller may read, each workspace once, in
id order, reading conditions only for the candidates of the pages."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.config import WorkspaceConfig
from syncd.core.access import Access
from syncd.core.model import Health, Status
from syncd.service import paging
from syncd.service.audit import Actor
from syncd.service.paging import BadParameter, Ordered, Query
from tests.support.fakes import workspace

ID_ALPHABET = "abcXYZ019._-"
ids = st.text(ID_ALPHABET, min_size=1, max_size=12).filter(lambda t: t[0].isalnum())


def ws(ws_id: str, *tags: str) -> WorkspaceConfig:
    return replace(workspace(ws_id), tags=tags)


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "²"}, "limit"),  # a digit to str.isdigit, not to int()
        ({"limit": "1" * 5000}, "limit"),
        ({"limit": "10", "cursor": "not base64!"}, "cursor"),
        ({"cursor": base64.urlsafe_b64encode(b"v2:ws").decode()}, "cursor"),  # another version
        ({"cursor": base64.urlsafe_b64encode(b"\xff\xfe").decode()}, "cursor"),  # not text
        ({"cursor": base64.urlsafe_b64encode(b"v1:").decode()}, "cursor"),  # no id
        ({"cursor": "A" * 300}, "cursor"),
        ({"status": "synced"}, "status"),
        ({"health": "Sick"}, "health"),
    ],
)
def test_a_parameter_that_cannot_be_used_is_named(params: dict[str, str], parameter: str) -> None:
    with pytest.raises(BadParameter) as caught:
        paging.parse(params)
    assert caught.value.parameter == parameter
    assert f"`{parameter}`" in str(caught.value)


def test_without_limit_the_whole_list_and_with_a_cursor_pages_of_the_default() -> None:
    assert paging.parse({}) == Query()
    assert paging.parse({"tag": "", "status": "", "limit": ""}) == Query()  # a form's "any"
    cursor = paging.encode_cursor("ws-7")
    assert paging.parse({"cursor": cursor}) == Query(paging.DEFAULT_LIMIT, "ws-7")
    assert paging.parse({}, default=100, most=100).limit == 100  # the console's page
    with pytest.raises(BadParameter):
        paging.parse({"limit": "101"}, default=100, most=100)
    full = paging.parse({"limit": "500", "tag": "t", "status": "OutOfSync", "health": "Degraded"})
    assert full == Query(500, None, "t", Status.OUT_OF_SYNC, Health.DEGRADED)
    assert full.filters() == {"tag": "t", "status": "OutOfSync", "health": "Degraded"}


@given(ids)
def test_a_cursor_names_its_id_and_is_url_safe(ws_id: str) -> None:
    cursor = paging.encode_cursor(ws_id)
    assert cursor.isascii() and not set(cursor) - set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
    assert paging.decode_cursor(cursor) == ws_id


@given(ids, st.integers(0, 200), st.sampled_from("A-_0z"))
def test_a_tampered_cursor_is_refused_or_only_says_where_to_start(
    ws_id: str, at: int, char: str
) -> None:
    cursor = paging.encode_cursor(ws_id)
    at %= len(cursor)
    changed = cursor[:at] + char + cursor[at + 1 :]
    try:
        named = paging.decode_cursor(changed)
    except BadParameter as e:
        assert e.parameter == "cursor"
    else:  # still a well-formed cursor: it names some id, which only positions a page
        assert named.isprintable() and named


class Conditions:
    """Each workspace's status and health, and which were asked for, batch by batch."""

    def __init__(self, told: Mapping[str, tuple[Status, Health]]) -> None:
        self.told = told
        self.asked: list[list[str]] = []

    def __call__(
        self, batch: Sequence[WorkspaceConfig]
    ) -> Mapping[str, tuple[Status, Health | None]]:
        self.asked.append([w.id for w in batch])
        return {w.id: self.told[w.id] for w in batch}


def walk(
    workspaces: Sequence[WorkspaceConfig],
    access: Access,
    query: Query,
    conditions: Conditions,
    max_pages: int = 1000,
) -> list[list[str]]:
    """Every page's ids, following next cursors as a client does (through their text)."""
    ordered, pages = Ordered(), []
    for _ in range(max_pages):
        found = paging.candidates(ordered, workspaces, query)
        page = paging.select(found, lambda w: access.sees(w.id, w.tags), query, conditions)
        pages.append([w.id for w in page.workspaces])
        if page.next_cursor is None:
            return pages
        query = replace(query, after=paging.parse({"cursor": page.next_cursor}).after)
    raise AssertionError("the walk did not end")


STATES = st.tuples(st.sampled_from(list(Status)), st.sampled_from(list(Health)))


@settings(max_examples=150, deadline=None)
@given(
    workspaces=st.dictionaries(
        ids, st.tuples(st.sets(st.sampled_from(["blue", "red"])), STATES), max_size=40
    ),
    limit=st.integers(1, 7),
    tag=st.sampled_from([None, "blue", "red"]),
    status=st.sampled_from([None, *Status]),
    health=st.sampled_from([None, *Health]),
    patterns=st.sampled_from([("*",), ("tag:blue",), ("a*", "X*"), ("nothing",)]),
)
def test_walking_every_page_gives_the_filtered_readable_list_once_in_id_order(
    workspaces: dict[str, tuple[set[str], tuple[Status, Health]]],
    limit: int,
    tag: str | None,
    status: Status | None,
    health: Health | None,
    patterns: tuple[str, ...],
) -> None:
    configured = [ws(i, *sorted(tags)) for i, (tags, _) in workspaces.items()]
    access = Access.of(["read"], patterns)
    conditions = Conditions({i: told for i, (_, told) in workspaces.items()})
    query = Query(limit, None, tag, status, health)
    pages = walk(configured, access, query, conditions)

    def wanted(w: WorkspaceConfig) -> bool:
        st_, he = workspaces[w.id][1]
        return (
            access.sees(w.id, w.tags)
            and (tag is None or tag in w.tags)
            and status in (None, st_)
            and health in (None, he)
        )

    expected = sorted(w.id for w in configured if wanted(w))
    walked = [i for page in pages for i in page]
    assert walked == expected  # in id order, each once, none left out
    assert all(len(page) == limit for page in pages[:-1])  # full but the last
    assert pages[-1] or len(pages) == 1  # never an empty page after a full one
    # The whole list (no limit): the same workspaces, in config order.
    whole = walk(configured, access, Query(None, None, tag, status, health), conditions)
    assert whole == [[w.id for w in configured if wanted(w)]]
    # Conditions are read only with a filter, and only of readable candidates.
    if status is None and health is None:
        assert conditions.asked == []
    tags = {w.id: w.tags for w in configured}
    asked = [i for batch in conditions.asked for i in batch]
    assert all(access.sees(i, tags[i]) for i in asked)


def test_a_page_reads_conditions_of_its_own_candidates_not_of_every_workspace() -> None:
    configured = [ws(f"ws-{n:05d}") for n in range(10_000)]
    synced = {w.id: (Status.SYNCED, Health.HEALTHY) for w in configured}
    conditions = Conditions(synced)
    query = Query(limit=100, status=Status.SYNCED)
    found = paging.candidates(Ordered(), configured, query)
    page = paging.select(found, lambda w: True, query, conditions)
    assert [w.id for w in page.workspaces] == [f"ws-{n:05d}" for n in range(100)]
    read = sum(len(batch) for batch in conditions.asked)
    assert 101 <= read <= 2 * 101  # the page and one more, in a few growing batches
    assert len(conditions.asked) <= 3


def test_readability_is_asked_only_until_the_page_is_full() -> None:
    configured = [ws(f"ws-{n:05d}") for n in range(10_000)]
    asked: list[str] = []

    def readable(w: WorkspaceConfig) -> bool:
        asked.append(w.id)
        return True

    query = paging.parse({"limit": "100", "cursor": paging.encode_cursor("ws-05000")})
    found = paging.candidates(Ordered(), configured, query)
    page = paging.select(found, readable, query, Conditions({}))
    assert page.workspaces[0].id == "ws-05001" and len(asked) == 101
    assert page.next_cursor == paging.encode_cursor("ws-05100")


def test_the_order_is_made_again_when_the_config_is() -> None:
    ordered = Ordered()
    first = (ws("b"), ws("a"))
    assert [w.id for w in ordered.after(first, None)] == ["a", "b"]
    second = (ws("c"), ws("a"))  # a reload: a new tuple
    assert [w.id for w in ordered.after(second, "a")] == ["c"]
    assert [w.id for w in ordered.configured(second, ["c", "b", "a"])] == ["c", "a"]


def test_the_tags_offered_are_those_of_readable_workspaces() -> None:
    ordered = Ordered()
    workspaces = (ws("a1", "blue"), ws("a2", "blue", "red"), ws("b1", "green"), ws("c1"))
    only_a = Actor("t", "api", Access.of(["read"], ["a*"]))
    everyone = Actor("u", "api", Access.of(["read"]))
    assert ordered.tags(workspaces, only_a) == ["blue", "red"]
    assert ordered.tags(workspaces, everyone) == ["blue", "green", "red"]
    reloaded = (*workspaces, ws("a3", "yellow"))
    assert ordered.tags(reloaded, only_a) == ["blue", "red", "yellow"]
