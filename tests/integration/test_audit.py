"""The audit end to end over a real SQLite store: an action from each entry point (the API, the
console, the local CLI) leaves exactly one stored entry with its actor and way in, a refused one
is audited as refused; `GET /api/v1/audit` filters, pages, names a bad parameter and shows a
token limited to some workspaces only theirs; `syncd audit` reads it locally and through the
API (a real uvicorn on loopback); the console's page, signed in, filters and pages.

No git remote is ever reached: suspending touches only the store."""

from __future__ import annotations

import getpass
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml  # type: ignore[import-untyped,unused-ignore]
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.testclient import TestClient

from syncd.app import Parts, build
from syncd.cli import main
from syncd.config import load_config
from syncd.core.audit_model import AuditEntry, AuditQuery
from syncd.http.console import mount_console
from syncd.http.routes import create_app
from tests.support.console import SAME_ORIGIN, sign_in

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

OPS, DEV, CI = "ops-token-0123456789abcdef", "dev-token-0123456789abcdef", "ci-token-0123456789ab"
ENV = {"T_OPS": OPS, "T_DEV": DEV, "T_CI": CI}
Handler = Callable[[Request], Awaitable[Response]]


def write_config(tmp: Path) -> Path:
    source = {"url": "https://git.invalid/org/steps.git", "branch": "main", "path": "steps"}
    doc = {
        "state_dir": str(tmp / "state"),
        "tokens": [
            {"name": "ops", "token_env": "T_OPS", "scopes": ["read", "sync", "audit"]},
            {
                "name": "dev",
                "token_env": "T_DEV",
                "scopes": ["read", "audit"],
                "workspaces": ["dev-*"],
            },
            {"name": "ci", "token_env": "T_CI", "scopes": ["read", "sync"]},
        ],
        "workspaces": [
            {"id": ws, "name": ws, "mode": "manual", "tags": [tag], "source": source}
            for ws, tag in (("dev-a", "dev"), ("prod", "prod"))
        ],
    }
    path = tmp / "syncd.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    return write_config(tmp_path)


@pytest.fixture
def parts(config_path: Path) -> Iterator[Parts]:
    built = build(load_config(config_path))
    yield built
    built.close()


def app_of(parts: Parts) -> Starlette:
    """The API and the console, as the daemon serves them."""
    app = create_app(parts)
    mount_console(app, parts)
    return app


@pytest.fixture
def client(parts: Parts) -> Iterator[TestClient]:
    with TestClient(app_of(parts), follow_redirects=False) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def stored(parts: Parts, **query: Any) -> list[AuditEntry]:
    return parts.core.store.audit_entries(AuditQuery(**query))


def seed(parts: Parts) -> None:
    """Entries of dev-a, prod, a workspace gone from the config, and of no workspace."""
    for i, (ws, actor) in enumerate(
        [("dev-a", "ops"), ("prod", "ops"), ("dev-old", "ci"), (None, "oidc:al"), ("prod", "ci")]
        * 3
    ):
        parts.core.store.record_audit(
            AuditEntry(
                at=1000.0 + i,
                actor=actor,
                via="api",
                action="sync",
                workspace=ws,
                result="ok",
                status=202,
            )
        )


# -- each entry point leaves one entry -------------------------------------------------------


def test_an_action_from_each_entry_point_leaves_one_entry(
    client: TestClient, parts: Parts, config_path: Path
) -> None:
    assert client.post("/api/v1/workspaces/dev-a/suspend", headers=bearer(OPS)).status_code == 200
    csrf = sign_in(client, OPS)
    answer = client.post("/ui/workspaces/prod/suspend", data={"csrf": csrf}, headers=SAME_ORIGIN)
    assert answer.status_code == 303, answer.text
    assert main(["--config", str(config_path), "suspend", "dev-a"]) == 0
    # Refused: not a commit. Audited as refused, with why.
    bad = client.post("/api/v1/workspaces/prod/sync", json={"revision": "zz"}, headers=bearer(CI))
    assert bad.status_code == 422
    entries = stored(parts)
    seen = [(e.actor, e.via, e.action, e.workspace, e.result) for e in reversed(entries)]
    assert seen == [
        ("ops", "api", "suspend", "dev-a", "ok"),
        ("ops", "console", "sign_in", None, "ok"),
        ("ops", "console", "suspend", "prod", "ok"),
        (f"local:{getpass.getuser()}", "local", "suspend", "dev-a", "ok"),
        ("ci", "api", "sync", "prod", "refused"),
    ]
    assert entries[0].status == 422 and "revision" in (entries[0].detail or "")
    assert all(OPS not in str(e) and CI not in str(e) for e in entries)  # names, never values


# -- the API ---------------------------------------------------------------------------------


def test_the_api_filters_and_pages(client: TestClient, parts: Parts) -> None:
    seed(parts)
    everything = client.get("/api/v1/audit", headers=bearer(OPS)).json()
    assert len(everything["entries"]) == 15 and everything["next_cursor"] is None
    at = [e["at"] for e in everything["entries"]]
    assert at == sorted(at, reverse=True)
    only = client.get("/api/v1/audit?workspace=prod&actor=ci", headers=bearer(OPS)).json()
    assert {(e["workspace"], e["actor"]) for e in only["entries"]} == {("prod", "ci")}
    since = client.get("/api/v1/audit?since=1970-01-01T00:16:52Z", headers=bearer(OPS)).json()
    assert [e["at"] for e in since["entries"]] == at[:3]  # 1014, 1013, 1012
    assert client.get("/api/v1/audit?since=1012", headers=bearer(OPS)).json() == since
    pages, cursor = [], None
    for _ in range(10):  # bounded: 15 entries in pages of 4
        query = "limit=4" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(f"/api/v1/audit?{query}", headers=bearer(OPS)).json()
        pages.append(page["entries"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [4, 4, 4, 3]
    assert [e["id"] for p in pages for e in p] == [e["id"] for e in everything["entries"]]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("since=yesterday", "since"),
        ("since=2026-03-01T12:00:00", "since"),  # no zone
        ("cursor=-3", "cursor"),
        ("cursor=abc", "cursor"),
        ("cursor=" + "9" * 30, "cursor"),
        ("workspace=" + "w" * 300, "workspace"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(client: TestClient, query: str, parameter: str) -> None:
    answer = client.get(f"/api/v1/audit?{query}", headers=bearer(OPS))
    assert answer.status_code == 400, answer.text
    assert f"`{parameter}`" in answer.json()["error"]
    assert answer.json()["detail"] == {"parameter": parameter}


def test_a_token_sees_only_its_workspaces(client: TestClient, parts: Parts) -> None:
    seed(parts)
    # dev-*: dev-a, dev-old (gone from the config, matched by its id), and no workspace.
    page = client.get("/api/v1/audit?limit=4", headers=bearer(DEV)).json()
    shown = {e["workspace"] for e in page["entries"]}
    assert shown <= {"dev-a", "dev-old", None} and len(page["entries"]) == 4
    rest = client.get(f"/api/v1/audit?cursor={page['next_cursor']}", headers=bearer(DEV)).json()
    assert len(page["entries"]) + len(rest["entries"]) == 9 and rest["next_cursor"] is None
    assert client.get("/api/v1/audit?workspace=prod", headers=bearer(DEV)).json() == {
        "entries": [],
        "next_cursor": None,
    }
    # No `audit` scope: refused; no token: 401.
    assert client.get("/api/v1/audit", headers=bearer(CI)).status_code == 403
    assert client.get("/api/v1/audit").status_code == 401


# -- the CLI ---------------------------------------------------------------------------------


def test_the_cli_reads_the_store_locally(
    parts: Parts, config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(parts)
    assert main(["--config", str(config_path), "audit", "--workspace", "prod", "--limit", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["AT", "ACTOR", "VIA", "ACTION", "WORKSPACE", "RESULT", "DETAIL"]
    assert [line.split()[2] for line in lines[1:3]] == ["ci", "ops"]  # newest first
    assert "2 entries" in lines[3] and "older entries" in lines[4]
    assert main(["--config", str(config_path), "audit", "--since", "2h", "--json"]) == 0
    assert '"entries": []' in capsys.readouterr().out  # the seeded entries are from 1970
    assert main(["--config", str(config_path), "audit", "--limit", "0"]) == 2
    assert "--limit must be" in capsys.readouterr().err


@pytest.fixture
def server(parts: Parts) -> Iterator[str]:
    # log_config=None: uvicorn's own would take its loggers off the root's for the rest of
    # the session (their lines would no longer reach syncd's format in later tests).
    config = uvicorn.Config(app_of(parts), host="127.0.0.1", port=0, log_config=None)
    served = uvicorn.Server(config)
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not served.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    port = served.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    served.should_exit = True
    thread.join(10)


def test_the_cli_asks_the_server(
    parts: Parts,
    server: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed(parts)
    monkeypatch.setenv("SYNCD_TOKEN", DEV)
    assert main(["--server", server, "audit", "--limit", "1000", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert len(found["entries"]) == 9 and found["next_cursor"] is None
    assert {e["workspace"] for e in found["entries"]} == {"dev-a", "dev-old", None}
    assert main(["--server", server, "audit", "--actor", "oidc:al", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("oidc:al") == 2 and "2 entries" in out


# -- the console -----------------------------------------------------------------------------


def test_the_console_page_filters_and_pages(client: TestClient, parts: Parts) -> None:
    assert client.get("/ui/audit").status_code == 303  # sign in first
    seed(parts)
    parts.core.store.record_audit(
        AuditEntry(
            at=2000.0,
            actor="<b>x</b>",
            via="api",
            action="sync",
            workspace="prod",
            result="refused",
            status=422,
            detail='<script>alert("x")</script>',
        )
    )
    sign_in(client, OPS)
    page = client.get("/ui/audit?workspace=prod&limit=3")
    assert page.status_code == 200, page.text
    assert page.text.count("data-entry=") == 3
    assert "<script>alert" not in page.text and "&lt;script&gt;" in page.text  # escaped
    assert 'rel="next"' in page.text
    older = page.text.split('rel="next" href="')[1].split('"')[0].replace("&amp;", "&")
    assert "workspace=prod" in older and "cursor=" in older
    second = client.get(older)
    assert second.status_code == 200 and second.text.count("data-entry=") == 3
    assert "Newest" in second.text
    bad = client.get("/ui/audit?since=soon")
    assert bad.status_code == 400 and "since" in bad.text
