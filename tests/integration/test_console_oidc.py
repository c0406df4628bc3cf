"""Signing in to the console with OpenID Connect, without a browser (the flow followed by hand
with httpx, against the app through Starlette's TestClient): a real provider on loopback
(oidc-provider-mock) for groups mapped to roles, a replayed answer or code, a rotated signing
key; a provider stub of the test's own for the ID tokens a working provider will not make
(another issuer or audience, expired, a wrong nonce, unsigned); the provider down, a tampered
state, a callback with no sign-in under way. None of those leaves a session; each is audited.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from syncd.app import Parts, build
from syncd.config import load_config
from syncd.core.audit_model import AuditEntry, AuditQuery
from syncd.http.console import mount_console
from syncd.http.console.sessions import COOKIE
from syncd.http.routes import create_app
from tests.support import API_TOKEN, GitServer, daemon_env, workspace, write_config
from tests.support.console import SAME_ORIGIN, csrf_of
from tests.support.daemon import free_port
from tests.support.oidc import (
    CLIENT_SECRET,
    SECRET_ENV,
    MockProvider,
    StubProvider,
    authorize,
    callback,
    console_config,
    mock_provider,
    start,
    walk,
)

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

REDIRECT = "http://127.0.0.1/ui/oidc/callback"  # the provider sends the code there; taken by hand
USERS = {
    "alice": {"preferred_username": "alice", "groups": ["ops", "staff"]},
    "bob": {"email": "bob@example.com", "groups": ["developers"]},
    "carol": {"preferred_username": "carol", "groups": ["nobody"]},
}


@pytest.fixture(scope="module")
def provider() -> Iterator[MockProvider]:
    with mock_provider(USERS) as p:
        yield p


@pytest.fixture
def stub() -> Iterator[StubProvider]:
    with StubProvider().running() as s:
        yield s


class Console:
    """The app over a real SQLite store, with `console:` as the test says."""

    def __init__(self, tmp_path: Path, git_server: GitServer, **console: Any) -> None:
        url = "https://127.0.0.1:9/none.git"  # never fetched: no page here reads git
        self.workspaces = [
            workspace("dev", url, git_server, "manual", tags=["dev"]),
            workspace("prod", url, git_server, "manual", tags=["prod"]),
        ]
        self.tmp_path, self.git_server = tmp_path, git_server
        self.parts: Parts = build(self.load(console))

    def load(self, console: dict[str, Any]) -> Any:
        path = write_config(self.tmp_path, self.workspaces, console=console)
        return load_config(path, daemon_env(self.git_server) | {SECRET_ENV: CLIENT_SECRET})

    def client(self) -> TestClient:
        @contextlib.asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[None]:
            yield

        app = create_app(self.parts, lifespan=lifespan)
        mount_console(app, self.parts)
        return TestClient(app, follow_redirects=False)

    def audit(self) -> list[AuditEntry]:
        return self.parts.core.store.audit_entries(AuditQuery(limit=100))


@pytest.fixture
def make(tmp_path: Path, git_server: GitServer) -> Iterator[Any]:
    made: list[Console] = []

    def make(**console: Any) -> Console:
        made.append(Console(tmp_path, git_server, **console))
        return made[-1]

    yield make
    for c in made:
        c.parts.close()


def listed(page: str) -> set[str]:
    return set(re.findall(r'data-ws="([^"]+)"', page))


def signed_out(client: TestClient) -> bool:
    return str(client.get("/ui/").headers.get("location")).startswith("/ui/login")


def test_groups_map_to_roles_as_configured_now(make: Any, provider: MockProvider) -> None:
    console = make(**console_config(provider.issuer, REDIRECT))
    with console.client() as alice, console.client() as bob, console.client() as carol:
        answer = walk(alice, "alice")
        assert answer.status_code == 200 and 'http-equiv="refresh"' in answer.text
        assert COOKIE in answer.headers["set-cookie"]
        page = alice.get("/ui/")
        assert listed(page.text) == {"dev", "prod"} and "Signed in as <strong>alice" in page.text

        walk(bob, "bob")  # a developer: the workspaces tagged dev, and no other is there
        page = bob.get("/ui/")
        assert listed(page.text) == {"dev"} and "bob@example.com" in page.text
        assert bob.get("/ui/workspaces/prod").status_code == 404
        sync = bob.post(
            "/ui/workspaces/prod/sync", data={"csrf": csrf_of(page.text)}, headers=SAME_ORIGIN
        )
        assert sync.status_code == 404

        walk(carol, "carol")  # signed in, with nothing: told so
        page = carol.get("/ui/")
        assert page.status_code == 403
        assert "Signed in as carol, but your groups give no workspace" in page.text

        # A role removed at a reload: its members hold nothing from the next request on.
        config = console_config(provider.issuer, REDIRECT)
        config["roles"] = config["roles"][1:]
        console.parts.core.config = console.load(config)
        assert alice.get("/ui/").status_code == 403
        assert listed(bob.get("/ui/").text) == {"dev"}

    signed_in = [e for e in console.audit() if e.action == "sign_in" and e.result == "ok"]
    assert {e.actor for e in signed_in} == {"oidc:alice", "oidc:bob", "oidc:carol"}
    assert all(e.via == "console" for e in signed_in)
    assert CLIENT_SECRET not in repr(console.parts.config)


def test_sign_out_ends_the_session_everywhere(make: Any, provider: MockProvider) -> None:
    console = make(**console_config(provider.issuer, REDIRECT))
    with console.client() as client:
        walk(client, "alice")
        kept = dict(client.cookies)
        csrf = csrf_of(client.get("/ui/").text)
        assert client.post("/ui/logout", data={"csrf": csrf}, headers=SAME_ORIGIN).is_redirect
        client.cookies.update(kept)  # a copy of the cookie, replayed
        assert client.get("/ui/").headers["location"] == "/ui/login?notice=ended"
    assert [e.actor for e in console.audit() if e.action == "sign_out"] == ["oidc:alice"]


def test_a_replayed_answer_or_code_signs_no_one_in(make: Any, provider: MockProvider) -> None:
    console = make(**console_config(provider.issuer, REDIRECT))
    with console.client() as client:
        there = start(client)
        kept = dict(client.cookies)  # with the sign-in under way
        back = authorize(there, "alice")
        assert callback(client, back).status_code == 200
        # The same answer again: the sign-in under way is gone from this browser...
        again = callback(client, back)
        assert again.status_code == 400 and "no sign-in is under way" in again.text
        # ...and, with a copy of its cookie, its state has been used.
        client.cookies.update(kept)
        again = callback(client, back)
        assert again.status_code == 400 and "used already" in again.text
    with console.client() as other:
        # The code, with a sign-in of this browser's own: the provider refuses it.
        fresh = authorize(start(other), "alice")
        state = re.search(r"state=([^&]+)", fresh)
        old_code = re.search(r"code=([^&]+)", back)
        assert state and old_code
        answer = callback(other, f"/ui/oidc/callback?code={old_code[1]}&state={state[1]}")
        assert answer.status_code == 401 and "invalid_grant" in answer.text
        assert signed_out(other)


def test_a_rotated_signing_key_is_fetched_again(
    make: Any, provider: MockProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "werkzeug")  # the provider's request lines
    console = make(**console_config(provider.issuer, REDIRECT))
    with console.client() as first, console.client() as second:
        assert walk(first, "alice").status_code == 200  # the keys are cached
        provider.rotate()
        answer = walk(second, "alice")
        assert answer.status_code == 200, answer.text
        assert listed(second.get("/ui/").text) == {"dev", "prod"}
    # Cached, then fetched again once: the new key was not among the cached ones.
    assert caplog.text.count("GET /jwks") == 2


BAD_TOKENS: dict[str, tuple[dict[str, Any], str]] = {
    "another issuer": ({"iss": "https://evil.example.com"}, 'issuer is "https://evil'),
    "another audience": ({"aud": "someone-else"}, 'is for "someone-else", not for this console'),
    "several audiences, no azp": ({"aud": ["syncd-console", "other"]}, "issued to missing"),
    "expired": ({"exp": 1_000_000_000, "iat": 999_999_000}, "has expired"),
    "a wrong nonce": ({"nonce": "not-the-one"}, "nonce is not the one"),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_an_id_token_that_fails_a_check_signs_no_one_in(
    make: Any, stub: StubProvider, case: str
) -> None:
    stub.claims, reason = BAD_TOKENS[case]
    console = make(**console_config(stub.issuer, REDIRECT))
    with console.client() as client:
        answer = walk(client)
        assert answer.status_code == 401, answer.text
        assert reason in answer.text.replace("&#34;", '"')
        assert COOKIE not in answer.headers.get("set-cookie", "")
        assert signed_out(client)
    refused = [e for e in console.audit() if e.action == "sign_in"]
    assert [(e.actor, e.result) for e in refused] == [("oidc:mallory", "refused")]


def test_unsigned_tokens_unknown_keys_and_huge_answers_are_refused(
    make: Any, stub: StubProvider
) -> None:
    console = make(**console_config(stub.issuer, REDIRECT))
    with console.client() as client:
        stub.unsigned = True
        answer = walk(client)
        assert answer.status_code == 401 and "signed with &#39;none&#39;" in answer.text
        stub.unsigned, stub.padding = False, 300 * 1024  # too large an answer is not read on
        answer = walk(client)
        assert answer.status_code == 502 and "keys (JWKS) is over 256 KiB" in answer.text
        stub.padding, stub.header = 0, {"kid": "not-a-key-of-theirs"}
        answer = walk(client)
        assert answer.status_code == 401 and "kid" in answer.text
        assert signed_out(client)
        stub.header = {}
        assert walk(client).status_code == 200  # the stub itself is fine


def test_a_tampered_state_or_no_sign_in_under_way(make: Any, stub: StubProvider) -> None:
    console = make(**console_config(stub.issuer, REDIRECT))
    with console.client() as client:
        back = authorize(start(client))
        tampered = re.sub(r"state=[^&]+", "state=forged", back)
        answer = callback(client, tampered)
        assert answer.status_code == 400 and "not this browser" in answer.text
        assert signed_out(client)
    with console.client() as stranger:
        answer = stranger.get("/ui/oidc/callback?code=x&state=y")
        assert answer.status_code == 400 and "no sign-in is under way" in answer.text
        assert signed_out(stranger)


def test_the_provider_down_is_a_clear_page(make: Any) -> None:
    console = make(**console_config(f"http://127.0.0.1:{free_port()}", REDIRECT))
    with console.client() as client:
        answer = client.get("/ui/oidc/start")
        assert answer.status_code == 502
        assert "discovery document could not be reached" in answer.text
        assert signed_out(client)


def test_token_sign_in_can_be_turned_off(make: Any, stub: StubProvider) -> None:
    console = make(**console_config(stub.issuer, REDIRECT, token_sign_in=False))
    with console.client() as client:
        form = client.get("/ui/login")
        assert "Sign in with 127.0.0.1" in form.text and 'name="token"' not in form.text
        answer = client.post("/ui/login", data={"token": API_TOKEN}, headers=SAME_ORIGIN)
        assert answer.status_code == 403 and "turned off" in answer.text
        assert signed_out(client)


# Every form of the console that changes something, and the scope it needs.
FORMS = {"sync": "sync", "export": "export", "suspend": "sync", "resume": "sync"}


def test_every_console_form_keeps_a_role_to_its_workspaces(
    make: Any, provider: MockProvider
) -> None:
    """A developer (read, sync on tag:dev): every form on prod is refused as if prod did not
    exist (404), a form needing a scope the role lacks on dev is refused (403), one it holds
    gets past both; each leaves exactly one audit entry under `oidc:bob`."""
    console = make(**console_config(provider.issuer, REDIRECT))
    with console.client() as bob:
        walk(bob, "bob")
        csrf = csrf_of(bob.get("/ui/").text)
        for form, scope in FORMS.items():
            for ws_id in ("prod", "dev"):
                before = len(console.audit())
                answer = bob.post(
                    f"/ui/workspaces/{ws_id}/{form}", data={"csrf": csrf}, headers=SAME_ORIGIN
                )
                said = f"{form} {ws_id}: {answer.status_code}"
                if ws_id == "prod":
                    assert answer.status_code == 404, said
                elif scope == "export":
                    assert answer.status_code == 403, said
                else:
                    assert answer.status_code not in (403, 404), said
                new = console.audit()[: len(console.audit()) - before]
                assert [(e.actor, e.workspace) for e in new] == [("oidc:bob", ws_id)], said
