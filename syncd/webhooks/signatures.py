"""Is a webhook request signed by a configured secret? Constant-time comparisons only.

Pure. Several secrets may be configured at once so they can be rotated. No message names a
secret or the signature received.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence

from syncd.webhooks.errors import BadSignature
from syncd.webhooks.message import header, lowered, raw, utf8
from syncd.webhooks.providers import Scheme, provider

# Standard Webhooks (GitLab's signing token): how far webhook-timestamp may be from now.
SIGNATURE_TOLERANCE_SECONDS = 300


class Verifier:
    """One provider's signature check with its secrets set up once (per config, not per
    request): an HMAC key is keyed once, an empty secret is left out, header names lowered.

    `verify` raises BadSignature unless one of the secrets signed the request. The answer is
    the index of the secret that signed, in `secrets` followed by `signing_secrets`, so that a
    secret no delivery ever used can be shown as unused. `signing_secrets` are GitLab's
    signing tokens (Standard Webhooks, "whsec_...")."""

    def __init__(
        self, provider_name: str, secrets: Sequence[str], signing_secrets: Sequence[str] = ()
    ) -> None:
        self.sender = sender = provider(provider_name)
        self.secrets = tuple(secrets)
        self.signing = tuple(signing_secrets) if sender.scheme is Scheme.GITLAB_TOKEN else ()
        # An empty secret would let anyone sign: it is never tried.
        self.configured = any(self.secrets) or any(self.signing)
        self._wanted = tuple(
            (name, name.lower(), prefix) for name, prefix in sender.signature_headers
        )
        self._keys: tuple[tuple[int, HmacSha256], ...] = ()
        if sender.scheme is Scheme.HMAC_SHA256:
            self._keys = tuple((i, HmacSha256(s)) for i, s in enumerate(self.secrets) if s)

    def verify(self, headers: Mapping[str, str], body: bytes, now: float | None = None) -> int:
        if not self.configured:
            raise BadSignature(f"webhooks for {self.sender.name} are not configured")
        headers = lowered(headers)
        scheme = self.sender.scheme
        if scheme is Scheme.GITLAB_TOKEN:
            return _verify_gitlab(headers, body, self.secrets, self.signing, now)
        if scheme is Scheme.BASIC_AUTH:
            return _verify_basic_auth(headers, self.secrets)
        return self._verify_hmac(headers, body)

    def _verify_hmac(self, headers: Mapping[str, str], body: bytes) -> int:
        sent = [
            (name, v)
            for name, low, prefix in self._wanted
            if (v := _signature(headers, low, prefix))
        ]
        if not sent:
            names = " or ".join(name for name, _, _ in self._wanted)
            raise BadSignature(
                f"missing {names} header: the {self.sender.name} webhook is not signed"
            )
        for index, key in self._keys:
            digest = key.hexdigest(body)
            if any(_equal(digest, v) for _, v in sent):
                return index
        raise BadSignature(f"{sent[0][0]} does not match the body under any configured secret")


def verify(
    provider_name: str,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    signing_secrets: Sequence[str] = (),
    now: float | None = None,
) -> int:
    """`Verifier(...).verify(...)` in one call, for a caller with no prepared Verifier."""
    return Verifier(provider_name, secrets, signing_secrets).verify(headers, body, now)


class HmacSha256:
    """HMAC-SHA256 under one key, keyed once (RFC 2104): what hmac.digest gives, from SHA-256
    states that have taken the padded key. OpenSSL's one-shot HMAC sets its key up on every
    call, which cost a webhook about as much as hashing its body. The states sign as well as
    the key: they live as long as the config that holds them."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, secret: str) -> None:
        key = utf8(secret)
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(key.translate(_INNER))
        self._outer = hashlib.sha256(key.translate(_OUTER))

    def hexdigest(self, body: bytes) -> bytes:
        """The HMAC of body, as lower-case hex bytes (as the signature headers carry it)."""
        digest = self._inner.copy()
        digest.update(body)
        wrapped = self._outer.copy()
        wrapped.update(digest.digest())
        hex_text: str = wrapped.hexdigest()
        return hex_text.encode()


# The key, padded to SHA-256's 64-byte block, XORed with 0x36 (inner) and 0x5c (outer).
_INNER = bytes(b ^ 0x36 for b in range(256))
_OUTER = bytes(b ^ 0x5C for b in range(256))


def _verify_gitlab(
    headers: Mapping[str, str],
    body: bytes,
    tokens: Sequence[str],
    signing_secrets: Sequence[str],
    now: float | None,
) -> int:
    token = header(headers, "x-gitlab-token")
    signed = header(headers, "webhook-signature")
    if not token and not signed:
        raise BadSignature("missing X-Gitlab-Token or webhook-signature header")
    if token:
        for index, candidate in enumerate(tokens):
            if candidate and _equal(utf8(candidate), raw(token)):
                return index
    if signed and any(signing_secrets):
        problem, index = _standard_webhooks_problem(headers, body, signing_secrets, now)
        if problem is None:
            return len(tokens) + index
        raise BadSignature(problem)
    if token:
        raise BadSignature("X-Gitlab-Token does not match any configured token")
    raise BadSignature("webhook-signature sent, but no GitLab signing token is configured")


def _standard_webhooks_problem(
    headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float | None
) -> tuple[str | None, int]:
    """Why a Standard Webhooks signature fails, or (None, index of the secret that made it)."""
    msg_id, stamp = header(headers, "webhook-id"), header(headers, "webhook-timestamp")
    if not msg_id or not stamp:
        return "webhook-signature needs webhook-id and webhook-timestamp headers", -1
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        return "webhook-timestamp is not a number of seconds", -1
    now = time.time() if now is None else now
    if not abs(now - int(stamp)) <= SIGNATURE_TOLERANCE_SECONDS:  # a NaN `now` fails too
        return f"webhook-timestamp is more than {SIGNATURE_TOLERANCE_SECONDS} s from now", -1
    content = raw(f"{msg_id}.{stamp}.") + body
    # Several signatures, space separated, each "v1,<base64>" (v1a is asymmetric: not ours).
    sent = [
        sig
        for version, _, sig in (
            p.partition(",") for p in header(headers, "webhook-signature").split()
        )
        if version == "v1"
    ]
    for index, key in enumerate(map(_signing_key, secrets)):
        expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest())
        if key and secrets[index] and any(_equal(expected, raw(s)) for s in sent):
            return None, index
    return "webhook-signature does not match the body under any configured signing token", -1


def _signing_key(secret: str) -> bytes:
    """A Standard Webhooks key: base64 after the "whsec_" prefix; a key in plain text as is."""
    encoded = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return utf8(secret)


def _verify_basic_auth(headers: Mapping[str, str], passwords: Sequence[str]) -> int:
    """Azure DevOps signs nothing: its service hook sends HTTP basic auth.

    The configured secrets are passwords. The user name is not checked: it guards nothing.
    """
    scheme, _, encoded = header(headers, "authorization").partition(" ")
    if scheme.lower() != "basic":
        raise BadSignature("missing Authorization: Basic header (azure-devops webhook)")
    try:
        credentials = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError) as e:
        raise BadSignature("Authorization: Basic credentials are not base64") from e
    _, colon, password = credentials.partition(b":")
    if not colon:
        raise BadSignature("Authorization: Basic credentials lack a user:password pair")
    for index, candidate in enumerate(passwords):
        if candidate and _equal(password, utf8(candidate)):
            return index
    raise BadSignature("Authorization: Basic password matches no configured secret")


def _signature(headers: Mapping[str, str], name: str, prefix: str) -> bytes:
    """The hex signature sent in header `name` after `prefix`, lower-cased; b"" when absent."""
    value = header(headers, name.lower()).lower()
    if not value or not value.startswith(prefix):
        return b""
    return raw(value[len(prefix) :])


def _equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)
