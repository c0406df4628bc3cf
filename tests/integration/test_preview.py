"""A commit's plan on every surface, over the https git server and a served app (uvicorn on
loopback): `GET .../preview?revision=`, `syncd diff --revision` in client and local mode, and the
console's preview page. One repository: a good commit, then one that adds a broken step file."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from syncd.app import Parts, build
from syncd.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from syncd.config import load_config
from syncd.http.console import mount_console
from syncd.http.openapi import openapi_document
from syncd.http.routes import create_app
from tests.support import (
    API_TOKEN,
    GitServer,
    WorkTree,
    daemon_env,
    workspace,
    write_config,
    write_step,
)
from tests.support.console import sign_in

WAIT = 10.0
EVIL = "evil <script>alert(1)</script>"
UNKNOWN = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Served:
    url: str
    config: Path
    env: dict[str, str]
    good: str  # a commit that would apply: two steps to create
    broken: str  # the branch head: a step file that is not JSON


@pytest.fixture(scope="module")
def served(git_server: GitServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("preview")
    url = git_server.create_repo("preview")
    tree = WorkTree(git_server, "preview", tmp / "work")
    write_step(tree, "plain/one")
    write_step(tree, EVIL, do="<b>bold()</b>")
    good = tree.commit("two steps")
    tree.write("export/steps/broken.step.json", "not json")
    broken = tree.commit("a broken step file")
    tree.push()
    env = daemon_env(git_server)
    config = write_config(tmp, [workspace("man", url, git_server, "manual")])
    parts: Parts = build(load_config(config, env))

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        await parts.scheduler.start(startup_sync=False)
        yield
        await parts.scheduler.stop()

    app = create_app(parts, lifespan=lifespan)
    mount_console(app, parts)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, timeout_graceful_shutdown=2)
    )
    thread = threading.Thread(target=server.run, name="uvicorn-test-preview", daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Served(f"http://127.0.0.1:{port}", config, env, good, broken)
    finally:
        server.should_exit = True
        thread.join(WAIT)
        parts.close()


@pytest.fixture
def api(served: Served) -> Iterator[httpx.Client]:
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    with httpx.Client(base_url=served.url, headers=auth, timeout=WAIT) as client:
        yield client


def test_the_api_answers_a_commits_plan(api: httpx.Client, served: Served) -> None:
    path = "/api/v1/workspaces/man/preview"
    good = api.get(path, params={"revision": served.good[:10]})
    assert good.status_code == 200, good.text
    view = good.json()
    assert view["revision"] == served.good and view["would_apply"] is True
    assert (view["refused"], view["signed_by"], view["unchanged"]) == (None, None, 0)
    assert sorted(c["name"] for c in view["create"]) == sorted(["plain/one", EVIL])
    assert view["update"] == view["delete"] == []
    # The same shape as /diff's (a Plan), plus the verdict.
    plan = openapi_document()["components"]["schemas"]["Plan"]["properties"]
    assert set(view) == set(plan) | {"would_apply", "refused", "signed_by"}
    broken = api.get(path, params={"revision": served.broken}).json()
    assert broken["would_apply"] is False and "broken.step.json" in broken["refused"]
    for bad in ({}, {"revision": "abc"}, {"revision": "HEAD"}, {"revision": "g" * 40}):
        answer = api.get(path, params=bad)
        assert answer.status_code == 400 and "`revision`" in answer.json()["error"], bad
    unknown = api.get(path, params={"revision": UNKNOWN})
    assert unknown.status_code == 404 and UNKNOWN[:12] in unknown.json()["error"]
    nowhere = api.get("/api/v1/workspaces/nope/preview", params={"revision": UNKNOWN})
    assert nowhere.status_code == 404
    anonymous = httpx.get(f"{served.url}{path}", params={"revision": served.good}, timeout=WAIT)
    assert anonymous.status_code == 401


def test_syncd_diff_revision_in_client_and_local_mode(
    served: Served, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in served.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SYNCD_SERVER", raising=False)
    modes = {"client": ["--server", served.url], "local": ["--config", str(served.config)]}
    outputs = {}
    for mode, flags in modes.items():
        monkeypatch.setenv("SYNCD_TOKEN", API_TOKEN)
        assert main([*flags, "diff", "man", "--revision", served.good]) == EXIT_OK, mode
        text = capsys.readouterr().out
        assert "create plain/one" in text and "2 to create" in text, mode
        assert "would not apply" not in text
        assert main([*flags, "diff", "man", "--revision", served.broken]) == EXIT_FAILED, mode
        text = capsys.readouterr().out
        assert "would not apply: " in text and "broken.step.json" in text, mode
        assert main([*flags, "diff", "man", "--revision", served.broken, "--json"]) == EXIT_FAILED
        outputs[mode] = json.loads(capsys.readouterr().out)
        assert main([*flags, "diff", "man", "--revision", UNKNOWN]) == EXIT_USAGE, mode
        assert "neither on branch" in capsys.readouterr().err, mode
        assert main([*flags, "diff", "man", "--revision", "HEAD"]) == EXIT_USAGE, mode
        assert "7 to 40 hex digits" in capsys.readouterr().err
    # Both modes print the API's view, the same.
    assert outputs["client"] == outputs["local"]
    assert outputs["local"]["would_apply"] is False
    assert outputs["local"]["revision"] == served.broken


def test_the_console_page_shows_the_verdict_and_the_diffs(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=WAIT) as browser:
        page_path = f"/ui/workspaces/man/preview/{served.good}"
        assert browser.get(page_path).status_code == 303  # sign in first, as every page
        sign_in(browser)
        page = browser.get(page_path)
        assert page.status_code == 200, page.text
        assert "would apply" in page.text and "+2 ~0 -0" in page.text
        assert "plain/one" in page.text and "2 to create" in page.text
        # The stranger's step name and body are text, never markup.
        assert EVIL not in page.text and "&lt;script&gt;" in page.text
        assert "<b>bold()</b>" not in page.text
        refused = browser.get(f"/ui/workspaces/man/preview/{served.broken}")
        assert refused.status_code == 200
        assert "would not apply" in refused.text and "broken.step.json" in refused.text
        bad = browser.get("/ui/workspaces/man/preview/not-a-sha")
        assert bad.status_code == 400 and "7 to 40 hex digits" in bad.text
        unknown = browser.get(f"/ui/workspaces/man/preview/{UNKNOWN}")
        assert unknown.status_code == 404 and "Not found" in unknown.text
