"""An OpenID Connect ID token, checked: pure, apart from the provider's calls (oidc.py).

The signature must be one of the provider's keys' (JWKS), with an asymmetric algorithm the
provider says it uses (never `none`, never an HMAC, which a public key would turn into a shared
secret); then `iss` is the configured issuer, `aud` holds the client id (and `azp` names it when
there are several audiences or it is given), `exp` and `iat` are right within a minute of clock
skew, and `nonce` is the one the sign-in sent. The JOSE work is joserfc's (Authlib's).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey, import_key

from syncd.config.console_types import NAME_CLAIMS, OidcConfig

MAX_ID_TOKEN = 64 * 1024
MAX_KEYS = 50  # keys read from a JWKS
LEEWAY = 60.0  # seconds of clock skew allowed on exp and iat
MAX_GROUPS_READ = 1000  # entries of the groups claim looked at
MAX_REASON = 300  # characters of a provider's own words shown
# Asymmetric only: a JWKS is public, so an HMAC "signed" with one of its keys proves nothing.
ALGORITHMS: Mapping[str, type[RSAKey | ECKey | OKPKey]] = {
    **{f"{kind}{bits}": RSAKey for kind in ("RS", "PS") for bits in (256, 384, 512)},
    **{f"ES{bits}": ECKey for bits in (256, 384, 512)},
    "EdDSA": OKPKey,
}


class SignInRefused(Exception):
    """A sign-in that did not happen: the status the page gets and why, in a sentence; the
    subject when the provider had named one."""

    def __init__(self, status: int, reason: str, subject: str | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.subject = status, reason, subject


@dataclass(frozen=True)
class Identity:
    """Who the provider says signed in: `oidc:<subject>` to syncd."""

    subject: str
    display: str
    groups: list[str]


def header(id_token: str, listed: Iterable[str]) -> tuple[str, str | None]:
    """The ID token's algorithm, which must be one syncd takes and the provider says it uses
    (`listed`: discovery's; RS256 when it lists none), and its key id."""
    if len(id_token) > MAX_ID_TOKEN:
        raise SignInRefused(401, f"the ID token is over {MAX_ID_TOKEN // 1024} KiB")
    try:
        found = jws.extract_compact(id_token.encode()).headers()
    except (JoseError, ValueError, TypeError) as e:
        raise SignInRefused(401, "the ID token is not a signed JWT") from e
    alg, kid = found.get("alg"), found.get("kid")
    allowed = [a for a in listed if a in ALGORITHMS] or ["RS256"]
    if alg not in allowed:
        raise SignInRefused(
            401,
            f"the ID token is signed with {plain(str(alg))!r}; syncd takes "
            f"{', '.join(allowed)} from this provider",
        )
    return str(alg), kid if isinstance(kid, str) else None


def candidates(keys: Iterable[Key], alg: str, kid: str | None) -> list[Key]:
    """The keys that may have signed it: of the algorithm's type, with its kid when it has one."""
    kind = ALGORITHMS[alg]
    return [k for k in keys if isinstance(k, kind) and (kid is None or k.kid == kid)]


def signed_claims(id_token: str, alg: str, keys: Iterable[Key]) -> dict[str, Any] | None:
    """The claims, when one of the keys verifies the signature; else None."""
    for key in keys:
        try:
            return dict(jwt.decode(id_token, key, algorithms=[alg]).claims)
        except JoseError:
            continue
    return None


def read_keys(listed: list[Any]) -> list[Key]:
    """A JWKS's signing keys that syncd can use (asymmetric); the others are passed over."""
    keys: list[Key] = []
    for data in listed[:MAX_KEYS]:
        if not isinstance(data, dict) or data.get("kty") not in ("RSA", "EC", "OKP"):
            continue  # symmetric ("oct") keys never sign an ID token syncd takes
        if data.get("use", "sig") != "sig":
            continue
        try:
            keys.append(import_key(data))
        except (JoseError, ValueError, TypeError):
            continue  # a key syncd cannot read: the others may do
    return keys


def check_claims(config: OidcConfig, claims: Mapping[str, Any], nonce: str, now: float) -> None:
    sub = claims.get("sub")
    subject = sub if isinstance(sub, str) and 0 < len(sub) <= 255 else None

    def refuse(reason: str) -> SignInRefused:
        return SignInRefused(401, reason, subject)

    if claims.get("iss") != config.issuer:
        raise refuse(f"the ID token's issuer is {shown(claims.get('iss'))}, not {config.issuer}")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    client_id = config.client_id
    if client_id not in audiences:
        raise refuse(f"the ID token is for {shown(aud)}, not for this console ({client_id})")
    azp = claims.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp != client_id:
        raise refuse(f"the ID token was issued to {shown(azp)}, not to {client_id}")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not _number(exp) or now > exp + LEEWAY:
        raise refuse(f"the ID token has expired (exp {shown(exp)})")
    if not _number(iat) or iat > now + LEEWAY:
        raise refuse(f"the ID token's issue time is not in the past (iat {shown(iat)})")
    said = claims.get("nonce")
    if not isinstance(said, str) or not secrets.compare_digest(said.encode(), nonce.encode()):
        raise refuse("the ID token's nonce is not the one this sign-in sent (a replay?)")
    if subject is None or any(ord(c) < 32 for c in subject):
        raise refuse("the ID token names no usable subject (sub)")


def identity(config: OidcConfig, claims: Mapping[str, Any]) -> Identity:
    subject = str(claims["sub"])
    names = (config.name_claim,) if config.name_claim else NAME_CLAIMS
    display = next(
        (str(claims[n]) for n in names if isinstance(claims.get(n), str) and claims[n].strip()),
        subject,
    )
    raw = claims.get(config.groups_claim)
    found = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    groups = [g for g in found[:MAX_GROUPS_READ] if isinstance(g, str)]
    return Identity(subject, plain(display)[:100], groups)


def _number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def plain(text: str) -> str:
    """A provider's words as shown on a page: one line, bounded."""
    return " ".join(text.split())[:MAX_REASON]


def shown(value: object) -> str:
    return plain(json.dumps(value)) if value is not None else "missing"
