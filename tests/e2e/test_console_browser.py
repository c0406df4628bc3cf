"""The web console in a real browser (headless Chromium) against the real daemon: sign in, see
a push turn a manual workspace OutOfSync without a reload, open its diff, sync it and see it
Synced without a reload, and check that a read-only token is offered no action.

Needs Debian's `chromium` and the `playwright` package (which drives the system's browser; no
browser is downloaded). `SYNCD_SCREENSHOTS=1` saves the pages' screenshots into docs/.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import (
    API_TOKEN,
    READ_TOKEN,
    GitServer,
    WorkTree,
    payloads,
    workspace,
    write_step,
)
from tests.support.daemon import Daemon, kill_daemon, start_daemon

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
DOCS = Path(__file__).resolve().parents[2] / "docs"

if not Path(CHROMIUM).exists():
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is absent")
expect = sync_api.expect


@pytest.fixture
def console(tmp_path: Path, git_server: GitServer, repo: tuple[str, WorkTree]) -> Iterator[Daemon]:
    url, tree = repo
    write_step(tree, "greeting/hello", do="say('hello')")
    write_step(tree, "alerts/disk full", if_="disk.used > 0.9", do="page('ops')")
    write_step(tree, "markup <b>bold</b>", do='<script>alert("x")</script>')
    tree.commit("three steps")
    tree.push()
    workspaces = [
        # As docs/workflow.md promotes: people edit a manual dev, git drives an automatic prod.
        workspace("dev", url, git_server, "manual", name="dev", tags=["dev"]),
        workspace("prod", url, git_server, "automatic", name="prod", tags=["prod"], badge=True),
    ]
    d = start_daemon(tmp_path, git_server, tree, url, workspaces)
    # The manual workspace starts in step with git.
    with d.client() as api:
        assert api.post("/api/v1/workspaces/dev/sync?wait=true").status_code == 200
    yield d
    kill_daemon(d)


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


def sign_in(page: Any, d: Daemon, token: str) -> None:
    page.goto(f"{d.url}/ui/")
    expect(page).to_have_url(f"{d.url}/ui/login")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Workspaces")).to_be_visible()


def push_with_webhook(d: Daemon) -> str:
    before = d.tree.head()
    path = write_step(d.tree, "greeting/welcome", do="say('welcome')\nwave()")
    write_step(d.tree, "greeting/hello", do="say('hello, world')")
    head = d.tree.commit("a new greeting")
    d.tree.push()
    headers, body = payloads.build(
        "github", d.repo_url, "main", [path], head, str(uuid.uuid4()), before=before
    )
    answer = httpx.post(f"{d.url}/hooks/github", headers=headers, content=body, timeout=10)
    assert answer.status_code == 202, answer.text
    return head


def shot(page: Any, tmp_path: Path, name: str) -> None:
    target = tmp_path / name
    page.screenshot(path=str(target), full_page=True)
    if os.environ.get("SYNCD_SCREENSHOTS"):
        shutil.copy(target, DOCS / name)


def test_console_follows_a_push_and_syncs(console: Daemon, browser: Any, tmp_path: Path) -> None:
    d = console
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    sign_in(page, d, API_TOKEN)
    status = page.locator('tr[data-ws="dev"] [data-field="status"]')
    expect(status).to_have_text("Synced")

    # A push and its webhook: the row turns OutOfSync with no reload (the marker survives).
    page.evaluate("window.stillTheSamePage = true")
    push_with_webhook(d)
    expect(status).to_have_text("OutOfSync", timeout=20_000)
    expect(page.locator('tr[data-ws="prod"] [data-field="status"]')).to_have_text(
        "Synced", timeout=20_000
    )
    assert page.evaluate("window.stillTheSamePage") is True
    shot(page, tmp_path, "console-workspaces.png")

    # The diff of the manual workspace, markup shown as text.
    page.locator('tr[data-ws="dev"] th a').click()
    expect(page.get_by_role("heading", name="dev", exact=True)).to_be_visible()
    drift = page.locator("section", has=page.get_by_role("heading", name="Drift"))
    expect(drift).to_contain_text("greeting/welcome")
    expect(drift.locator(".diff .add").first).to_be_visible()
    expect(page.locator("body")).to_contain_text("markup <b>bold</b>")
    shot(page, tmp_path, "console-workspace.png")

    # Sync now: the page comes back with the run queued, then turns Synced by itself.
    page.get_by_role("button", name="Sync now").click()
    expect(page.locator(".notice")).to_contain_text("Sync queued")
    page.evaluate("window.stillTheSamePage = true")
    expect(page.locator('.facts [data-field="status"]')).to_have_text("Synced", timeout=30_000)
    assert page.evaluate("window.stillTheSamePage") is True
    assert dialogs == []  # no script from a step ever ran

    # A phone-sized view of the list, for the docs.
    phone = browser.new_page(viewport={"width": 390, "height": 844})
    sign_in(phone, d, API_TOKEN)
    shot(phone, tmp_path, "console-phone.png")


def test_suspend_and_resume_an_automatic_workspace(console: Daemon, browser: Any) -> None:
    page = browser.new_page()
    sign_in(page, console, API_TOKEN)
    page.goto(f"{console.url}/ui/workspaces/prod")
    suspend = page.get_by_role("button", name="Suspend")
    if suspend.count() == 0:
        pytest.skip("this syncd has no suspend and resume")
    suspend.click()
    expect(page.locator(".facts")).to_contain_text("suspended")
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_role("button", name="Suspend")).to_be_visible()
    expect(page.locator(".facts")).not_to_contain_text("suspended")


def test_a_read_only_token_sees_no_action(console: Daemon, browser: Any) -> None:
    page = browser.new_page()
    sign_in(page, console, READ_TOKEN)
    page.goto(f"{console.url}/ui/workspaces/dev")
    expect(page.get_by_role("heading", name="Drift")).to_be_visible()
    assert page.locator("form[action*='/workspaces/']").count() == 0
    for name in ("Sync now", "Dry run", "Roll back", "Export", "Suspend", "Resume"):
        assert page.get_by_role("button", name=name).count() == 0
    # Signing out ends the session.
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator(".notice")).to_contain_text("signed out")
    page.goto(f"{console.url}/ui/")
    expect(page).to_have_url(f"{console.url}/ui/login")
