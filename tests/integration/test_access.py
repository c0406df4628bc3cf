"""Access per workspace (issue #24), every route of `/openapi.json` against every token and
workspace: a workspace outside a token's `workspaces` is not there (404, as for an id that does
not exist: the same words), a scope the token lacks is refused (403), and anything else gets
past both (whatever the route then answers). The document is the list: a route added without a
place in this table fails the test.

In-process (httpx over ASGI on one event loop, a real SQLite store), the workspaces on a
repository of the https git server: a read that gets past the checks reads git for real.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml

from syncd.app import Parts, build
from syncd.config import load_config
from syncd.core.audit_model import AuditQuery
from syncd.core.model import Run, RunResult, SyncState, Trigger
from syncd.http.openapi import openapi_document
from syncd.http.routes import create_app
from tests.support import GitServer, WorkTree, daemon_env, write_step
from tests.support.configs import GIT_PASSWORD_ENV

WORKSPACES = {"prod": ["prod"], "dev-a": ["dev"], "dev-b": ["dev"], "sandbox-1": []}
TOKENS: dict[str, tuple[list[str], list[str] | None]] = {
    # name: (scopes, workspaces); None: the key left out (every workspace)
    "admin": (["read", "sync", "write", "export"], None),
    "dev-reader": (["read"], ["tag:dev"]),
    "dev-ops": (["read", "sync", "write", "export"], ["dev-*", "sandbox-?"]),
    "prod-sync": (["read", "sync"], ["prod"]),
}
# Operations that name no workspace: how each treats a token limited to some.
GLOBAL = {
    ("get", "/api/v1/workspaces"): "lists only the workspaces the token may read",
    ("get", "/api/v1/replicas"): "names only the workspaces the token may read in `holds`",
    ("get", "/api/v1/audit"): "only entries of workspaces the token may read (test_audit.py)",
    ("post", "/hooks"): "webhooks: signed, no token",
    ("post", "/hooks/{provider}"): "webhooks: signed, no token",
    ("get", "/metrics"): "no token (contract)",
    ("get", "/healthz"): "no token (contract)",
    ("get", "/readyz"): "no token (contract)",
    ("get", "/openapi.json"): "no token",
    ("get", "/api/v1/workspaces/{id}/badge.svg"): "no token, opt-in per workspace",
}
NO_WORKSPACE = "no workspace"


def env_name(token: str) -> str:
    return "T_" + token.replace("-", "_").upper()


def secret(name: str) -> str:
    return f"token-of-{name}-0123456789abcdef"


@pytest.fixture(scope="module")
def client(git_server: GitServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    tmp = tmp_path_factory.mktemp("access")
    url = git_server.create_repo("access")
    tree = WorkTree(git_server, "access", tmp / "work")
    write_step(tree, "a/step")
    tree.commit("one step")
    tree.push()
    tokens = []
    for name, (scopes, patterns) in TOKENS.items():
        token: dict[str, Any] = {"name": name, "token_env": env_name(name), "scopes": scopes}
        if patterns is not None:
            token["workspaces"] = patterns
        tokens.append(token)
    source = {
        "url": url,
        "username": git_server.username,
        "password_env": GIT_PASSWORD_ENV,
        "ca_file": str(git_server.ca_file),
    }
    doc = {
        "state_dir": str(tmp / "state"),
        "tokens": tokens,
        "workspaces": [
            {
                "id": ws_id,
                "name": ws_id,
                "tags": tags,
                "mode": "manual",
                "poll_interval": 0,
                "source": source,
            }
            for ws_id, tags in WORKSPACES.items()
        ],
    }
    (tmp / "syncd.yaml").write_text(yaml.safe_dump(doc))
    env = daemon_env(git_server) | {env_name(name): secret(name) for name in TOKENS}
    parts: Parts = build(load_config(tmp / "syncd.yaml", env))
    for ws_id in WORKSPACES:  # a run each, for /api/v1/runs/{run_id}
        run = Run(f"run-{ws_id}", ws_id, Trigger.MANUAL, "a" * 40, RunResult.PLANNED, 1.0, 2.0)
        parts.core.store.record_run(run, SyncState(ws_id))
    loop = asyncio.new_event_loop()
    transport = httpx.ASGITransport(app=create_app(parts), raise_app_exceptions=False)
    http = httpx.AsyncClient(transport=transport, base_url="http://syncd")
    yield Client(loop, http, parts)
    loop.run_until_complete(http.aclose())
    loop.close()
    parts.close()


@dataclass
class Client:
    """One app, one client, one event loop for every call of the module."""

    loop: asyncio.AbstractEventLoop
    http: httpx.AsyncClient
    parts: Parts


def call(client: Client, token: str, method: str, path: str) -> httpx.Response:
    body: dict[str, Any] | None = {} if method in ("post", "put") else None
    headers = {"Authorization": f"Bearer {secret(token)}"}
    asked = client.http.request(method.upper(), path, json=body, headers=headers)
    return client.loop.run_until_complete(asked)


def operations() -> list[tuple[str, str, str | None]]:
    found = []
    for path, methods in openapi_document()["paths"].items():
        for method, operation in methods.items():
            found.append((method, path, operation.get("x-syncd-scope")))
    return found


def test_every_route_is_in_the_table() -> None:
    """A route with no workspace in its path must be listed in GLOBAL, saying why."""
    for method, path, _scope in operations():
        assert "{id}" in path or "{run_id}" in path or (method, path) in GLOBAL, (method, path)


def expected(token: str, scope: str, ws_id: str) -> int | None:
    """404 (not there for the token), 403 (there, but not this scope), or None: past both."""
    scopes, patterns = TOKENS[token]
    tags = WORKSPACES[ws_id]
    seen = patterns is None or any(
        (p.startswith("tag:") and p[4:] in tags) or (not p.startswith("tag:") and _glob(p, ws_id))
        for p in patterns
    )
    if not seen:
        return 404
    return None if scope in scopes else 403


def _glob(pattern: str, ws_id: str) -> bool:
    return re.fullmatch(pattern.replace("*", ".*").replace("?", "."), ws_id) is not None


@pytest.mark.parametrize(("method", "path", "scope"), [o for o in operations() if o[2]])
def test_each_scoped_route_for_each_token_and_workspace(
    client: Client, method: str, path: str, scope: str
) -> None:
    if (method, path) in GLOBAL:
        return
    for token in TOKENS:
        for ws_id in WORKSPACES:
            concrete = path.replace("{id}", ws_id).replace("{run_id}", f"run-{ws_id}")
            concrete = concrete.replace("{name:path}", "a/step").replace("{name}", "a-step")
            if concrete.endswith("/wait"):
                concrete += "?timeout=0"  # past the checks, it would wait for a run
            answer = call(client, token, method, concrete)
            want = expected(token, scope, ws_id)
            said = f"{token} {method.upper()} {concrete}: {answer.status_code} {answer.text}"
            if want == 404:
                assert answer.status_code == 404 and NO_WORKSPACE in answer.text, said
                assert ws_id not in answer.text.replace(f"'{ws_id}'", ""), said
            elif want == 403:
                assert answer.status_code == 403, said
            else:
                assert answer.status_code not in (401, 403), said
                assert not (answer.status_code == 404 and NO_WORKSPACE in answer.text), said


def test_lists_show_only_what_may_be_read(client: Client) -> None:
    for token in TOKENS:
        listed = call(client, token, "get", "/api/v1/workspaces").json()["workspaces"]
        want = [w for w in WORKSPACES if expected(token, "read", w) is None]
        assert [w["id"] for w in listed] == want, token
        for replica in call(client, token, "get", "/api/v1/replicas").json()["replicas"]:
            assert set(replica["holds"]) <= set(want), token
    # The 404 for a workspace outside says what an unknown id gets, word for word.
    outside = call(client, "dev-reader", "get", "/api/v1/workspaces/prod").json()
    unknown = call(client, "admin", "get", "/api/v1/workspaces/prod-x").json()
    assert outside["error"].replace("prod", "ID") == unknown["error"].replace("prod-x", "ID")


MUTATING = ("post", "put", "delete")


def test_every_mutating_route_leaves_one_audit_entry(client: Client) -> None:
    """The bar of issue #24: each mutating operation of the document, refused or not, is in
    the store's audit, once, under the token's name."""
    store = client.parts.core.store
    for method, path, scope in operations():
        if method not in MUTATING or not scope:
            continue
        concrete = path.replace("{id}", "dev-a").replace("{name:path}", "a/step")
        concrete = concrete.replace("{name}", "a-step")
        for token in ("admin", "dev-reader"):  # one acts, one is refused (it may only read)
            before = store.audit_entries(AuditQuery(limit=1000))
            answer = call(client, token, method, concrete)
            after = store.audit_entries(AuditQuery(limit=1000))
            new = after[: len(after) - len(before)]
            said = f"{token} {method.upper()} {concrete}: {answer.status_code}"
            assert (answer.status_code == 403) == (token == "dev-reader"), said
            assert len(new) == 1 and new[0].actor == token and new[0].via == "api", said
            assert new[0].workspace == "dev-a" and new[0].status == answer.status_code, said
