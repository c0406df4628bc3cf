"""Pages of `GET /api/v1/workspaces` over a real SQLite store, in process: walking every page
gives the whole list's workspaces (filtered as asked) once each, by id, for every token, and a
token limited to some workspaces never meets another; a parameter that cannot be used is a 400
naming it. And the store's batch reads (`states`, `healths`) on every store.

The workspaces point at a remote nobody listens on: listing reads the config and the store only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from syncd.app import Parts, build
from syncd.config import load_config
from syncd.core.model import Health, HealthRecord, Run, RunResult, Status, SyncState, Trigger
from syncd.http.routes import create_app
from syncd.service import paging
from syncd.store import Store

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

FAR_URL = "https://127.0.0.1:9/x.git"  # nothing listens on the discard port
COUNT = 45
# name: the token's `workspaces` (None: the key left out, every workspace)
TOKENS: dict[str, list[str] | None] = {
    "admin": None,
    "blue": ["tag:blue"],
    "few": ["ws-1*", "ws-3?"],
    "none": ["no-such-*"],
}


def ws_id(n: int) -> str:
    return f"ws-{n:02d}"


def secret(name: str) -> str:
    return f"token-of-{name}-0123456789abcdef"


def seed(store: Store, n: int) -> None:
    """Status by n % 3 (Unknown: never saved); health Degraded by record (n % 5 == 0) or, with
    no record, by a failed last run (n % 7 == 0); some automatic ones suspended."""
    ws = ws_id(n)
    if n % 3:
        status = Status.SYNCED if n % 3 == 1 else Status.OUT_OF_SYNC
        failed = n % 7 == 0
        result = RunResult.FAILED if failed else RunResult.SUCCEEDED
        run = Run(f"run-{ws}", ws, Trigger.POLL, "a" * 40, result, 1.0, 2.0)
        store.record_run(run, SyncState(ws, status, "a" * 40, "a" * 40, run.id))
    if n % 5 == 0:
        store.save_health(HealthRecord(ws, Health.DEGRADED, 3.0, "boom", 1))
    elif n % 7 and n % 2:
        store.save_health(HealthRecord(ws, Health.HEALTHY, 3.0))
    if n % 4 == 1:
        store.set_suspended(ws, True)


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parts]:
    tmp: Path = tmp_path_factory.mktemp("pages")
    source = {"url": FAR_URL, "branch": "main", "path": "export/steps"}
    tokens = []
    for name, patterns in TOKENS.items():
        token: dict[str, Any] = {"name": name, "token_env": f"T_{name.upper()}", "scopes": ["read"]}
        if patterns is not None:
            token["workspaces"] = patterns
        tokens.append(token)
    # Configured out of id order, so that config order and id order differ.
    numbers = sorted(range(COUNT), key=lambda n: (n * 17) % COUNT)
    doc = {
        "state_dir": str(tmp / "state"),
        "tokens": tokens,
        "workspaces": [
            {
                "id": ws_id(n),
                "name": f"workspace {n}",
                "tags": ["blue"] if n % 2 else ["red"],
                "mode": "automatic" if n % 4 == 1 else "manual",
                "poll_interval": 0,
                "source": source,
            }
            for n in numbers
        ],
    }
    (tmp / "syncd.yaml").write_text(yaml.safe_dump(doc))
    env = {f"T_{name.upper()}": secret(name) for name in TOKENS}
    built = build(load_config(tmp / "syncd.yaml", env))
    for n in range(COUNT):
        seed(built.core.store, n)
    yield built
    built.close()


@pytest.fixture(scope="module")
def client(parts: Parts) -> Iterator[TestClient]:
    with TestClient(create_app(parts)) as c:
        yield c


def get(client: TestClient, token: str, **query: str) -> Any:
    answer = client.get(
        "/api/v1/workspaces", params=query, headers={"Authorization": f"Bearer {secret(token)}"}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def walk(client: TestClient, token: str, **query: str) -> list[list[str]]:
    pages, cursor = [], None
    for _ in range(COUNT + 2):
        answer = get(client, token, **query, **({"cursor": cursor} if cursor else {}))
        pages.append([w["id"] for w in answer["workspaces"]])
        cursor = answer["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError("the pages did not end")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    token=st.sampled_from(sorted(TOKENS)),
    limit=st.integers(1, 12),
    tag=st.sampled_from([None, "blue", "red"]),
    status=st.sampled_from([None, *Status]),
    health=st.sampled_from([None, *Health]),
)
def test_walking_every_page_gives_the_whole_filtered_list_once_by_id(
    client: TestClient,
    token: str,
    limit: int,
    tag: str | None,
    status: Status | None,
    health: Health | None,
) -> None:
    filters = {"tag": tag, "status": status, "health": health}
    query = {k: str(v) for k, v in filters.items() if v is not None}
    # The whole list, as it was before pages: the token's workspaces in config order.
    whole = get(client, token, **query)
    assert whole["next_cursor"] is None
    for view in whole["workspaces"]:  # the filters agree with what each view says
        assert tag is None or tag in view["tags"]
        assert status is None or view["status"] == status
        assert health is None or view["health"]["status"] == health
    pages = walk(client, token, limit=str(limit), **query)
    walked = [i for page in pages for i in page]
    assert walked == sorted(w["id"] for w in whole["workspaces"])
    assert len(set(walked)) == len(walked)
    assert all(len(page) == limit for page in pages[:-1])
    patterns = TOKENS[token]
    if patterns == ["no-such-*"]:
        assert pages == [[]]
    if patterns == ["tag:blue"]:
        assert all(int(i[3:]) % 2 for i in walked)  # the blue ones are odd


def test_the_store_holds_every_status_and_health(client: TestClient) -> None:
    """So that the walks above choose between real values."""
    views = get(client, "admin")["workspaces"]
    assert {w["status"] for w in views} == {"Synced", "OutOfSync", "Unknown"}
    assert {w["health"]["status"] for w in views} == {"Healthy", "Degraded", "Suspended"}


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"limit": "10", "cursor": "djE6d3MtMDA$"}, "cursor"),
        ({"limit": "10", "cursor": "djI6d3MtMDA"}, "cursor"),  # v2:ws-00
        ({"status": "synced"}, "status"),
        ({"health": "Sick"}, "health"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(
    client: TestClient, query: dict[str, str], parameter: str
) -> None:
    answer = client.get(
        "/api/v1/workspaces", params=query, headers={"Authorization": f"Bearer {secret('admin')}"}
    )
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["detail"] == {"parameter": parameter}
    assert f"`{parameter}`" in body["error"]


@pytest.mark.parametrize("limit", ["²", "9" * 40])
def test_a_count_that_is_no_number_is_a_400_elsewhere_too(client: TestClient, limit: str) -> None:
    # "²" is a digit to str.isdigit() but no number to int(): it was a 500.
    answer = client.get(
        f"/api/v1/workspaces/{ws_id(10)}/runs",
        params={"limit": limit},
        headers={"Authorization": f"Bearer {secret('admin')}"},
    )
    assert answer.status_code == 400 and "`limit`" in answer.json()["error"], answer.text


def test_a_cursor_tells_nothing_of_workspaces_out_of_reach(client: TestClient) -> None:
    # A cursor made to name a workspace the token may not read only says where to start.
    cursor = paging.encode_cursor(ws_id(12))  # red: not the blue token's
    answer = get(client, "blue", limit="3", cursor=cursor)
    assert [w["id"] for w in answer["workspaces"]] == [ws_id(13), ws_id(15), ws_id(17)]
    cut = get(client, "few", limit="2")
    assert [w["id"] for w in cut["workspaces"]] == [ws_id(10), ws_id(11)]
    rest = walk(client, "few", limit="4")
    assert [i for page in rest for i in page] == [
        *(ws_id(n) for n in range(10, 20)),
        *(ws_id(n) for n in range(30, 40)),
    ]


# -- the store's batch reads ---------------------------------------------------------------


def test_states_and_healths_are_read_in_batches_on_every_store(store: Store) -> None:
    many = [f"w{n:04d}" for n in range(1200)]  # past a chunk of SQLite's and PostgreSQL's
    late, early = many[1100], many[3]
    store.save_state(SyncState(late, Status.OUT_OF_SYNC, "b" * 40, "c" * 40, None, drift=2))
    store.save_state(SyncState(early, Status.SYNCED, "d" * 40))
    store.set_suspended(early, True)
    record = HealthRecord(late, Health.DEGRADED, 5.0, "no route", 3, True)
    store.save_health(record)

    states = store.states(many)
    assert set(states) == set(many)
    assert states[late] == store.state(late) and states[late].drift == 2
    assert states[early] == store.state(early) and states[early].suspended
    assert states[many[0]] == SyncState(many[0])  # never saved: the default
    assert store.healths(many) == {late: record}
    assert store.states([]) == {} and store.healths([]) == {}
    assert list(store.states([late, late])) == [late]  # asked twice, answered once
    for n, result in enumerate((RunResult.SUCCEEDED, RunResult.FAILED)):  # the failure later
        run = Run(f"r{n}", late, Trigger.WEBHOOK, "b" * 40, result, 10.0 + n, 11.0 + n, 1, 0, 0)
        store.record_run(run, store.state(late))
    assert store.last_successes(many) == {late: 11.0} == {late: store.last_success_at(late)}
    assert store.last_successes([]) == {}
    asked = ["r0", "r1", "r1", "none", *(f"x{n}" for n in range(1200))]
    assert store.runs_by_id(asked) == {"r0": store.run("r0"), "r1": store.run("r1")}
    assert store.runs_by_id([]) == {}
