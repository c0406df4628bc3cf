"""Webhooks: provider detection, signatures, payload reading and matching. Pure, fast."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.core.errors import SyncdError
from syncd.core.model import WEBHOOK_PROVIDERS
from syncd.core.urls import normalize_repo_url
from syncd.webhooks import (
    PROVIDERS,
    BadSignature,
    MalformedPayload,
    Matcher,
    Ping,
    ProviderNotDetected,
    Push,
    Target,
    UnknownProvider,
    WebhookRejected,
    delivery_id,
    detect_provider,
    match,
    parse,
    verify,
)
from syncd.webhooks.message import urls_at, urls_in
from syncd.webhooks.providers import BY_NAME, Scheme
from syncd.webhooks.signatures import HmacSha256

PAYLOADS = Path(__file__).parent / "payloads"
SECRET = "It's a Secret to Everybody"
NOW = 1_700_000_000.0
ZERO = "0" * 40
WHSEC_KEY = b"0123456789abcdef0123456789abcdef"
WHSEC = "whsec_" + base64.b64encode(WHSEC_KEY).decode()


def payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text())
    return data


def raw(name: str) -> bytes:
    return (PAYLOADS / f"{name}.json").read_bytes()


def hex_hmac(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def standard_signature(key: bytes, msg_id: str, stamp: int, body: bytes) -> str:
    digest = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


# The headers each provider sends with its push (event and delivery), without the signature.
EVENT_HEADERS: dict[str, dict[str, str]] = {
    "github": {
        "x-github-event": "push",
        "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "x-github-hook-id": "292430182",
        "user-agent": "GitHub-Hookshot/044aadd",
        "content-type": "application/json",
    },
    "gitlab": {
        "x-gitlab-event": "Push Hook",
        "x-gitlab-event-uuid": "13792a34-cac6-4fda-95a8-c58e00a3954e",
        "x-gitlab-instance": "https://gitlab.example.com",
        "user-agent": "GitLab/17.0.0",
        "content-type": "application/json",
    },
    "gitea": {
        "x-gitea-event": "push",
        "x-gitea-event-type": "push",
        "x-gitea-delivery": "f6266f16-1bf3-46a5-9ea4-602e06ead473",
        "x-github-event": "push",
        "x-github-delivery": "f6266f16-1bf3-46a5-9ea4-602e06ead473",
        "x-gogs-event": "push",
        "x-gogs-delivery": "f6266f16-1bf3-46a5-9ea4-602e06ead473",
        "content-type": "application/json",
    },
    "bitbucket": {
        "x-event-key": "repo:push",
        "x-hook-uuid": "cb1e7b7e-0000-4000-8000-000000000000",
        "x-request-uuid": "afe2a4b1-9ad2-4cb4-a6be-fd4d4c2b6b4f",
        "x-attempt-number": "1",
        "user-agent": "Bitbucket-Webhooks/2.0",
        "content-type": "application/json",
    },
    "bitbucket-server": {
        "x-event-key": "repo:refs_changed",
        "x-request-id": "a3bd6d97-6c0a-46c0-9fc2-0a3d4d8d8c7e",
        "content-type": "application/json; charset=utf-8",
    },
    "azure-devops": {
        "content-type": "application/json; charset=utf-8",
        "user-agent": "VSServices/16.255.0.0",
    },
    "generic": {"content-type": "application/json", "x-delivery-id": "d-1"},
}

FIXTURE = {
    "github": "github_push",
    "gitlab": "gitlab_push",
    "gitea": "gitea_push",
    "bitbucket": "bitbucket_push",
    "bitbucket-server": "bitbucket_server_refs_changed",
    "azure-devops": "azure_devops_push",
    "generic": "generic_push",
}


def sign(provider: str, body: bytes, secret: str = SECRET) -> dict[str, str]:
    """The headers that carry a valid signature of body under secret."""
    if provider == "github":
        return {"x-hub-signature-256": "sha256=" + hex_hmac(secret, body)}
    if provider == "gitlab":
        return {"x-gitlab-token": secret}
    if provider == "gitea":
        return {"x-gitea-signature": hex_hmac(secret, body)}
    if provider in ("bitbucket", "bitbucket-server"):
        return {"x-hub-signature": "sha256=" + hex_hmac(secret, body)}
    if provider == "azure-devops":
        return {"authorization": basic("anyone", secret)}
    return {"x-signature": "sha256=" + hex_hmac(secret, body)}


def request(
    provider: str, body: bytes | None = None, secret: str = SECRET
) -> tuple[dict[str, str], bytes]:
    body = raw(FIXTURE[provider]) if body is None else body
    return {**EVENT_HEADERS[provider], **sign(provider, body, secret)}, body


@contextmanager
def rejected(
    kind: type[WebhookRejected], *patterns: str
) -> Iterator[pytest.ExceptionInfo[WebhookRejected]]:
    """pytest.raises for a rejection of this kind with every pattern in its message."""
    with pytest.raises(kind) as e:
        yield e
    for pattern in patterns:
        assert re.search(pattern, str(e.value)), (pattern, str(e.value))


# --- signatures -------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_good_signature_is_accepted(provider: str) -> None:
    headers, body = request(provider)
    verify(provider, headers, body, [SECRET])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_rotated_secret_is_accepted(provider: str) -> None:
    secrets = ["old secret", "new secret", "newest"]
    for secret in secrets:
        headers, body = request(provider, secret=secret)
        verify(provider, headers, body, secrets)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_wrong_secret_is_refused_without_naming_it(provider: str) -> None:
    headers, body = request(provider, secret="forged")
    with pytest.raises(WebhookRejected) as e:
        verify(provider, headers, body, [SECRET, "other"])
    assert isinstance(e.value, BadSignature)
    sent = " ".join(headers.values())
    assert SECRET not in str(e.value) and "forged" not in str(e.value)
    assert not any(len(v) > 20 and v in str(e.value) for v in sent.split())


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_changed_body_is_refused(provider: str) -> None:
    if provider in ("gitlab", "azure-devops"):
        pytest.skip("a token or password does not sign the body")
    headers, body = request(provider)
    with rejected(BadSignature, "does not match"):
        verify(provider, headers, body + b" ", [SECRET])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_missing_signature_is_refused(provider: str) -> None:
    with pytest.raises(WebhookRejected, match="missing") as e:
        verify(provider, EVENT_HEADERS[provider], raw(FIXTURE[provider]), [SECRET])
    assert isinstance(e.value, BadSignature)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_provider_without_secrets_is_not_configured(provider: str) -> None:
    headers, body = request(provider, secret="")
    for secrets in ([], [""]):
        with pytest.raises(BadSignature, match=f"webhooks for {provider} are not configured"):
            verify(provider, headers, body, secrets)


def test_an_unknown_provider_is_its_own_error() -> None:
    with pytest.raises(WebhookRejected) as e:
        verify("svn", {}, b"", [SECRET])
    assert isinstance(e.value, UnknownProvider)
    assert e.value.provider == "svn" and e.value.known == PROVIDERS
    with pytest.raises(UnknownProvider):
        parse("svn", {}, b"")
    with pytest.raises(UnknownProvider):
        delivery_id("svn", {})
    assert issubclass(WebhookRejected, SyncdError)
    assert issubclass(ProviderNotDetected, MalformedPayload)


def test_the_provider_table_lists_every_provider_config_knows() -> None:
    assert tuple(BY_NAME) == PROVIDERS == WEBHOOK_PROVIDERS
    for name, facts in BY_NAME.items():
        assert facts.name == name and facts.path == f"/hooks/{name}"
        if facts.scheme is Scheme.HMAC_SHA256:
            assert facts.signature_headers, name


@given(
    secret=st.text(max_size=100) | st.sampled_from(["", "x" * 64, "x" * 65, "é" * 40]),
    body=st.binary(max_size=3000),
)
def test_hmac_from_keyed_states_is_hmacs(secret: str, body: bytes) -> None:
    """The same bytes as the standard library's HMAC, for keys under, at and over the block."""
    key = secret.encode("utf-8", "surrogatepass")
    assert (
        HmacSha256(secret).hexdigest(body)
        == hmac.new(key, body, hashlib.sha256).hexdigest().encode()
    )


def test_github_sha1_signature_alone_is_not_enough() -> None:
    body = raw("github_push")
    sha1 = hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    headers = {**EVENT_HEADERS["github"], "x-hub-signature": f"sha1={sha1}"}
    with rejected(BadSignature, "missing X-Hub-Signature-256"):
        verify("github", headers, body, [SECRET])


def test_hex_signature_case_and_header_case_do_not_matter() -> None:
    body = raw("github_push")
    headers = {"X-Hub-Signature-256": "SHA256=" + hex_hmac(SECRET, body).upper()}
    verify("github", headers, body, [SECRET])


@pytest.mark.parametrize("header", ["x-gitea-signature", "x-forgejo-signature", "x-gogs-signature"])
def test_gitea_forgejo_and_gogs_sign_alike(header: str) -> None:
    body = raw("gitea_push")
    verify("gitea", {header: hex_hmac(SECRET, body)}, body, [SECRET])
    with rejected(BadSignature, "does not match"):
        verify("gitea", {header: hex_hmac("nope", body)}, body, [SECRET])


def test_gitlab_token_is_compared_whole() -> None:
    for sent in (SECRET[:-1], SECRET + "x", SECRET.upper()):
        with rejected(BadSignature, "X-Gitlab-Token does not match"):
            verify("gitlab", {"x-gitlab-token": sent}, b"{}", [SECRET])


class TestGitlabSigningToken:
    body = b'{"object_kind": "push"}'

    def headers(self, key: bytes = WHSEC_KEY, stamp: int = int(NOW)) -> dict[str, str]:
        return {
            "webhook-id": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
            "webhook-timestamp": str(stamp),
            "webhook-signature": standard_signature(
                key, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", stamp, self.body
            ),
        }

    def test_accepted(self) -> None:
        verify("gitlab", self.headers(), self.body, [], [WHSEC], now=NOW)

    def test_rotated_keys_and_several_signatures(self) -> None:
        other = b"another key, 32 bytes long......"
        h = self.headers(key=other)
        h["webhook-signature"] = "v1,bm9wZQ== v1a,xyz " + h["webhook-signature"]
        secrets = [WHSEC, "whsec_" + base64.b64encode(other).decode()]
        verify("gitlab", h, self.body, [], secrets, now=NOW)

    def test_wrong_key_or_body(self) -> None:
        with rejected(BadSignature, "webhook-signature does not match"):
            verify("gitlab", self.headers(key=b"x" * 32), self.body, [], [WHSEC], now=NOW)
        with rejected(BadSignature, "webhook-signature does not match"):
            verify("gitlab", self.headers(), self.body + b" ", [], [WHSEC], now=NOW)

    def test_timestamp_tolerance(self) -> None:
        verify("gitlab", self.headers(stamp=int(NOW) - 299), self.body, [], [WHSEC], now=NOW)
        verify("gitlab", self.headers(stamp=int(NOW) + 299), self.body, [], [WHSEC], now=NOW)
        for stamp in (int(NOW) - 301, int(NOW) + 301):
            with rejected(BadSignature, "webhook-timestamp"):
                verify("gitlab", self.headers(stamp=stamp), self.body, [], [WHSEC], now=NOW)
        h = {**self.headers(), "webhook-timestamp": "soon"}
        with rejected(BadSignature, "webhook-timestamp"):
            verify("gitlab", h, self.body, [], [WHSEC], now=NOW)

    def test_either_mechanism_suffices_when_both_are_configured(self) -> None:
        verify("gitlab", self.headers(), self.body, ["token"], [WHSEC], now=NOW)
        verify("gitlab", {"x-gitlab-token": "token"}, self.body, ["token"], [WHSEC], now=NOW)
        h = {**self.headers(key=b"y" * 32), "x-gitlab-token": "wrong"}
        with pytest.raises(WebhookRejected):
            verify("gitlab", h, self.body, ["token"], [WHSEC], now=NOW)

    def test_signature_without_a_configured_signing_token(self) -> None:
        with rejected(BadSignature, "no GitLab signing token is configured"):
            verify("gitlab", self.headers(), self.body, ["token"], [], now=NOW)

    def test_signing_secrets_count_only_for_gitlab(self) -> None:
        with rejected(BadSignature, "not configured"):
            verify("github", self.headers(), self.body, [], [WHSEC], now=NOW)


class TestAzureBasicAuth:
    body = raw("azure_devops_push")

    def test_any_user_name(self) -> None:
        for user in ("", "azure", "ü"):
            verify("azure-devops", {"authorization": basic(user, SECRET)}, self.body, [SECRET])

    def test_password_with_a_colon(self) -> None:
        verify("azure-devops", {"authorization": basic("hook", "p:w")}, self.body, ["p:w"])
        with rejected(BadSignature, "password"):
            verify("azure-devops", {"authorization": basic("hook", "pw")}, self.body, ["hook:pw"])

    @pytest.mark.parametrize(
        "authorization",
        [
            basic("azure", "wrong"),
            "Bearer " + SECRET,
            "Basic !!!not base64!!!",
            "Basic " + base64.b64encode(SECRET.encode()).decode(),  # no colon
            "Basic",
        ],
    )
    def test_refused(self, authorization: str) -> None:
        with pytest.raises(WebhookRejected) as e:
            verify("azure-devops", {"authorization": authorization}, self.body, [SECRET])
        assert isinstance(e.value, BadSignature) and SECRET not in str(e.value)


# --- detection --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "provider"),
    [
        (EVENT_HEADERS["github"], "github"),
        (EVENT_HEADERS["gitlab"], "gitlab"),
        ({"x-gitlab-event": "System Hook"}, "gitlab"),
        ({"x-gitlab-token": "t"}, "gitlab"),
        # Gitea and its forks send GitHub's headers too: theirs are looked at first.
        (EVENT_HEADERS["gitea"], "gitea"),
        (
            {"x-github-event": "push", "x-forgejo-event": "push", "x-forgejo-signature": "ab"},
            "gitea",
        ),
        ({"x-github-event": "push", "x-gogs-event": "push"}, "gitea"),
        ({"x-hub-signature-256": "sha256=00", "x-gitea-signature": "00"}, "gitea"),
        (EVENT_HEADERS["bitbucket"], "bitbucket"),
        ({"x-event-key": "repo:push"}, "bitbucket"),
        (EVENT_HEADERS["bitbucket-server"], "bitbucket-server"),
        ({"x-event-key": "diagnostics:ping"}, "bitbucket-server"),
        ({"x-event-key": "repo:refs_changed", "x-hub-signature": "sha256=0"}, "bitbucket-server"),
        ({"x-signature": "sha256=00"}, "generic"),
        ({"X-GitHub-Event": "ping"}, "github"),  # any key case
    ],
)
def test_detect_provider(headers: dict[str, str], provider: str) -> None:
    assert detect_provider(headers) == provider


@pytest.mark.parametrize("headers", [{}, EVENT_HEADERS["azure-devops"], {"webhook-id": "x"}])
def test_detect_provider_names_what_it_looked_for(headers: dict[str, str]) -> None:
    with rejected(
        ProviderNotDetected,
        "X-GitHub-Event",
        "X-Gitlab-Event",
        "X-Gitea-Event",
        "/hooks/azure-devops",
    ):
        detect_provider(headers)


# --- payloads ---------------------------------------------------------------------------------


def test_github_push() -> None:
    headers, body = request("github")
    assert parse("github", headers, body) == Push(
        provider="github",
        repo_urls=(
            "https://github.com/acme/steps.git",
            "https://github.com/acme/steps",
            "git@github.com:acme/steps.git",
            "git://github.com/acme/steps.git",
        ),
        branches=("main",),
        paths=frozenset(
            {
                "export/steps/and-done__greeting__done.step.json",
                "export/steps/old.step.json",
                "README.md",
            }
        ),
        delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958",
        after="0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
    )


def test_github_form_encoded_payload() -> None:
    body = urlencode({"payload": raw("github_push").decode()}).encode()
    headers = {**EVENT_HEADERS["github"], "content-type": "application/x-www-form-urlencoded"}
    headers.update(sign("github", body))
    verify("github", headers, body, [SECRET])  # the signature covers the form body
    push = parse("github", headers, body)
    assert isinstance(push, Push) and push.branches == ("main",)


@pytest.mark.parametrize("form", [b"", b"payload=1&payload=2", b"other=%7B%7D", b"payload=%FF"])
def test_github_form_without_one_good_payload(form: bytes) -> None:
    headers = {**EVENT_HEADERS["github"], "content-type": "application/x-www-form-urlencoded"}
    with pytest.raises(WebhookRejected) as e:
        parse("github", headers, form)
    assert isinstance(e.value, MalformedPayload)


@pytest.mark.parametrize(
    "change",
    [
        {"commits": payload("github_push_truncated")["commits"]},  # 20 listed: maybe cut short
        {"commits": []},
        {"created": True, "before": ZERO},  # a new branch: everything on it is new
        {"forced": True},  # a force push may undo changes it does not list
        {"created": None},
    ],
)
def test_github_paths_unknown(change: dict[str, Any]) -> None:
    body = json.dumps({**payload("github_push"), **change}).encode()
    push = parse("github", EVENT_HEADERS["github"], body)
    assert isinstance(push, Push) and push.paths is None and push.branches == ("main",)


def test_github_truncated_fixture() -> None:
    push = parse("github", EVENT_HEADERS["github"], raw("github_push_truncated"))
    assert isinstance(push, Push) and push.paths is None


def test_github_ping_and_ignored_events() -> None:
    ping = {**EVENT_HEADERS["github"], "x-github-event": "ping"}
    assert parse("github", ping, raw("github_ping")) == Ping(
        "github", "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    )
    # (pull_request is read now: see test_webhook_pulls.py)
    for event in ("issues", "pull_request_review", "create", "release"):
        assert parse("github", {**EVENT_HEADERS["github"], "x-github-event": event}, b"?") is None
    with rejected(MalformedPayload, "X-GitHub-Event"):
        parse("github", {"content-type": "application/json"}, raw("github_push"))


@pytest.mark.parametrize(
    "change",
    [
        {"ref": "refs/tags/v1.0"},
        {"deleted": True, "after": ZERO},
        {"after": ZERO},
        {"ref": "refs/pull/1/head"},
    ],
)
def test_github_pushes_that_start_nothing(change: dict[str, Any]) -> None:
    body = json.dumps({**payload("github_push"), **change}).encode()
    assert parse("github", EVENT_HEADERS["github"], body) is None


def test_gitlab_push() -> None:
    headers, body = request("gitlab")
    push = parse("gitlab", headers, body)
    assert push == Push(
        provider="gitlab",
        repo_urls=(
            "https://gitlab.example.com/acme/steps.git",
            "git@gitlab.example.com:acme/steps.git",
            "https://gitlab.example.com/acme/steps",
        ),
        branches=("main",),
        paths=frozenset(
            {
                "CHANGELOG",
                "app/controller/application.rb",
                "export/steps/new.step.json",
                "export/steps/nested/dir/greeting.step.json",
                "export/steps/gone.step.json",
            }
        ),
        delivery="13792a34-cac6-4fda-95a8-c58e00a3954e",
        after="da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    )


def test_gitlab_truncated_and_new_branch() -> None:
    push = parse("gitlab", EVENT_HEADERS["gitlab"], raw("gitlab_push_truncated"))
    assert isinstance(push, Push) and push.paths is None and push.branches == ("main",)
    changes: list[dict[str, Any]] = [
        {"before": ZERO},
        {"total_commits_count": None},
        {"commits": []},
    ]
    for change in changes:
        body = json.dumps({**payload("gitlab_push"), **change}).encode()
        push = parse("gitlab", EVENT_HEADERS["gitlab"], body)
        assert isinstance(push, Push) and push.paths is None


def test_gitlab_system_hook_and_ignored_events() -> None:
    system = {**EVENT_HEADERS["gitlab"], "x-gitlab-event": "System Hook"}
    push = parse("gitlab", system, raw("gitlab_push"))
    assert isinstance(push, Push) and push.branches == ("main",)
    # A merge request is read (test_webhook_pulls.py), but a closed one plans nothing.
    closed = {"object_kind": "merge_request", "object_attributes": {"action": "close"}}
    assert parse("gitlab", system, json.dumps(closed).encode()) is None
    tag = {**EVENT_HEADERS["gitlab"], "x-gitlab-event": "Tag Push Hook"}
    assert parse("gitlab", tag, raw("gitlab_tag_push")) is None
    # A tag pushed through a system hook is a push of a non-branch ref.
    assert parse("gitlab", system, raw("gitlab_tag_push")) is None
    assert parse("gitlab", {**EVENT_HEADERS["gitlab"], "x-gitlab-event": "Issue Hook"}, b"") is None
    deleted = json.dumps({**payload("gitlab_push"), "after": ZERO}).encode()
    assert parse("gitlab", EVENT_HEADERS["gitlab"], deleted) is None


def test_gitlab_delivery_fallbacks() -> None:
    assert delivery_id("gitlab", {"idempotency-key": "k"}) == "k"
    assert delivery_id("gitlab", {"webhook-id": "msg_1"}) == "msg_1"
    assert delivery_id("gitlab", {"x-gitlab-event-uuid": "u", "webhook-id": "m"}) == "u"


def test_gitea_push() -> None:
    headers, body = request("gitea")
    assert parse("gitea", headers, body) == Push(
        provider="gitea",
        repo_urls=(
            "https://gitea.example.com/acme/steps.git",
            "ssh://git@gitea.example.com:2222/acme/steps.git",
            "https://gitea.example.com/acme/steps",
        ),
        branches=("main",),
        paths=frozenset({"export/steps/greeting.step.json"}),
        delivery="f6266f16-1bf3-46a5-9ea4-602e06ead473",
        after="bffeb74224043ba2feb48d137756c8a9331c449a",
    )


def test_gitea_variants() -> None:
    body = raw("gitea_push")
    forgejo = {"x-forgejo-event": "push", "x-forgejo-delivery": "fj-1"}
    push = parse("gitea", forgejo, body)
    assert isinstance(push, Push) and push.delivery == "fj-1"
    gogs = json.dumps({**payload("gitea_push"), "total_commits": None}).encode()
    push = parse("gitea", {"x-gogs-event": "push"}, gogs)  # Gogs sends no total
    assert isinstance(push, Push) and push.paths == frozenset({"export/steps/greeting.step.json"})
    cut = json.dumps({**payload("gitea_push"), "total_commits": 30}).encode()
    push = parse("gitea", {"x-gitea-event": "push"}, cut)
    assert isinstance(push, Push) and push.paths is None
    assert parse("gitea", {"x-gitea-event": "issues"}, body) is None
    assert parse("gitea", {"x-gitea-event": "create"}, body) is None
    tag = json.dumps({**payload("gitea_push"), "ref": "refs/tags/v2"}).encode()
    assert parse("gitea", {"x-gitea-event": "push"}, tag) is None
    with rejected(MalformedPayload, "X-Gitea-Event"):
        parse("gitea", {}, body)


def test_bitbucket_cloud_push() -> None:
    headers, body = request("bitbucket")
    assert parse("bitbucket", headers, body) == Push(
        provider="bitbucket",
        repo_urls=("https://bitbucket.org/acme/steps",),
        branches=("main",),
        paths=None,  # Bitbucket Cloud lists no files
        delivery="afe2a4b1-9ad2-4cb4-a6be-fd4d4c2b6b4f",
        after="709d658dc5b6d6afcd46049c2f332ee3f515a67d",
    )


def test_bitbucket_cloud_several_changes_and_deletions() -> None:
    data = payload("bitbucket_push")
    change = data["push"]["changes"][0]
    other = {**change, "new": {**change["new"], "name": "dev"}}
    deleted = {**change, "new": None, "closed": True}
    tag = {**change, "new": {**change["new"], "type": "tag", "name": "v1"}}
    data["push"]["changes"] = [change, deleted, other, tag, change]
    push = parse("bitbucket", EVENT_HEADERS["bitbucket"], json.dumps(data).encode())
    assert isinstance(push, Push) and push.branches == ("main", "dev") and push.after is None
    data["push"]["changes"] = [deleted, tag]
    assert parse("bitbucket", EVENT_HEADERS["bitbucket"], json.dumps(data).encode()) is None
    # Without links, the full name still names the repository.
    del data["repository"]["links"]
    data["push"]["changes"] = [change]
    push = parse("bitbucket", EVENT_HEADERS["bitbucket"], json.dumps(data).encode())
    assert isinstance(push, Push) and push.repo_urls == ("https://bitbucket.org/acme/steps",)
    fork = {**EVENT_HEADERS["bitbucket"], "x-event-key": "repo:fork"}
    assert parse("bitbucket", fork, b"{}") is None


def test_bitbucket_server_refs_changed() -> None:
    headers, body = request("bitbucket-server")
    assert parse("bitbucket-server", headers, body) == Push(
        provider="bitbucket-server",
        repo_urls=(
            "ssh://git@bitbucket.example.com:7999/acme/steps.git",
            "https://bitbucket.example.com/scm/acme/steps.git",
        ),
        branches=("main",),  # the tag that moved with it is no branch
        paths=None,
        delivery="a3bd6d97-6c0a-46c0-9fc2-0a3d4d8d8c7e",
        after="178864a7d521b6f5e720b386b2c2b0ef8563e0dc",
    )


def test_bitbucket_server_ping_deletion_and_other_events() -> None:
    ping = {**EVENT_HEADERS["bitbucket-server"], "x-event-key": "diagnostics:ping"}
    assert parse("bitbucket-server", ping, b'{"test": true}') == Ping(
        "bitbucket-server", "a3bd6d97-6c0a-46c0-9fc2-0a3d4d8d8c7e"
    )
    data = payload("bitbucket_server_refs_changed")
    data["changes"][0].update(type="DELETE", toHash=ZERO)
    assert (
        parse("bitbucket-server", EVENT_HEADERS["bitbucket-server"], json.dumps(data).encode())
        is None
    )
    opened = {**EVENT_HEADERS["bitbucket-server"], "x-event-key": "pr:opened"}
    assert parse("bitbucket-server", opened, b"{}") is None
    del data["repository"]["links"]
    with rejected(MalformedPayload, "repository.links.clone"):
        parse("bitbucket-server", EVENT_HEADERS["bitbucket-server"], json.dumps(data).encode())


def test_azure_devops_push() -> None:
    headers, body = request("azure-devops")
    assert parse("azure-devops", headers, body) == Push(
        provider="azure-devops",
        repo_urls=(
            "https://fabrikam-fiber-inc@dev.azure.com/fabrikam-fiber-inc/DefaultCollection/_git/Fabrikam-Fiber-Git",
            "git@ssh.dev.azure.com:v3/fabrikam-fiber-inc/DefaultCollection/Fabrikam-Fiber-Git",
            "https://dev.azure.com/fabrikam-fiber-inc/DefaultCollection/_git/Fabrikam-Fiber-Git",
        ),
        branches=("main",),
        paths=None,
        delivery="03c164c2-8912-4d5e-8009-3707d5f83734",  # the event id, from the body
        after="33b55f7cb7e7e245323987634f960cf4a6e6bc74",
    )


def test_azure_devops_ignored() -> None:
    data = payload("azure_devops_push")
    other = {**data, "eventType": "git.pullrequest.created"}
    assert parse("azure-devops", {}, json.dumps(other).encode()) is None
    data["resource"]["refUpdates"] = [
        {"name": "refs/tags/v1", "oldObjectId": ZERO, "newObjectId": "1" * 40},
        {"name": "refs/heads/main", "oldObjectId": "1" * 40, "newObjectId": ZERO},
    ]
    assert parse("azure-devops", {}, json.dumps(data).encode()) is None
    with rejected(MalformedPayload, "eventType"):
        parse("azure-devops", {}, b"{}")


def test_generic_push() -> None:
    headers, body = request("generic")
    assert parse("generic", headers, body) == Push(
        provider="generic",
        repo_urls=("https://git.example.com/acme/steps.git",),
        branches=("main",),
        paths=frozenset({"export/steps/greeting.step.json", "docs/index.md"}),
        delivery="d-1",
        after="4b825dc642cb6eb9a060e54bf8d69288fbee4904",
    )
    bare = parse("generic", {}, b'{"repository": "https://h/o/r", "ref": "dev"}')
    assert bare == Push("generic", ("https://h/o/r",), ("dev",), None, None, None)
    assert parse("generic", {}, b'{"repository": "https://h/o/r", "ref": "refs/tags/x"}') is None
    with rejected(MalformedPayload, "paths"):
        parse("generic", {}, b'{"repository": "https://h/o/r", "ref": "dev", "paths": "a"}')


@pytest.mark.parametrize(
    ("provider", "body", "words"),
    [
        ("github", b"{not json", ("not valid JSON",)),
        ("github", b"[1, 2]", ("JSON object", "list")),
        ("github", b"\xff\xfe{}", ("UTF-8",)),
        ("github", b"{}", ("ref",)),
        ("github", b'{"ref": "refs/heads/main"}', ("repository.clone_url",)),
        ("github", b'{"ref": 7, "repository": {}}', ("ref", "not a string")),
        ("github", b"[" * 100_000, ("JSON",)),
        ("github", b'{"n": ' + b"9" * 5000 + b"}", ("JSON",)),
        ("gitlab", b'{"ref": "refs/heads/main"}', ("project.git_http_url",)),
        ("gitea", b'{"ref": "refs/heads/main"}', ("repository.clone_url",)),
        ("bitbucket", b'{"repository": {"full_name": "a/b"}}', ("push.changes",)),
        ("bitbucket", b'{"push": {"changes": []}}', ("repository.links.html.href",)),
        (
            "bitbucket",
            b'{"repository": {"full_name": "a/b"},'
            b' "push": {"changes": [{"new": {"type": "branch"}}]}}',
            ("push.changes\\[\\].new.name",),
        ),
        ("bitbucket-server", b'{"repository": {"links": {"clone": []}}}', ("links.clone",)),
        ("azure-devops", b'{"eventType": "git.push"}', ("remoteUrl",)),
        (
            "azure-devops",
            b'{"eventType": "git.push", "resource": {"repository": {"remoteUrl": "https://x/y"}}}',
            ("refUpdates",),
        ),
        ("generic", b'{"ref": "main"}', ("repository",)),
        ("generic", b'{"repository": "https://h/o/r"}', ("ref",)),
    ],
)
def test_malformed_payloads_are_400_naming_the_problem(
    provider: str, body: bytes, words: tuple[str, ...]
) -> None:
    with rejected(MalformedPayload, *words) as e:
        parse(provider, EVENT_HEADERS[provider], body)
    assert isinstance(e.value, MalformedPayload)


def test_wrong_content_type_is_400() -> None:
    headers = {**EVENT_HEADERS["github"], "content-type": "text/plain"}
    with rejected(MalformedPayload, "content type", "text/plain"):
        parse("github", headers, raw("github_push"))
    # A missing content type, a charset and a +json type are fine.
    for media_type in ("", "application/json; charset=UTF-8", "application/vnd.x+json"):
        headers = {**EVENT_HEADERS["github"], "content-type": media_type}
        assert isinstance(parse("github", headers, raw("github_push")), Push)


@pytest.mark.parametrize(
    "ref",
    [
        "refs/heads/../../x",
        "refs/heads/a\x00b",
        "refs/heads/" + "a" * 10_000,
        "refs/heads/",
        "refs/heads/a..b",
        "refs/heads/.hidden",
        "refs/heads/x.lock",
        "refs/heads/with space",
        "refs/heads/a//b",
        "refs/heads/@{-1}",
        "refs/heads/\u202etxt",  # right-to-left override
        "refs/heads/\ud800",
    ],
)
def test_hostile_refs_are_no_branch(ref: str) -> None:
    body = json.dumps({**payload("generic_push"), "ref": ref}).encode()
    push = parse("generic", {}, body)
    assert isinstance(push, Push) and push.branches == ()
    target = Target("ws", normalize_repo_url("https://git.example.com/acme/steps"), "main", "")
    assert push is None or match(push, [target]) == []


def test_ordinary_branch_names_survive() -> None:
    for name in ("main", "release/2024.1", "feature/ü-umlaut", "v1.x", "a-b_c"):
        body = json.dumps({**payload("generic_push"), "ref": f"refs/heads/{name}"}).encode()
        push = parse("generic", {}, body)
        assert isinstance(push, Push) and push.branches == (name,)


@pytest.mark.parametrize(
    ("provider", "headers", "expected"),
    [
        ("github", EVENT_HEADERS["github"], "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("github", {"X-GitHub-Delivery": "D"}, "D"),
        ("gitea", {"x-gogs-delivery": "g"}, "g"),
        ("bitbucket", EVENT_HEADERS["bitbucket"], "afe2a4b1-9ad2-4cb4-a6be-fd4d4c2b6b4f"),
        ("bitbucket", {"x-hook-uuid": "names the hook, not the delivery"}, None),
        ("bitbucket-server", {"x-request-id": "r"}, "r"),
        ("azure-devops", {"x-request-id": "r"}, None),
        ("generic", {}, None),
        ("generic", {"x-delivery-id": "  "}, None),
        ("generic", {"x-delivery-id": "a\nb"}, None),
        ("generic", {"x-delivery-id": "x" * 201}, None),
    ],
)
def test_delivery_id(provider: str, headers: dict[str, str], expected: str | None) -> None:
    assert delivery_id(provider, headers) == expected


# --- matching ---------------------------------------------------------------------------------

STEPS_KEY = normalize_repo_url("https://github.com/acme/steps.git")


def push(
    urls: tuple[str, ...] = ("https://github.com/acme/steps.git",),
    branches: tuple[str, ...] = ("main",),
    paths: frozenset[str] | None = None,
) -> Push:
    return Push("github", urls, branches, paths)


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/acme/steps.git",
        "https://github.com/acme/steps",
        "https://GitHub.com/acme/steps/",
        "https://bot:token@github.com/acme/steps.git",
        "http://github.com:80/acme/steps",
        "git@github.com:acme/steps.git",
        "ssh://git@github.com/acme/steps.git",
    ],
)
def test_match_every_url_form(url: str) -> None:
    assert match(push(urls=(url,)), [Target("w", STEPS_KEY, "main", "export/steps")]) == ["w"]


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/acme/steps2.git",
        "https://github.com/acme",
        "https://gitlab.com/acme/steps.git",
        "https://github.com/ACME/STEPS.git",  # the path keeps its case
        "not a url",
        "",
    ],
)
def test_no_match_for_other_repositories(url: str) -> None:
    assert match(push(urls=(url,)), [Target("w", STEPS_KEY, "main", "")]) == []


def test_no_match_for_garbage_keys() -> None:
    # A target whose URL did not normalize must not match a payload URL that did not either.
    assert match(push(urls=("not a url",)), [Target("w", "", "main", "")]) == []


@pytest.mark.parametrize(
    ("target_path", "files", "hit"),
    [
        ("export/steps", {"export/steps/a.step.json"}, True),
        ("export/steps", {"export/steps/deep/er/a.step.json"}, True),
        ("export/steps", {"README.md", "export/steps/a.step.json"}, True),
        ("export/steps", {"export/steps2/x.step.json"}, False),
        ("export/steps", {"export/step"}, False),
        ("export/steps", {"export"}, False),
        ("export/steps", {"other/export/steps/a.step.json"}, False),
        ("export/steps", {"README.md"}, False),
        ("export/steps", set(), False),
        ("export/steps/", {"export/steps/a.step.json"}, True),
        ("/export/steps", {"export/steps/a.step.json"}, True),
        ("./export/steps", {"export/steps/a.step.json"}, True),
        ("export/steps", {"export/steps"}, True),  # the folder itself replaced
        (".", {"anything.txt"}, True),
        ("", {"anything.txt"}, True),
        ("", set(), True),
    ],
)
def test_match_paths(target_path: str, files: set[str], hit: bool) -> None:
    target = Target("w", STEPS_KEY, "main", target_path)
    assert match(push(paths=frozenset(files)), [target]) == (["w"] if hit else [])


def test_match_unknown_paths_match_any_folder() -> None:
    assert match(push(paths=None), [Target("w", STEPS_KEY, "main", "deep/folder")]) == ["w"]


def test_match_branches_and_many_targets() -> None:
    p = push(branches=("main", "dev"), paths=frozenset({"a/x.step.json", "b/y.step.json"}))
    other_key = normalize_repo_url("https://github.com/acme/other")
    targets = [
        Target("main-a", STEPS_KEY, "main", "a"),
        Target("dev-b", STEPS_KEY, "dev", "b"),
        Target("prod-c", STEPS_KEY, "main", "c"),
        Target("stage", STEPS_KEY, "stage", "a"),
        Target("other", other_key, "main", "a"),
        Target("ref-form", STEPS_KEY, "refs/heads/dev", ""),
        Target("main-a", STEPS_KEY, "main", ""),  # the same workspace twice: listed once
    ]
    assert match(p, targets) == ["main-a", "dev-b", "ref-form"]
    assert match(push(branches=()), targets) == []
    assert match(p, []) == []


def test_match_fixture_end_to_end() -> None:
    targets = [
        Target("gh", normalize_repo_url("https://github.com/acme/steps"), "main", "export/steps"),
        Target("gl", normalize_repo_url("https://gitlab.example.com/acme/steps"), "main", ""),
        Target(
            "az",
            normalize_repo_url(
                "https://dev.azure.com/fabrikam-fiber-inc/DefaultCollection/_git/Fabrikam-Fiber-Git"
            ),
            "main",
            "export/steps",
        ),
        Target(
            "bbs",
            normalize_repo_url("https://bitbucket.example.com/scm/acme/steps.git"),
            "main",
            "x",
        ),
        Target("bb", normalize_repo_url("https://bitbucket.org/acme/steps.git"), "main", "x"),
        Target("gt", normalize_repo_url("https://gitea.example.com/acme/steps"), "main", "docs"),
    ]
    found = {}
    for provider in PROVIDERS:
        event = parse(provider, *request(provider))
        assert isinstance(event, Push)
        found[provider] = match(event, targets)
    assert found == {
        "github": ["gh"],
        "gitlab": ["gl"],
        "gitea": [],  # the push touched export/steps, not docs
        "bitbucket": ["bb"],
        "bitbucket-server": ["bbs"],
        "azure-devops": ["az"],
        "generic": [],
    }


# --- robustness -------------------------------------------------------------------------------

HEADER_NAMES = sorted(
    {name for headers in EVENT_HEADERS.values() for name in headers}
    | {
        "x-hub-signature-256",
        "x-hub-signature",
        "x-gitlab-token",
        "x-gitea-signature",
        "x-forgejo-signature",
        "x-gogs-signature",
        "x-forgejo-event",
        "x-signature",
        "authorization",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "idempotency-key",
        "x-delivery-id",
    }
)
EVENT_VALUES = [
    "push", "ping", "Push Hook", "System Hook", "Tag Push Hook", "repo:push",
    "pull_request", "Merge Request Hook",
    "repo:refs_changed", "diagnostics:ping", "application/json",
    "application/x-www-form-urlencoded", "Basic", "sha256=", "v1,",
]  # fmt: skip

header_values = st.one_of(st.text(max_size=40), st.sampled_from(EVENT_VALUES))
headers_strategy = st.dictionaries(
    st.one_of(st.sampled_from(HEADER_NAMES), st.text(max_size=12)), header_values, max_size=8
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=25,
)


def mutated(name: str) -> st.SearchStrategy[bytes]:
    """A fixture with one field somewhere replaced by any JSON value."""
    base = payload(name)

    def paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        found = [prefix]
        if isinstance(obj, dict):
            for k, v in obj.items():
                found += paths(v, (*prefix, k))
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                found += paths(v, (*prefix, i))
        return found

    def replace(path: tuple[Any, ...], value: Any) -> bytes:
        if not path:
            return json.dumps(value).encode()
        data = json.loads(json.dumps(base))
        obj = data
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value
        return json.dumps(data).encode()

    return st.builds(replace, st.sampled_from(paths(base)), json_values)


bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.one_of([mutated(name) for name in FIXTURE.values()]),
)
ROBUST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@ROBUST
@given(
    provider=st.sampled_from(PROVIDERS),
    headers=headers_strategy,
    body=bodies,
    secrets=st.lists(st.text(max_size=10), max_size=3),
    now=st.none() | st.floats(allow_nan=True),
)
def test_any_request_is_answered_or_rejected(
    provider: str, headers: dict[str, str], body: bytes, secrets: list[str], now: float | None
) -> None:
    for call in (
        lambda: detect_provider(headers),
        lambda: delivery_id(provider, headers),
        lambda: verify(provider, headers, body, secrets, secrets, now=now),
        lambda: parse(provider, headers, body),
    ):
        try:
            call()
        except WebhookRejected as e:
            assert isinstance(e, MalformedPayload | BadSignature)


@ROBUST
@given(provider=st.sampled_from(PROVIDERS), body=bodies, extra=headers_strategy)
def test_signed_bodies_parse_or_are_400(provider: str, body: bytes, extra: dict[str, str]) -> None:
    headers, body = request(provider, body)
    verify(provider, headers, body, [SECRET])
    for h in (headers, {**extra, **headers}):
        try:
            event = parse(provider, h, body)
        except WebhookRejected as e:
            assert isinstance(e, MalformedPayload)
            continue
        if isinstance(event, Push):
            target = Target("w", STEPS_KEY, "main", "export/steps")
            assert match(event, [target]) in ([], ["w"])
            assert all(isinstance(u, str) for u in event.repo_urls)


@ROBUST
@given(
    urls=st.lists(st.text(max_size=30), max_size=3),
    branches=st.lists(st.text(max_size=10), max_size=3),
    files=st.none() | st.frozensets(st.text(max_size=20), max_size=4),
    target_path=st.text(max_size=20),
)
def test_match_never_raises(
    urls: list[str], branches: list[str], files: frozenset[str] | None, target_path: str
) -> None:
    p = Push("generic", tuple(urls), tuple(branches), files)
    targets = [Target("w", normalize_repo_url(u), b, target_path) for u in urls for b in branches]
    assert match(p, targets) in ([], ["w"])


# --- changed files listed only when a workspace follows a folder of the pushed repository ------

FOLDERS_AND_WHOLES = [
    Target("gh", STEPS_KEY, "main", "export/steps"),
    Target("gh-all", STEPS_KEY, "main", "."),
    Target("gl", normalize_repo_url("https://gitlab.example.com/acme/steps"), "main", ""),
    Target("gt", normalize_repo_url("https://gitea.example.com/acme/steps"), "main", "docs"),
    Target("bb", normalize_repo_url("https://bitbucket.org/acme/steps.git"), "main", "x"),
]


@pytest.mark.parametrize("provider", ["github", "gitlab", "gitea"])
def test_a_push_whose_files_nobody_wants_is_read_without_them(provider: str) -> None:
    headers, body = request(provider)
    asked: list[tuple[str, ...]] = []

    def unwanted(repo_urls: tuple[str, ...]) -> bool:
        asked.append(repo_urls)
        return False

    listed, unlisted = parse(provider, headers, body), parse(provider, headers, body, unwanted)
    assert isinstance(listed, Push) and isinstance(unlisted, Push)
    assert listed.paths and unlisted.paths is None
    assert unlisted == dataclasses.replace(listed, paths=None)
    assert asked == [listed.repo_urls]


def test_the_matcher_wants_files_only_for_a_repository_with_a_folder_followed() -> None:
    matcher = Matcher(FOLDERS_AND_WHOLES)
    assert matcher.files_wanted(("git@github.com:acme/steps.git",))
    assert matcher.files_wanted(("https://example.com/x", "https://gitea.example.com/acme/steps"))
    assert not matcher.files_wanted(("https://gitlab.example.com/acme/steps.git",))
    assert not matcher.files_wanted(("https://example.com/nobody", "not a url"))
    assert not matcher.files_wanted(())
    assert not Matcher([Target("gl", STEPS_KEY, "main", "./")]).files_wanted((STEPS_KEY,))


@ROBUST
@given(provider=st.sampled_from(PROVIDERS), body=bodies)
def test_reading_files_on_demand_answers_as_reading_them_always(provider: str, body: bytes) -> None:
    headers, body = request(provider, body)
    matcher = Matcher(FOLDERS_AND_WHOLES)
    try:
        listed = parse(provider, headers, body)
    except WebhookRejected as e:
        with pytest.raises(type(e)) as again:
            parse(provider, headers, body, matcher.files_wanted)
        assert again.value.message == e.message
        return
    on_demand = parse(provider, headers, body, matcher.files_wanted)
    if not isinstance(listed, Push):
        assert on_demand == listed
        return
    assert isinstance(on_demand, Push)
    assert matcher.match(on_demand) == match(listed, FOLDERS_AND_WHOLES)
    if matcher.files_wanted(listed.repo_urls):
        assert on_demand == listed


@pytest.mark.parametrize(
    "payload_",
    [
        {"repository": {"clone_url": "https://a/x.git", "html_url": "https://a/x"}},
        {"repository": {"clone_url": 3, "html_url": " ", "ssh_url": "git@a:x.git"}},
        {"repository": {"html_url": "https://a/x", "clone_url": "https://a/x"}},
        {"repository": "https://a/x.git"},
        {"repository": None},
        {},
    ],
)
def test_urls_in_one_object_are_the_urls_at_its_fields(payload_: dict[str, Any]) -> None:
    keys = ("clone_url", "html_url", "ssh_url")

    def answer(read: Any) -> Any:
        try:
            return read()
        except MalformedPayload as e:
            return e.message

    at = answer(lambda: urls_at(payload_, tuple(f"repository.{k}" for k in keys), required="r"))
    assert answer(lambda: urls_in(payload_, "repository", keys, required="r")) == at


@ROBUST
@given(
    urls=st.lists(
        st.sampled_from(
            [
                "https://github.com/acme/steps.git",
                "git@github.com:acme/steps.git",
                "https://gitlab.example.com/acme/steps",
                "https://example.com/nobody",
                "not a url",
                "",
            ]
        ),
        max_size=4,
    ),
    branches=st.lists(st.sampled_from(["main", "dev"]), max_size=2),
    files=st.none() | st.frozensets(st.sampled_from(["export/steps/a", "docs/b", "c"])),
)
def test_the_matcher_answers_as_match(
    urls: list[str], branches: list[str], files: frozenset[str] | None
) -> None:
    p = Push("github", tuple(urls), tuple(branches), files)
    matcher = Matcher(FOLDERS_AND_WHOLES, memo_size=2)
    for _ in range(3):  # from the memo, and after it was cleared, the same
        assert matcher.match(p) == match(p, FOLDERS_AND_WHOLES)
        matcher.match(Push("github", ("https://example.com/other",), (), None))
    assert len(matcher._named) <= 2
