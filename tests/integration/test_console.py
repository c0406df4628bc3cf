"""The web console through Starlette's TestClient, over a real store and the https git server:
sessions, CSRF, scopes, escaping, and the status badge. Every refused action changes nothing."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape
from starlette.testclient import TestClient

from syncd.app import Parts, build
from syncd.config import load_config
from syncd.http.console import mount_console
from syncd.http.console.sessions import COOKIE, Session, Sessions
from syncd.http.routes import create_app
from syncd.ops.logs import FIELDS
from tests.support import (
    API_TOKEN,
    READ_TOKEN,
    GitServer,
    WorkTree,
    daemon_env,
    workspace,
    write_config,
    write_step,
)
from tests.support.console import csrf_of, sign_in

EVIL_NAME = 'evil <script>alert("name")</script>'
EVIL_DO = '<img src=x onerror="alert(1)"> & done()'

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


@pytest.fixture
def parts(tmp_path: Path, git_server: GitServer, repo: tuple[str, WorkTree]) -> Iterator[Parts]:
    url, tree = repo
    write_step(tree, "plain/one")
    write_step(tree, EVIL_NAME, do=EVIL_DO)
    tree.commit("steps with markup in them")
    tree.push()
    workspaces = [
        workspace("man", url, git_server, "manual", badge=True, name='man "<b>"', tags=["prod"]),
        workspace("auto", url, git_server, "automatic", tags=["dev"]),
    ]
    config = load_config(write_config(tmp_path, workspaces), daemon_env(git_server))
    parts = build(config)
    yield parts
    parts.close()


@pytest.fixture
def client(parts: Parts) -> Iterator[TestClient]:
    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        await parts.scheduler.start(startup_sync=False)
        yield
        await parts.scheduler.stop()

    app = create_app(parts, lifespan=lifespan)
    mount_console(app, parts)
    with TestClient(app, follow_redirects=False) as c:
        yield c


def runs(parts: Parts, ws: str = "man") -> list[Any]:
    return parts.core.store.runs(ws, 100)


def test_pages_need_a_session(client: TestClient) -> None:
    for path in ("/ui/", "/ui/workspaces/man"):
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/login"
    assert client.get("/ui/events").status_code == 401
    assert client.get("/ui").status_code == 307


def test_sign_in_keeps_only_the_token_name(client: TestClient) -> None:
    form = client.get("/ui/login")
    answer = client.post("/ui/login", data={"token": API_TOKEN, "csrf": csrf_of(form.text)})
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert "Secure" not in cookie  # plain http here; see the https test
    assert API_TOKEN not in cookie
    page = client.get("/ui/")
    assert "ws-auto" in page.text and "Signed in as <strong>ci</strong>" in page.text
    assert API_TOKEN not in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]


def test_cookie_is_secure_over_https(parts: Parts) -> None:
    app = create_app(parts)
    mount_console(app, parts)
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as c:
        assert "Secure" in c.get("/ui/login").headers["set-cookie"]


def test_bad_sign_ins(client: TestClient) -> None:
    csrf = csrf_of(client.get("/ui/login").text)
    wrong = client.post("/ui/login", data={"token": "not-a-token", "csrf": csrf})
    assert wrong.status_code == 401 and "not valid" in wrong.text
    assert "not-a-token" not in wrong.text
    forged = client.post("/ui/login", data={"token": API_TOKEN, "csrf": "forged"})
    assert forged.status_code == 403 and "security token" in forged.text
    missing = client.post("/ui/login", data={"token": API_TOKEN})
    assert missing.status_code == 403
    assert client.get("/ui/").status_code == 303  # still signed out


def test_forged_or_missing_csrf_changes_nothing(client: TestClient, parts: Parts) -> None:
    sign_in(client)
    for data in ({"kind": "sync"}, {"kind": "sync", "csrf": "forged"}, {"csrf": ""}):
        answer = client.post("/ui/workspaces/man/sync", data=data)
        assert answer.status_code == 403, answer.text
        assert "Nothing was changed" in answer.text
    answer = client.post("/ui/workspaces/man/export", data={"branch": "x", "csrf": "no"})
    assert answer.status_code == 403
    time.sleep(0.3)
    assert runs(parts) == []


def test_csrf_token_of_another_session_is_refused(client: TestClient, parts: Parts) -> None:
    other = Sessions(parts.session_key, 3600)
    stolen = other.csrf_token(other.new(time.time(), parts.config.tokens[0]))
    sign_in(client)
    answer = client.post("/ui/workspaces/man/sync", data={"kind": "sync", "csrf": stolen})
    assert answer.status_code == 403
    assert runs(parts) == []


def test_a_read_token_sees_no_actions_and_may_not_post(client: TestClient, parts: Parts) -> None:
    csrf = sign_in(client, READ_TOKEN)
    page = client.get("/ui/workspaces/man")
    assert page.status_code == 200
    for button in ("Sync now", "Dry run", "Roll back", "Export", "Suspend"):
        assert f">{button}</button>" not in page.text
    answer = client.post("/ui/workspaces/man/sync", data={"kind": "sync", "csrf": csrf})
    assert answer.status_code == 403 and "lacks the &#39;sync&#39; scope" in answer.text
    answer = client.post("/ui/workspaces/man/export", data={"branch": "b", "csrf": csrf})
    assert answer.status_code == 403 and "lacks the &#39;export&#39; scope" in answer.text
    time.sleep(0.3)
    assert runs(parts) == []


def test_expired_and_ended_sessions(client: TestClient, parts: Parts) -> None:
    signer = Sessions(parts.session_key, 3600)
    expired = Session("sid", "ci", time.time() - 1)
    client.cookies.set(COOKIE, signer.encode(expired), path="/ui/")
    assert client.get("/ui/").status_code == 303
    answer = client.post(
        "/ui/workspaces/man/sync", data={"kind": "sync", "csrf": signer.csrf_token(expired)}
    )
    assert answer.status_code == 401 and "expired" in answer.text
    # A session whose token is no longer configured has ended, signature or not.
    client.cookies.clear()
    gone = Session("sid2", "removed-token", time.time() + 3600)
    client.cookies.set(COOKIE, signer.encode(gone), path="/ui/")
    answer = client.get("/ui/")
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/login?notice=ended"
    assert "session has ended" in client.get("/ui/login?notice=ended").text
    # A cookie signed with another key is nobody's.
    client.cookies.clear()
    forged = Sessions(b"another key", 3600).encode(Session("sid3", "ci", time.time() + 3600))
    client.cookies.set(COOKIE, forged, path="/ui/")
    assert client.get("/ui/").status_code == 303
    assert runs(parts) == []


def test_sign_out_ends_the_session(client: TestClient) -> None:
    csrf = sign_in(client)
    assert client.post("/ui/logout", data={}).status_code == 403  # CSRF on sign-out too
    answer = client.post("/ui/logout", data={"csrf": csrf})
    assert answer.status_code == 303 and "signed-out" in answer.headers["location"]
    assert client.get("/ui/").status_code == 303


def test_sync_then_markup_is_escaped_everywhere(client: TestClient, parts: Parts) -> None:
    csrf = sign_in(client)
    diff = client.get("/ui/workspaces/man")
    assert diff.status_code == 200
    assert "<script>alert" not in diff.text and "<img src=x" not in diff.text
    assert "evil &lt;script&gt;alert(&#34;name&#34;)&lt;/script&gt;" in diff.text
    assert "&lt;img src=x onerror=" in diff.text
    assert 'man "<b>"' not in diff.text and "man &#34;&lt;b&gt;&#34;" in diff.text
    answer = client.post("/ui/workspaces/man/sync", data={"kind": "sync", "csrf": csrf})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/workspaces/man?notice=queued"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not [r for r in runs(parts) if r.finished_at]:
        time.sleep(0.1)
    assert str(parts.core.store.state("man").status) == "Synced"
    page = client.get("/ui/workspaces/man")
    assert "In step with" in page.text and "<script>alert" not in page.text
    assert "Roll back" in page.text  # the applied revision is now in the history
    listing = client.get("/ui/?tag=prod")
    assert "ws-auto" not in listing.text and "Synced" in listing.text


def test_rollback_needs_a_revision(client: TestClient, parts: Parts) -> None:
    csrf = sign_in(client)
    for revision in ("", "not-hex", "<script>"):
        answer = client.post(
            "/ui/workspaces/man/sync", data={"kind": "rollback", "revision": revision, "csrf": csrf}
        )
        assert answer.status_code == 422
    answer = client.post("/ui/workspaces/man/sync", data={"kind": "wipe", "csrf": csrf})
    assert answer.status_code == 422
    assert runs(parts) == []


def test_unknown_workspace_is_a_page(client: TestClient) -> None:
    sign_in(client)
    answer = client.get("/ui/workspaces/%3Cscript%3E")
    assert answer.status_code == 404 and "<script>" not in answer.text


def test_badge(client: TestClient) -> None:
    badge = client.get("/api/v1/workspaces/man/badge.svg")
    assert badge.status_code == 200
    assert badge.headers["content-type"].startswith("image/svg+xml")
    assert "Unknown" in badge.text and "<b>" not in badge.text and "&lt;b&gt;" in badge.text
    assert client.get("/api/v1/workspaces/auto/badge.svg").status_code == 404
    assert client.get("/api/v1/workspaces/nope/badge.svg").status_code == 404


def wait_for_runs(parts: Parts, count: int, ws: str = "man") -> list[Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = [r for r in runs(parts, ws) if r.finished_at]
        if len(done) >= count:
            return done
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} runs finished: {runs(parts, ws)}")


def test_roll_back_to_a_revision_applied_before(
    client: TestClient, parts: Parts, repo: tuple[str, WorkTree]
) -> None:
    _, tree = repo
    csrf = sign_in(client)
    first = tree.head()
    client.post("/ui/workspaces/man/sync", data={"kind": "sync", "csrf": csrf})
    wait_for_runs(parts, 1)
    write_step(tree, "plain/two")
    second = tree.commit("one more step")
    tree.push()
    client.post("/ui/workspaces/man/sync", data={"kind": "sync", "csrf": csrf})
    wait_for_runs(parts, 2)
    assert parts.core.store.state("man").last_applied_revision == second
    page = client.get("/ui/workspaces/man")
    assert f'<option value="{first}">' in page.text and f'<option value="{second}">' in page.text
    # The picker and the runs name the commit (message, author) and who synced it: the
    # signed-in token's name.
    assert "“one more step” by " in page.text and "by ci" in page.text
    assert parts.core.store.runs("man", 1)[0].actor == "ci"
    answer = client.post(
        "/ui/workspaces/man/sync", data={"kind": "rollback", "revision": first, "csrf": csrf}
    )
    assert answer.status_code == 303 and "notice=rollback" in answer.headers["location"]
    wait_for_runs(parts, 3)
    assert parts.core.store.state("man").last_applied_revision == first
    assert "plain/two" not in {s.name for s in parts.core.store.live_steps("man").values()}


def test_dry_run_applies_nothing(client: TestClient, parts: Parts) -> None:
    csrf = sign_in(client)
    answer = client.post("/ui/workspaces/man/sync", data={"kind": "dry-run", "csrf": csrf})
    assert answer.status_code == 303 and "notice=dry-run" in answer.headers["location"]
    (run,) = wait_for_runs(parts, 1)
    assert run.dry_run and run.created == 2
    assert parts.core.store.live_steps("man") == {}


def test_export_to_a_branch(client: TestClient, parts: Parts) -> None:
    csrf = sign_in(client)
    bad = client.post("/ui/workspaces/man/export", data={"branch": "no..dots", "csrf": csrf})
    assert bad.status_code == 422 and "not a valid branch name" in bad.text
    answer = client.post(
        "/ui/workspaces/man/export",
        data={"branch": "promote/man", "message": "from the console", "csrf": csrf},
    )
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert "notice=exported" in location and "branch=promote%2Fman" in location
    page = client.get(location)
    assert "Exported to branch <code>promote/man</code>" in page.text


def test_a_very_large_diff_is_cut_on_the_page(
    client: TestClient, repo: tuple[str, WorkTree]
) -> None:
    _, tree = repo
    write_step(tree, "huge", do="\n".join(f"call({i})" for i in range(3000)))
    tree.commit("a huge step")
    tree.push()
    sign_in(client)
    page = client.get("/ui/workspaces/man")
    assert page.status_code == 200
    assert "more lines not shown" in page.text and "call(2999)" not in page.text


def test_the_page_reads_the_remote_on_the_bounded_threads(client: TestClient, parts: Parts) -> None:
    """The drift on a workspace's page is a remote read, bounded as the API's diff is: with
    every slot taken, the page still shows, and says why its diff is missing."""
    sign_in(client)
    taken = [
        parts.remote_reads._slots.acquire(blocking=False) for _ in range(parts.remote_reads.limit)
    ]
    try:
        page = client.get("/ui/workspaces/man")
    finally:
        for _ in taken:
            parts.remote_reads._slots.release()
    assert page.status_code == 200
    assert "The plan cannot be made now" in page.text
    assert "reads from git remotes are already running" in page.text
    assert "No runs yet." in page.text  # the rest of the page, from the store, is shown


def test_a_rollback_to_a_commit_off_the_branch_answers_as_the_api_does(
    client: TestClient, parts: Parts, repo: tuple[str, WorkTree]
) -> None:
    # The commit is in the shared mirror (fetched for the branch it is on), but not on `main`.
    _, tree = repo
    tree.git("checkout", "--quiet", "-b", "feature")
    write_step(tree, "unreviewed")
    evil = tree.commit("not reviewed for main")
    tree.push(branch="feature")
    tree.git("checkout", "--quiet", "main")
    csrf = sign_in(client)
    answer = client.post(
        "/ui/workspaces/man/sync", data={"kind": "rollback", "revision": evil, "csrf": csrf}
    )
    api = client.post(
        "/api/v1/workspaces/man/sync",
        json={"revision": evil},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )
    assert answer.status_code == api.status_code == 422, answer.text
    # The same refusal, in the same words (the page escapes them).
    assert str(escape(api.json()["error"])) in answer.text, api.json()
    assert runs(parts) == []  # refused before anything was queued


def test_every_console_action_leaves_one_audit_line(
    client: TestClient, parts: Parts, caplog: pytest.LogCaptureFixture
) -> None:
    csrf = sign_in(client)
    caplog.set_level("INFO", logger="syncd.audit")
    posts = [
        ("sync", {"kind": "sync"}),
        ("sync", {"kind": "dry-run"}),
        ("suspend", {}),
        ("resume", {}),
        ("export", {"branch": "promote/audit"}),
        ("sync", {"kind": "rollback", "revision": "0" * 40}),  # not a commit: refused
    ]
    for verb, data in posts:
        path = "sync" if verb == "sync" else verb
        client.post(f"/ui/workspaces/man/{path}", data={**data, "csrf": csrf})
    lines = [r for r in caplog.records if r.name == "syncd.audit"]
    fields = [getattr(r, FIELDS) for r in lines]
    seen = [(f["action"], f["result"]) for f in fields]
    assert seen == [
        ("sync", "ok"),
        ("sync", "ok"),
        ("suspend", "ok"),
        ("resume", "ok"),
        ("export", "ok"),
        ("sync", "refused"),
    ], seen
    for f in fields:
        assert f["token"] == "ci" and f["via"] == "console"
        assert f["workspace"] == "man" and API_TOKEN not in str(f)
