"""Push webhooks: which provider sent one, is it signed, what moved, which workspaces care.

Pure: the API's endpoint is a thin shell that calls, in order, detect_provider (for `/hooks`),
verify, parse and match. Headers are a mapping with lower-case keys, as Starlette gives them.
Whatever a request holds, these functions answer or raise WebhookRejected, nothing else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from syncd.model import WEBHOOK_PROVIDERS
from syncd.providers import READERS, Ping, Push, WebhookRejected
from syncd.urls import normalize_repo_url

__all__ = [
    "PROVIDERS",
    "Ping",
    "Push",
    "Target",
    "WebhookRejected",
    "delivery_id",
    "detect_provider",
    "match",
    "parse",
    "verify",
]

PROVIDERS = WEBHOOK_PROVIDERS

# Standard Webhooks (GitLab's signing token): how far webhook-timestamp may be from now.
SIGNATURE_TOLERANCE_SECONDS = 300

# Bitbucket Server's event keys; Cloud's look alike ("repo:push") but are never these.
_BITBUCKET_SERVER_EVENTS = ("repo:refs_changed", "repo:modified", "diagnostics:ping", "pr:")

# Delivery id headers by provider, first present wins. Bitbucket Cloud's X-Hook-UUID names
# the hook, not the delivery: every delivery of a hook carries the same one.
_DELIVERY_HEADERS = {
    "github": ("x-github-delivery",),
    "gitlab": ("x-gitlab-event-uuid", "idempotency-key", "webhook-id"),
    "gitea": ("x-forgejo-delivery", "x-gitea-delivery", "x-gogs-delivery", "x-github-delivery"),
    "bitbucket": ("x-request-uuid",),
    "bitbucket-server": ("x-request-id",),
    "azure-devops": (),  # the event id is in the body: parse reads it
    "generic": ("x-delivery-id",),
}


def _known(provider: str) -> None:
    if provider not in PROVIDERS:
        raise WebhookRejected(
            404, f"unknown webhook provider {provider[:40]!r}; known: {', '.join(PROVIDERS)}"
        )


def detect_provider(headers: Mapping[str, str]) -> str:
    """The provider that sent a request to `/hooks`, told from its headers alone."""
    headers = {k.lower(): v for k, v in headers.items()}
    present = set(headers)
    # Gitea, Forgejo and Gogs send X-GitHub-Event too, so they are looked for first.
    if any(h.startswith(("x-gitea-", "x-forgejo-", "x-gogs-")) for h in present):
        return "gitea"
    if "x-gitlab-event" in present or "x-gitlab-token" in present:
        return "gitlab"
    if "x-event-key" in present:
        if "x-hook-uuid" in present or "x-request-uuid" in present:
            return "bitbucket"
        key = _header(headers, "x-event-key")
        if "x-request-id" in present or key.startswith(_BITBUCKET_SERVER_EVENTS):
            return "bitbucket-server"
        return "bitbucket"
    if "x-github-event" in present:
        return "github"
    if "x-signature" in present:
        return "generic"
    raise WebhookRejected(
        400,
        "cannot tell the webhook provider from the headers: looked for X-Gitea-Event, "
        "X-Forgejo-Event, X-Gogs-Event, X-Gitlab-Event, X-Event-Key, X-GitHub-Event and "
        "X-Signature; Azure DevOps sends none of these and must use /hooks/azure-devops",
    )


def delivery_id(provider: str, headers: Mapping[str, str]) -> str | None:
    """The id a redelivery of the same event repeats, when the headers carry one."""
    _known(provider)
    headers = {k.lower(): v for k, v in headers.items()}
    for name in _DELIVERY_HEADERS[provider]:
        value = _header(headers, name)
        # An id too long or odd to key a table by is no id: the event is simply not deduplicated.
        if value and len(value) <= 200 and value.isprintable():
            return value
    return None


def parse(provider: str, headers: Mapping[str, str], body: bytes) -> Push | Ping | None:
    """What a verified request says: a Push, a Ping, or None for an event syncd ignores."""
    _known(provider)
    lowered = {k.lower(): v for k, v in headers.items()}
    return READERS[provider](lowered, body, delivery_id(provider, lowered))


# --- signatures -------------------------------------------------------------------------------


def verify(
    provider: str,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    signing_secrets: Sequence[str] = (),
    now: float | None = None,
) -> int:
    """Raise WebhookRejected(401) unless one of the configured secrets signed this request.

    Several secrets may be configured at once so they can be rotated; the answer is the index
    of the one that signed, in `secrets` followed by `signing_secrets`, so that a secret no
    delivery ever used can be shown as unused. `signing_secrets` are GitLab's signing tokens
    (Standard Webhooks, "whsec_..."). No message names a secret or the signature received.
    """
    _known(provider)
    signing_secrets = signing_secrets if provider == "gitlab" else []
    # An empty secret would let anyone sign: it is never tried.
    if not any(secrets) and not any(signing_secrets):
        raise WebhookRejected(401, f"webhooks for {provider} are not configured")
    lowered = {k.lower(): v for k, v in headers.items()}
    if provider == "gitlab":
        return _verify_gitlab(lowered, body, secrets, signing_secrets, now)
    if provider == "azure-devops":
        return _verify_basic_auth(lowered, secrets)
    return _verify_hmac(provider, lowered, body, secrets)


# Where each provider puts its hex HMAC-SHA256 of the body, and the prefix before the hex.
_HMAC_HEADERS: dict[str, tuple[tuple[str, str], ...]] = {
    "github": (("X-Hub-Signature-256", "sha256="),),
    "gitea": (
        ("X-Forgejo-Signature", ""),
        ("X-Gitea-Signature", ""),
        ("X-Gogs-Signature", ""),
        ("X-Hub-Signature-256", "sha256="),
    ),
    "bitbucket": (("X-Hub-Signature", "sha256="),),
    "bitbucket-server": (("X-Hub-Signature", "sha256="),),
    "generic": (("X-Signature", "sha256="),),
}


def _verify_hmac(
    provider: str, headers: Mapping[str, str], body: bytes, secrets: Sequence[str]
) -> int:
    wanted = _HMAC_HEADERS[provider]
    sent = [(name, v) for name, prefix in wanted if (v := _signature(headers, name, prefix))]
    if not sent:
        names = " or ".join(name for name, _ in wanted)
        raise WebhookRejected(401, f"missing {names} header: the {provider} webhook is not signed")
    for index, secret in enumerate(secrets):
        digest = hmac.new(_b(secret), body, hashlib.sha256).hexdigest().encode()
        if secret and any(_equal(digest, v) for _, v in sent):
            return index
    raise WebhookRejected(401, f"{sent[0][0]} does not match the body under any configured secret")


def _verify_gitlab(
    headers: Mapping[str, str],
    body: bytes,
    tokens: Sequence[str],
    signing_secrets: Sequence[str],
    now: float | None,
) -> int:
    token = _header(headers, "x-gitlab-token")
    signed = _header(headers, "webhook-signature")
    if not token and not signed:
        raise WebhookRejected(401, "missing X-Gitlab-Token or webhook-signature header")
    if token:
        for index, candidate in enumerate(tokens):
            if candidate and _equal(_b(candidate), _raw(token)):
                return index
    if signed and any(signing_secrets):
        problem, index = _standard_webhooks_problem(headers, body, signing_secrets, now)
        if problem is None:
            return len(tokens) + index
        raise WebhookRejected(401, problem)
    if token:
        raise WebhookRejected(401, "X-Gitlab-Token does not match any configured token")
    raise WebhookRejected(401, "webhook-signature sent, but no GitLab signing token is configured")


def _standard_webhooks_problem(
    headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float | None
) -> tuple[str | None, int]:
    """Why a Standard Webhooks signature fails, or (None, index of the secret that made it)."""
    msg_id, stamp = _header(headers, "webhook-id"), _header(headers, "webhook-timestamp")
    if not msg_id or not stamp:
        return "webhook-signature needs webhook-id and webhook-timestamp headers", -1
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        return "webhook-timestamp is not a number of seconds", -1
    now = time.time() if now is None else now
    if not abs(now - int(stamp)) <= SIGNATURE_TOLERANCE_SECONDS:  # a NaN `now` fails too
        return f"webhook-timestamp is more than {SIGNATURE_TOLERANCE_SECONDS} s from now", -1
    content = _raw(f"{msg_id}.{stamp}.") + body
    # Several signatures, space separated, each "v1,<base64>" (v1a is asymmetric: not ours).
    sent = [
        sig
        for version, _, sig in (
            p.partition(",") for p in _header(headers, "webhook-signature").split()
        )
        if version == "v1"
    ]
    for index, key in enumerate(map(_signing_key, secrets)):
        expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest())
        if key and secrets[index] and any(_equal(expected, _raw(s)) for s in sent):
            return None, index
    return "webhook-signature does not match the body under any configured signing token", -1


def _signing_key(secret: str) -> bytes:
    """A Standard Webhooks key: base64 after the "whsec_" prefix; a key in plain text as is."""
    encoded = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return _b(secret)


def _verify_basic_auth(headers: Mapping[str, str], passwords: Sequence[str]) -> int:
    """Azure DevOps signs nothing: its service hook sends HTTP basic auth.

    The configured secrets are passwords. The user name is not checked: it guards nothing.
    """
    scheme, _, encoded = _header(headers, "authorization").partition(" ")
    if scheme.lower() != "basic":
        raise WebhookRejected(401, "missing Authorization: Basic header (azure-devops webhook)")
    try:
        credentials = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError) as e:
        raise WebhookRejected(401, "Authorization: Basic credentials are not base64") from e
    _, colon, password = credentials.partition(b":")
    if not colon:
        raise WebhookRejected(401, "Authorization: Basic credentials lack a user:password pair")
    for index, candidate in enumerate(passwords):
        if candidate and _equal(password, _b(candidate)):
            return index
    raise WebhookRejected(401, "Authorization: Basic password matches no configured secret")


def _signature(headers: Mapping[str, str], name: str, prefix: str) -> bytes:
    """The hex signature sent in header `name` after `prefix`, lower-cased; b"" when absent."""
    value = _header(headers, name.lower()).lower()
    if not value or not value.startswith(prefix):
        return b""
    return _raw(value[len(prefix) :])


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    return value.strip() if isinstance(value, str) else ""


def _equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def _raw(value: str) -> bytes:
    """A header's bytes as received: Starlette decodes header values as latin-1."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return _b(value)


def _b(text: str) -> bytes:
    """UTF-8 bytes of any str, even one holding lone surrogates (as os.environ can)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


# --- matching ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """What a workspace follows: the normalized source URL, a branch and a folder."""

    workspace_id: str
    url_key: str  # normalize_repo_url(source.url)
    branch: str
    path: str  # "export/steps"; "" or "." for the whole repository


def match(push: Push, targets: Sequence[Target]) -> list[str]:
    """Ids of the workspaces a push concerns, in the order of targets, each once.

    Same repository (after normalizing every URL form the payload gave), one of the pushed
    branches, and, when the payload lists every changed file, a file under the target's path.
    """
    keys = {k for url in push.repo_urls if (k := normalize_repo_url(url))}
    hits: dict[str, None] = {}
    for target in targets:
        if target.url_key not in keys:
            continue
        if target.branch.removeprefix("refs/heads/") not in push.branches:
            continue
        if not _concerns(push.paths, target.path):
            continue
        hits[target.workspace_id] = None
    return list(hits)


def _concerns(files: frozenset[str] | None, folder: str) -> bool:
    """Whether changed files touch folder; unknown files might, and the root holds them all."""
    if files is None or not _components(folder):
        return True
    return any(_under(file, folder) for file in files)


def _under(file: str, folder: str) -> bool:
    """Whether file lies in folder, by whole path components ("a/b2" is not under "a/b")."""
    parent = _components(folder)
    return _components(file)[: len(parent)] == parent


def _components(path: str) -> list[str]:
    return [c for c in path.split("/") if c not in ("", ".")]
