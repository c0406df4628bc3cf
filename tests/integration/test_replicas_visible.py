"""Replicas you can see: `syncd replicas` in local mode (SQLite: one process, said so;
PostgreSQL: the replicas' heartbeats and holds from the store), the console's replicas page and
the `syncd_replicas_alive` gauge. Client mode is in tests/e2e/test_cli_client.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from syncd.app import Parts, build
from syncd.cli import main
from syncd.config import load_config
from syncd.http.console import mount_console
from syncd.http.routes import create_app
from syncd.runs.replicas.postgres import PostgresCoordinator
from syncd.store.postgres import PostgresStore
from tests.support import postgres
from tests.support.console import sign_in

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def config_file(tmp_path: Path, store_url: str | None = None) -> Path:
    doc: dict[str, Any] = {
        "state_dir": str(tmp_path / "state"),
        "tokens": [{"name": "ops", "token_env": "SYNCD_T_API", "scopes": ["read"]}],
        "workspaces": [{"id": "alpha", "name": "a", "source": {"url": "https://h.invalid/x"}}],
    }
    if store_url:
        doc["store"] = {"url": store_url}
    path = tmp_path / "syncd.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(autouse=True)
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNCD_SERVER", raising=False)


def test_sqlite_is_one_process_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(tmp_path)
    assert main(["--config", str(config), "replicas"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("one process: the store (") and "PostgreSQL" in out
    assert main(["--config", str(config), "replicas", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["shared"] is False


def test_postgres_replicas_are_listed_alive_then_gone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    postgres.require()
    with postgres.fresh_database() as url:
        store = PostgresStore(url)  # creates the schema
        config = config_file(tmp_path, url)

        async def two_then_one() -> tuple[str, str]:
            a = PostgresCoordinator(store.conninfo, store.where, store.clean)
            b = PostgresCoordinator(store.conninfo, store.where, store.clean)
            for c in (a, b):
                await c.start(lambda: None, lambda run_id: None)
            assert await a.acquire("alpha")
            await a._beat()  # its holds, as its next heartbeat would say them
            # The command runs in its own event loop: in a thread, as a second process would.
            listed = await asyncio.to_thread(main, ["--config", str(config), "replicas"])
            assert listed == 0
            text = capsys.readouterr().out
            await a.stop()
            assert (
                await asyncio.to_thread(main, ["--config", str(config), "replicas", "--json"]) == 0
            )
            await b.stop()
            return text, capsys.readouterr().out

        try:
            text, answer = asyncio.run(two_then_one())
        finally:
            store.close()
    lines = text.splitlines()
    assert (
        lines[0].startswith("REPLICA") and lines[-1] == "2 alive, 0 gone (* answered this request)"
    )
    assert [line.split()[-1] for line in lines[1:3]] == ["alpha", "none"]
    found = json.loads(answer)
    assert found["shared"] is True
    assert [r["alive"] for r in found["replicas"]] == [False, True]
    assert not any(r["this"] for r in found["replicas"])  # the command is no replica


@pytest.fixture
def parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Parts]:
    monkeypatch.setenv("SYNCD_T_API", "t" * 32)
    parts = build(load_config(config_file(tmp_path)))
    yield parts
    parts.close()


def test_console_page_and_gauge_of_a_single_process(parts: Parts) -> None:
    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        await parts.scheduler.start(startup_sync=False)
        yield
        await parts.scheduler.stop()

    app = create_app(parts, lifespan=lifespan)
    mount_console(app, parts)
    with TestClient(app, follow_redirects=False) as client:
        assert client.get("/ui/replicas").status_code == 303  # signed in first
        sign_in(client, "t" * 32)
        assert 'href="/ui/replicas"' in client.get("/ui/").text
        page = client.get("/ui/replicas")
        assert page.status_code == 200, page.text
        assert parts.scheduler.coordinator.replica_id in page.text
        assert "One process" in page.text and ">alive<" in page.text
        metrics = client.get("/metrics").text
    # One process exports no replica count: SyncdReplicasBelow has nothing to fire on.
    assert "syncd_replicas_alive" not in metrics
