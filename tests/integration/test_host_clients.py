"""The git host clients (syncd/report/hosts) against fake hosts that check every request against
each host's published API description (tests/support/hostapi): statuses, the one comment kept
in place, a pull request's head, how failures are told (transient or not, never with a secret),
a GitHub App's token life, and answers that are not what the API describes."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from syncd.config.types import GitHubAppConfig, ProviderConfig, ProviderKind, Secret
from syncd.report.host import CommitStatus, Host, HostError, State
from syncd.report.hosts import build_host
from syncd.report.hosts.http import MAX_ANSWER
from tests.support.hostapi.gitea import FakeGitea
from tests.support.hostapi.github import FakeGitHub
from tests.support.hostapi.gitlab import FakeGitLab
from tests.support.hostapi.server import FakeHost, Reply

TOKEN = "tok-S3CRET-value-0123456789"
SHA = "a" * 40
MARKER = "<!-- syncd:plan -->"
REPO = {"github": "acme/steps", "gitlab": "acme/infra/steps", "gitea": "acme/steps"}
API = {"github": "", "gitlab": "/api/v4", "gitea": "/api/v1"}
FAKES: dict[str, Callable[[trustme.CA], FakeHost]] = {
    "github": FakeGitHub,
    "gitlab": FakeGitLab,
    "gitea": FakeGitea,
}


class Clock:
    """The time the client and the fake share; a test moves it."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    authority = trustme.CA()
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, path


@pytest.fixture(scope="module")
def app_key() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def start(kind: str, ca: tuple[trustme.CA, Path], clock: Clock) -> FakeHost:
    fake = FAKES[kind](ca[0])
    fake.clock = clock
    fake.tokens.add(TOKEN)
    return fake.start()


def provider(kind: str, fake: FakeHost, ca_file: Path, token: str = TOKEN) -> ProviderConfig:
    k: ProviderKind = "github" if kind == "github" else "gitlab" if kind == "gitlab" else "gitea"
    return ProviderConfig(
        name=f"my-{kind}",
        kind=k,
        api_url=fake.url + API[kind],
        token=Secret(token, "env TEST_TOKEN"),
        ca_file=ca_file,
        timeout=5.0,
    )


@pytest.fixture(params=["github", "gitlab", "gitea"])
def hosted(
    request: pytest.FixtureRequest, ca: tuple[trustme.CA, Path]
) -> Iterator[tuple[str, FakeHost, Host]]:
    kind = str(request.param)
    fake = start(kind, ca, Clock())
    host = build_host(provider(kind, fake, ca[1]))
    yield kind, fake, host
    fake.stop()


T = TypeVar("T")


def run(host: Host, call: Coroutine[object, object, T]) -> T:
    """One call on a loop of its own; the client is closed with it (its connections belong to
    that loop), and made anew by the next call."""

    async def closing() -> T:
        try:
            return await call
        finally:
            await host.aclose()

    return asyncio.run(closing())


def test_status_comment_and_pull_head(hosted: tuple[str, FakeHost, Host]) -> None:
    kind, fake, host = hosted
    repo = REPO[kind]
    fake.set_pull_head(repo, 7, SHA)  # type: ignore[attr-defined]
    long = "applied: +1 ~2 -3 " + "x" * 400

    async def scenario() -> str:
        await host.set_status(repo, SHA, CommitStatus(State.PENDING, "syncd/prod", "running"))
        await host.set_status(
            repo, SHA, CommitStatus(State.FAILURE, "syncd/prod", long, "https://syncd.example/w")
        )
        await host.upsert_comment(repo, 7, MARKER, MARKER + "\nfirst")
        await host.upsert_comment(repo, 7, MARKER, MARKER + "\nsecond")
        return await host.pull_head(repo, 7)

    assert run(host, scenario()) == SHA
    assert fake.violations == []
    statuses = fake.statuses[(repo, SHA)]  # type: ignore[attr-defined]
    assert len(statuses) == 2
    state_key = "state" if kind == "github" else "status"
    assert [s[state_key] for s in statuses] == (
        ["pending", "failed"] if kind == "gitlab" else ["pending", "failure"]
    )
    last = statuses[-1]
    assert len(last["description"]) <= (140 if kind == "github" else 255)
    assert last["target_url"] == "https://syncd.example/w"
    comments = fake.notes if kind == "gitlab" else fake.comments  # type: ignore[attr-defined]
    assert [c["body"] for c in comments[(repo, 7)]] == [MARKER + "\nsecond"]
    # The first status had no target_url: none was sent (not an empty one).
    first_post = next(e for e in fake.log if e.method == "POST")
    assert "target_url" not in first_post.body
    assert {e.auth for e in fake.log} == {
        "bearer" if kind == "github" else "token" if kind == "gitea" else "private-token"
    }


def test_marker_found_past_the_first_page(hosted: tuple[str, FakeHost, Host]) -> None:
    kind, fake, host = hosted
    repo = REPO[kind]
    others = [f"comment {i}" for i in range(100)]
    if isinstance(fake, FakeGitLab):
        fake.add_notes(repo, 3, ["added 1 commit"], system=True)
        fake.add_notes(repo, 3, others[:99])
        fake.add_notes(repo, 3, [MARKER + " old", MARKER + " a second marker"])
    else:
        fake.add_comments(repo, 3, [*others, MARKER + " old", MARKER + " a second marker"])  # type: ignore[attr-defined]
    run(host, host.upsert_comment(repo, 3, MARKER, MARKER + " new"))
    assert fake.violations == []
    kept = (fake.notes if kind == "gitlab" else fake.comments)[(repo, 3)]  # type: ignore[attr-defined]
    assert len(kept) == 102  # nothing made: the marked one was edited
    assert [c["body"] for c in kept if MARKER in c["body"]] == [
        MARKER + " new",
        MARKER + " a second marker",
    ]
    lists = [e.path for e in fake.log if e.method == "GET"]
    if kind == "gitea":  # Gitea lists every comment of an issue in one answer
        assert len(lists) == 1
    else:
        assert len(lists) == 2 and "page=2" in lists[1] and "per_page=100" in lists[1]


def test_a_5xx_is_transient_and_not_retried_by_the_client(
    hosted: tuple[str, FakeHost, Host],
) -> None:
    kind, fake, host = hosted
    fake.fail_next(1, 500, {"message": "boom\x1b[31m" + "y" * 500})
    status = CommitStatus(State.SUCCESS, "syncd/prod", "applied: +1 ~0 -0")
    with pytest.raises(HostError) as caught:
        run(host, host.set_status(REPO[kind], SHA, status))
    assert caught.value.transient
    message = str(caught.value)
    assert f"provider 'my-{kind}'" in message and "HTTP 500" in message and "boom" in message
    assert "\x1b" not in message and len(message) < 400
    assert len(fake.log) == 1  # the reporter retries, not the client
    run(host, host.set_status(REPO[kind], SHA, status))
    assert len(fake.statuses[(REPO[kind], SHA)]) == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["github", "gitlab", "gitea"])
def test_a_refused_token_is_not_transient_and_never_shown(
    kind: str, ca: tuple[trustme.CA, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = start(kind, ca, Clock())
    wrong = "wrong-" + TOKEN
    host = build_host(provider(kind, fake, ca[1], token=wrong))
    try:
        with pytest.raises(HostError) as caught:
            run(host, host.pull_head(REPO[kind], 1))
    finally:
        fake.stop()
    assert not caught.value.transient
    assert f"'my-{kind}'" in str(caught.value) and "HTTP 401" in str(caught.value)
    assert wrong not in str(caught.value) and wrong not in caplog.text
    assert fake.violations == []


@pytest.mark.parametrize("kind", ["github", "gitlab"])
def test_a_token_no_header_can_carry_is_never_quoted(
    kind: str, ca: tuple[trustme.CA, Path], caplog: pytest.LogCaptureFixture
) -> None:
    # The HTTP library refuses a header with a line end in it, and its message quotes the
    # header (as a repr: `\\n`); the config drops such line ends, the client must not tell.
    # (httpcore's own DEBUG lines quote it too: syncd keeps httpx and httpcore at WARNING.)
    caplog.set_level(logging.DEBUG, logger="syncd")
    fake = start(kind, ca, Clock())
    lined = TOKEN + "\n"
    host = build_host(provider(kind, fake, ca[1], token=lined))
    try:
        with pytest.raises(HostError) as caught:
            run(host, host.pull_head(REPO[kind], 1))
    finally:
        fake.stop()
    assert TOKEN not in str(caught.value) and TOKEN not in caplog.text
    assert f"'my-{kind}'" in str(caught.value)


def test_rate_limits_say_when_to_come_back(hosted: tuple[str, FakeHost, Host]) -> None:
    kind, fake, host = hosted
    fake.set_pull_head(REPO[kind], 1, SHA)  # type: ignore[attr-defined]
    fake.fail_next(1, 429, {"message": "slow down"}, **{"Retry-After": "7"})
    with pytest.raises(HostError) as caught:
        run(host, host.pull_head(REPO[kind], 1))
    assert caught.value.transient and caught.value.retry_after == 7
    if kind == "github":  # the primary rate limit: 403, remaining 0, reset at an epoch second
        reset = int(fake.clock()) + 120
        fake.fail_next(
            1,
            403,
            {"message": "API rate limit exceeded"},
            **{"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
        )
        with pytest.raises(HostError) as caught:
            run(host, host.pull_head(REPO[kind], 1))
        assert caught.value.transient and 100 < (caught.value.retry_after or 0) <= 120


def test_answers_that_are_not_what_the_api_describes(hosted: tuple[str, FakeHost, Host]) -> None:
    kind, fake, host = hosted
    fake.send_next(Reply(200, b"<html>proxy error</html>", {"Content-Type": "text/html"}))
    with pytest.raises(HostError, match="not JSON"):
        run(host, host.pull_head(REPO[kind], 1))
    fake.send_next(Reply(200, b"[" + b"1," * (MAX_ANSWER // 2) + b"1]"))
    with pytest.raises(HostError, match="over 4 MiB"):
        run(host, host.pull_head(REPO[kind], 1))
    fake.send_next(Reply(200, {"head": {}, "number": 1}))
    with pytest.raises(HostError, match="'sha'") as caught:
        run(host, host.pull_head(REPO[kind], 1))
    assert f"'my-{kind}'" in str(caught.value) and not caught.value.transient


def test_the_fakes_refuse_what_their_api_does_not_describe(
    hosted: tuple[str, FakeHost, Host], ca: tuple[trustme.CA, Path]
) -> None:
    """The validation is not vacuous: a bad state, a query parameter the operation does not
    take and an unknown path each count as a violation."""
    kind, fake, _ = hosted
    owner, _, name = REPO[kind].partition("/")
    path = (
        f"/api/v4/projects/{REPO[kind].replace('/', '%2F')}/statuses/{SHA}"
        if kind == "gitlab"
        else f"{API[kind]}/repos/{owner}/{name}/statuses/{SHA}"
    )
    headers = {
        "Authorization": f"{'token' if kind == 'gitea' else 'Bearer'} {TOKEN}",
        "PRIVATE-TOKEN": TOKEN,
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "Content-Type": "application/json",
    }
    verify = ssl.create_default_context(cafile=str(ca[1]))
    with httpx.Client(base_url=fake.url, verify=verify, headers=headers) as client:
        bad_state = client.post(path, content=json.dumps({"state": "bogus"}))
        typo = client.post(path + "?per_page=1", content=json.dumps({"state": "success"}))
        unknown = client.get(f"{API[kind]}/nowhere")
    assert bad_state.status_code in (400, 422) and typo.status_code in (400, 422)
    assert unknown.status_code == 400
    assert len(fake.violations) >= 3
    assert any("bogus" in v for v in fake.violations)


def app_host(
    ca: tuple[trustme.CA, Path], app_key: tuple[str, str], clock: Clock
) -> tuple[FakeGitHub, Host]:
    fake = start("github", ca, clock)
    assert isinstance(fake, FakeGitHub)
    fake.tokens.clear()
    fake.install_app(12345, 678, app_key[1])
    fake.set_pull_head("acme/steps", 1, SHA)
    config = ProviderConfig(
        name="my-app",
        kind="github",
        api_url=fake.url,
        app=GitHubAppConfig(12345, 678, Secret(app_key[0], "file /etc/syncd/app.pem")),
        ca_file=ca[1],
    )
    return fake, build_host(config, clock)


def test_a_github_app_token_is_fetched_once_and_again_when_it_ends(
    ca: tuple[trustme.CA, Path], app_key: tuple[str, str]
) -> None:
    clock = Clock()
    fake, host = app_host(ca, app_key, clock)

    async def scenario() -> None:
        await host.pull_head("acme/steps", 1)
        await host.pull_head("acme/steps", 1)
        assert fake.tokens_issued == 1
        clock.now += 3600 - 300 + 1  # under five minutes left: a new one
        await host.pull_head("acme/steps", 1)
        assert fake.tokens_issued == 2
        fake.revoke_installation_tokens()  # the cached token is refused: one new one, one retry
        await host.pull_head("acme/steps", 1)
        assert fake.tokens_issued == 3

    try:
        run(host, scenario())
    finally:
        fake.stop()
    assert fake.violations == []
    token_posts = [e for e in fake.log if e.path.endswith("/access_tokens")]
    assert len(token_posts) == 3 and all(e.body is None for e in token_posts)


def test_a_github_app_that_github_refuses_fails_once_without_its_secrets(
    ca: tuple[trustme.CA, Path], app_key: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    clock = Clock()
    fake, host = app_host(ca, app_key, clock)
    fake.install_app(99999, 678, app_key[1])  # GitHub knows the key under another App id
    try:
        with pytest.raises(HostError) as caught:
            run(host, host.pull_head("acme/steps", 1))
    finally:
        fake.stop()
    message = str(caught.value)
    assert "HTTP 401" in message and "installation token for app 12345" in message
    assert not caught.value.transient
    assert len([e for e in fake.log if e.path.endswith("/access_tokens")]) == 1
    assert "PRIVATE KEY" not in message and "PRIVATE KEY" not in caplog.text
    assert "eyJ" not in message and "eyJ" not in caplog.text  # no JWT


def test_only_https_api_urls(ca: tuple[trustme.CA, Path]) -> None:
    config = ProviderConfig(
        name="plain", kind="gitea", api_url="http://127.0.0.1:1/api/v1", token=Secret("t", "env")
    )
    with pytest.raises(HostError, match="https://"):
        build_host(config)


def test_a_slow_or_gone_host_is_transient(ca: tuple[trustme.CA, Path]) -> None:
    fake = start("gitea", ca, Clock())
    fake.delay = 2.0  # a slow host; the client gives up after its timeout
    config = ProviderConfig(
        name="slow",
        kind="gitea",
        api_url=fake.url + "/api/v1",
        token=Secret(TOKEN, "env T"),
        ca_file=ca[1],
        timeout=0.2,
    )
    host = build_host(config)
    try:
        with pytest.raises(HostError, match=r"no answer within 0\.2 s") as caught:
            run(host, host.pull_head("acme/steps", 1))
        assert caught.value.transient
    finally:
        fake.stop()  # also cuts the fake's wait short
    with pytest.raises(HostError) as caught:  # nothing listens there now
        run(host, host.pull_head("acme/steps", 1))
    assert caught.value.transient and "'slow'" in str(caught.value)
