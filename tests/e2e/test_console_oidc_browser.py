"""Signing in to the console with OpenID Connect in a real browser (headless Chromium) against
the real daemon and a real provider (oidc-provider-mock) on loopback, groups mapped to roles: a
user in `ops` syncs prod; a user in `developers` sees only the workspaces tagged dev, and prod
is not there for them (404).

The provider is reached as `localhost` and the console as `127.0.0.1`: two sites, as in real
life, so the provider's redirect back is a cross-site navigation (the sign-in's SameSite=Lax
cookie must come with it; the session's Strict one is set by the callback and sent from the
page it moves on to). The bad cases are tests/integration/test_console_oidc.py's, without a
browser. Needs Debian's `chromium` and the `playwright` package (no browser download).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import GitServer, WorkTree, workspace, write_step
from tests.support import daemon as harness
from tests.support.daemon import Daemon, free_port, kill_daemon, start_daemon
from tests.support.oidc import (
    CLIENT_SECRET,
    SECRET_ENV,
    MockProvider,
    console_config,
    mock_provider,
)

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not Path(CHROMIUM).exists():
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is absent")
expect = sync_api.expect

USERS = {
    "alice": {"preferred_username": "alice", "groups": ["ops"]},
    "bob": {"preferred_username": "bob", "groups": ["developers"]},
}


@pytest.fixture
def provider() -> Iterator[MockProvider]:
    with mock_provider(USERS) as p:
        yield p


@pytest.fixture
def console(
    tmp_path: Path,
    git_server: GitServer,
    repo: tuple[str, WorkTree],
    provider: MockProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Daemon]:
    url, tree = repo
    write_step(tree, "greeting/hello", do="say('hello')")
    tree.commit("a step")
    tree.push()
    # The callback's URL names the daemon's port: picked here, and the harness takes it.
    port = free_port()
    monkeypatch.setattr(harness, "free_port", lambda: port)
    d = start_daemon(
        tmp_path,
        git_server,
        tree,
        url,
        [
            workspace("dev", url, git_server, "manual", name="dev", tags=["dev"]),
            workspace("prod", url, git_server, "manual", name="prod", tags=["prod"]),
        ],
        env_extra={SECRET_ENV: CLIENT_SECRET},
        console=console_config(provider.issuer, f"http://127.0.0.1:{port}/ui/oidc/callback"),
        tokens=[{"name": "ci", "token_env": "SYNCD_TEST_API_TOKEN", "scopes": ["read", "audit"]}],
    )
    yield d
    kill_daemon(d)


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


def sign_in(browser: Any, d: Daemon, user: str) -> Any:
    page = browser.new_page()  # a context of its own: its own cookies
    page.goto(f"{d.url}/ui/")
    expect(page).to_have_url(f"{d.url}/ui/login")
    page.get_by_role("link", name="Sign in with localhost").click()
    page.get_by_role("button", name=user, exact=True).click()  # the provider's own page
    expect(page.get_by_role("heading", name="Workspaces")).to_be_visible()
    expect(page.locator(".who")).to_contain_text(user)
    return page


def test_groups_decide_what_each_user_sees_and_does(console: Daemon, browser: Any) -> None:
    d = console
    alice = sign_in(browser, d, "alice")
    expect(alice.locator("tr[data-ws]")).to_have_count(2)
    alice.goto(f"{d.url}/ui/workspaces/prod")
    alice.get_by_role("button", name="Sync now").click()
    expect(alice.locator(".notice")).to_contain_text("Sync queued")

    bob = sign_in(browser, d, "bob")
    expect(bob.locator("tr[data-ws]")).to_have_count(1)
    expect(bob.locator('tr[data-ws="dev"]')).to_be_visible()
    answer = bob.goto(f"{d.url}/ui/workspaces/prod")
    assert answer is not None and answer.status == 404

    # Each action is the audit's, under the user's subject.
    with d.client() as api:
        entries = api.get("/api/v1/audit").json()["entries"]
    assert {(e["actor"], e["action"]) for e in entries} >= {
        ("oidc:alice", "sign_in"),
        ("oidc:bob", "sign_in"),
        ("oidc:alice", "sync"),
    }
    assert CLIENT_SECRET not in d.log()
