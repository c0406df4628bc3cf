"""Console sessions that end, and guessing that is throttled, through the real app (Starlette's
TestClient over a real store):

- a cookie replayed after Sign out is refused;
- a token given a new value (or removed) and reloaded ends the sessions made with the old one;
- a link from another site never replaces a signed-in session's cookie;
- sign-in takes only a form from the console's own page, with a pre-session syncd made: a page
  on another port of the host that planted its own pre-session cannot sign a victim in;
- over https the cookies are `__Host-` ones, and a plain one (tossed by any page) is ignored;
- wrong tokens, at sign-in or as API bearer tokens, are answered 429 with Retry-After past the
  limit, for the console and the API alike, and logged as one summary line.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]
from starlette.testclient import TestClient

from syncd.app import Parts, build
from syncd.config import load_config
from syncd.http.console import mount_console
from syncd.http.console.sessions import COOKIE, PRE_COOKIE, Session, Sessions
from syncd.http.routes import create_app
from syncd.http.throttle import Throttle
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
from tests.support.console import SAME_ORIGIN, csrf_of, sign_in

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

NEW_TOKEN = "rotated-api-token-0123456789"
CROSS_SITE = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate"}
OTHER_PORT = {"sec-fetch-site": "same-site", "origin": "http://testserver:9999"}


@pytest.fixture
def config_path(tmp_path: Path, git_server: GitServer, repo: tuple[str, WorkTree]) -> Path:
    url, tree = repo
    write_step(tree, "plain/one")
    tree.commit("a step")
    tree.push()
    return write_config(tmp_path, [workspace("man", url, git_server, "manual")])


@pytest.fixture
def parts(config_path: Path, git_server: GitServer) -> Iterator[Parts]:
    parts = build(load_config(config_path, daemon_env(git_server)))
    yield parts
    parts.close()


def serve(parts: Parts, base_url: str = "http://testserver") -> TestClient:
    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        await parts.scheduler.start(startup_sync=False)
        yield
        await parts.scheduler.stop()

    app = create_app(parts, lifespan=lifespan)
    mount_console(app, parts)
    return TestClient(app, base_url=base_url, follow_redirects=False)


@pytest.fixture
def client(parts: Parts) -> Iterator[TestClient]:
    with serve(parts) as c:
        yield c


def set_cookies(answer: httpx.Response) -> list[str]:
    return answer.headers.get_list("set-cookie")


def cookie_set(answer: httpx.Response, name: str) -> bool:
    return any(c.startswith(f"{name}=") for c in set_cookies(answer))


def reload_with(parts: Parts, config_path: Path, git_server: GitServer, **env: str) -> None:
    """What SIGHUP does: read the config again and swap it in whole."""
    parts.swap_config(load_config(config_path, daemon_env(git_server) | env))


# -- sessions that end ------------------------------------------------------------------------


def test_a_cookie_replayed_after_sign_out_is_refused(client: TestClient, parts: Parts) -> None:
    csrf = sign_in(client)
    kept = client.cookies.get(COOKIE)
    assert kept
    answer = client.post("/ui/logout", data={"csrf": csrf}, headers=SAME_ORIGIN)
    assert answer.status_code == 303 and "signed-out" in answer.headers["location"]
    # The answer deletes the cookie; an attacker who copied it sends it again.
    client.cookies.set(COOKIE, kept, path="/ui/")
    page = client.get("/ui/")
    assert page.status_code == 303 and page.headers["location"] == "/ui/login?notice=ended"
    queued = client.post("/ui/workspaces/man/sync", data={"kind": "dry-run", "csrf": csrf})
    assert queued.status_code == 401
    assert client.get("/ui/events").status_code == 401
    time.sleep(0.3)
    assert parts.core.store.runs("man", 10) == []
    # A new sign-in works as before.
    client.cookies.clear()
    sign_in(client)


def test_a_token_given_a_new_value_ends_the_sessions_made_with_the_old_one(
    client: TestClient, parts: Parts, config_path: Path, git_server: GitServer
) -> None:
    csrf = sign_in(client)
    doc = yaml.safe_load(config_path.read_text())
    doc["tokens"][0]["token_env"] = "SYNCD_TEST_NEXT_TOKEN"  # same name "ci", another value
    config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    reload_with(parts, config_path, git_server, SYNCD_TEST_NEXT_TOKEN=NEW_TOKEN)
    page = client.get("/ui/")
    assert page.status_code == 303 and page.headers["location"] == "/ui/login?notice=ended"
    assert client.post("/ui/workspaces/man/sync", data={"csrf": csrf}).status_code == 401
    # The old value no longer signs in; the new one does, under the same name.
    form = client.get("/ui/login")
    old = client.post(
        "/ui/login", data={"token": API_TOKEN, "csrf": csrf_of(form.text)}, headers=SAME_ORIGIN
    )
    assert old.status_code == 401
    sign_in(client, NEW_TOKEN)
    assert "Signed in as <strong>ci</strong>" in client.get("/ui/").text


def test_a_removed_token_ends_its_sessions(
    client: TestClient, parts: Parts, config_path: Path, git_server: GitServer
) -> None:
    sign_in(client, READ_TOKEN)
    doc = yaml.safe_load(config_path.read_text())
    doc["tokens"] = [t for t in doc["tokens"] if t["name"] != "viewer"]
    config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    reload_with(parts, config_path, git_server)
    page = client.get("/ui/")
    assert page.status_code == 303 and page.headers["location"] == "/ui/login?notice=ended"


def test_a_session_cookie_without_the_token_digest_is_refused(
    client: TestClient, parts: Parts
) -> None:
    """A cookie signed with the right key but made before tokens were bound (or by anything
    that knows only the token's name) is not a session."""
    signer = Sessions(parts.session_key, 3600)
    nameless = Session("sid", "ci", time.time() + 3600)  # no digest of the token's value
    client.cookies.set(COOKIE, signer.encode(nameless), path="/ui/")
    assert client.get("/ui/").status_code == 303


def test_a_cross_site_link_never_replaces_a_signed_in_session(client: TestClient) -> None:
    sign_in(client)
    session = client.cookies.get(COOKIE)
    # A link from another site: the browser leaves the SameSite=Strict cookie out.
    client.cookies.clear()
    for path in ("/ui/", "/ui/workspaces/man?tag=x", "/ui/login", "/ui/nowhere"):
        answer = client.get(path, headers=CROSS_SITE)
        assert not cookie_set(answer, COOKIE), (path, set_cookies(answer))
    # A page that needs a session offers a same-site link to itself, and sets nothing.
    answer = client.get("/ui/workspaces/man?tag=x", headers=CROSS_SITE)
    assert answer.status_code == 200 and set_cookies(answer) == []
    assert 'href="/ui/workspaces/man?tag=x"' in answer.text
    # Back in the browser's jar, the session was never touched: following that link works.
    client.cookies.set(COOKIE, session or "", path="/ui/")
    assert client.get("/ui/workspaces/man", headers=SAME_ORIGIN).status_code == 200


def test_a_pre_session_planted_from_another_port_cannot_sign_a_victim_in(parts: Parts) -> None:
    """Cookies ignore ports: a page on http://host:9999 can set cookies for host:8080. It
    plants a pre-session it got from syncd and posts the attacker's token with its CSRF
    token: the browser calls that `same-site`, not `same-origin`, and the form is refused."""
    with serve(parts) as attacker:
        form = attacker.get("/ui/login")
        planted = attacker.cookies.get(PRE_COOKIE) or attacker.cookies.get(COOKIE)
        csrf = csrf_of(form.text)
    assert planted
    with serve(parts) as victim:
        victim.cookies.set(PRE_COOKIE, planted, path="/ui/")
        victim.cookies.set(COOKIE, planted, path="/ui/")  # the landed release's one cookie
        answer = victim.post(
            "/ui/login", data={"token": READ_TOKEN, "csrf": csrf}, headers=OTHER_PORT
        )
        assert answer.status_code == 403, answer.text
        assert "another site or another port" in answer.text
        assert not cookie_set(answer, COOKIE)
        assert victim.get("/ui/").status_code == 303  # not signed in as anyone


def test_a_pre_session_syncd_did_not_make_is_refused(client: TestClient) -> None:
    """A pre-session and its CSRF token made with another key (another server's, another
    syncd's) sign nobody in, whatever the token."""
    other = Sessions(b"another server's key", 3600)
    pre = other.new(time.time())
    client.cookies.set(PRE_COOKIE, other.encode(pre), path="/ui/")
    answer = client.post(
        "/ui/login",
        data={"token": API_TOKEN, "csrf": other.csrf_token(pre)},
        headers=SAME_ORIGIN,
    )
    assert answer.status_code == 403 and "security token" in answer.text
    # A signed-in session's cookie is no pre-session either, and the other way round.
    signer = Sessions(b"k", 3600)
    assert signer.decode_pre(signer.encode(signer.new(time.time(), None)), time.time())
    assert signer.decode(signer.encode(signer.new(time.time(), None)), time.time()) is None


def test_actions_come_only_from_the_consoles_own_pages(client: TestClient, parts: Parts) -> None:
    csrf = sign_in(client)
    answer = client.post("/ui/workspaces/man/sync", data={"csrf": csrf}, headers=OTHER_PORT)
    assert answer.status_code == 403 and "Nothing was changed" in answer.text
    answer = client.post(
        "/ui/logout", data={"csrf": csrf}, headers={"sec-fetch-site": "cross-site"}
    )
    assert answer.status_code == 403
    assert client.get("/ui/").status_code == 200  # still signed in
    time.sleep(0.3)
    assert parts.core.store.runs("man", 10) == []


def test_plain_http_keeps_the_cookie_name_and_path(client: TestClient) -> None:
    form = client.get("/ui/login")
    (pre,) = set_cookies(form)
    assert pre.startswith(f"{PRE_COOKIE}=") and "Path=/ui/" in pre and "Secure" not in pre
    answer = client.post(
        "/ui/login", data={"token": API_TOKEN, "csrf": csrf_of(form.text)}, headers=SAME_ORIGIN
    )
    (session,) = [c for c in set_cookies(answer) if c.startswith(f"{COOKIE}=")]
    assert "Path=/ui/" in session and "HttpOnly" in session and "Secure" not in session
    assert API_TOKEN not in " ".join(set_cookies(answer))


def test_over_https_the_cookies_take_the_host_prefix(parts: Parts) -> None:
    with serve(parts, "https://testserver") as c:
        form = c.get("/ui/login")
        (pre,) = set_cookies(form)
        assert pre.startswith(f"__Host-{PRE_COOKIE}=")
        assert "Secure" in pre and "Path=/;" in pre + ";" and "Domain" not in pre
        answer = c.post(
            "/ui/login", data={"token": API_TOKEN, "csrf": csrf_of(form.text)}, headers=SAME_ORIGIN
        )
        assert answer.status_code == 303, answer.text
        (session,) = [s for s in set_cookies(answer) if s.startswith(f"__Host-{COOKIE}=")]
        assert "Secure" in session and "Path=/;" in session + ";" and "Domain" not in session
        good = c.cookies.get(f"__Host-{COOKIE}")
        assert good and c.get("/ui/").status_code == 200
        # A plain `syncd_session` cookie (which any page of the host may set) is not read here.
        c.cookies.clear()
        c.cookies.set(COOKIE, good, path="/ui/")
        assert c.get("/ui/").status_code == 303


# -- throttled guessing -------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_wrong_tokens_are_throttled_per_address_for_the_console_and_the_api(
    client: TestClient, parts: Parts, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    parts.guesses = Throttle(limit=10, window=60.0, clock=clock, summary_every=3.0)
    caplog.set_level(logging.WARNING, logger="syncd.auth")
    form = client.get("/ui/login")
    csrf = csrf_of(form.text)
    for i in range(5):
        answer = client.post(
            "/ui/login", data={"token": f"wrong-{i}", "csrf": csrf}, headers=SAME_ORIGIN
        )
        assert answer.status_code == 401
    for i in range(5):
        answer = client.get(
            "/api/v1/workspaces", headers={"Authorization": f"Bearer wrong-token-{i}"}
        )
        assert answer.status_code == 401
    # The 11th try, at either door, and even with the right token: 429 until the window frees.
    good = {"Authorization": f"Bearer {API_TOKEN}"}
    for answer in (
        client.get("/api/v1/workspaces", headers=good),
        client.post("/ui/login", data={"token": API_TOKEN, "csrf": csrf}, headers=SAME_ORIGIN),
    ):
        assert answer.status_code == 429, answer.text
        assert answer.headers["retry-after"] == "60"
    # What needs no token is not throttled.
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/api/v1/workspaces").status_code == 401  # no token: not a guess
    # The oldest failure leaves the window: one more try.
    clock.now += 30
    assert client.get("/api/v1/workspaces", headers=good).headers["retry-after"] == "30"
    clock.now += 30.5
    assert client.get("/api/v1/workspaces", headers=good).status_code == 200
    sign_in(client)
    # One summary line for the window, never a line per failure; no token in it.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(r.name == "syncd.auth" for r in caplog.records):
        time.sleep(0.05)  # (the audit's sign-in lines come first)
    lines = [r for r in caplog.records if r.name == "syncd.auth"]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    summary = lines[0].syncd_fields  # type: ignore[attr-defined]
    assert summary["failed"] == 10 and summary["refused_429"] >= 3
    assert summary["top_address"] == "testclient" and summary["top_failed"] == 10
    assert "wrong-" not in str(summary) and API_TOKEN not in str(summary)
