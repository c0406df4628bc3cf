"""A GitHub App installation's token: fetched with a short JWT signed by the App's private key,
kept until it has less than five minutes left, and dropped when GitHub refuses it (revoked).

https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import jwt

from syncd.config.types import GitHubAppConfig
from syncd.report.host import HostError
from syncd.report.hosts.http import Answer, expect_object, expect_str

RENEW_BEFORE = 300.0  # seconds before expires_at a token is replaced
JWT_BACKDATE = 60  # GitHub's advice: iat a minute in the past, against clock drift
JWT_LIFETIME = 540  # GitHub takes at most 10 minutes; 9 leaves room for drift


@dataclass(frozen=True)
class InstallationToken:
    value: str
    expires_at: float  # epoch seconds


Post = Callable[[str, str, dict[str, str]], Awaitable[Answer]]


class AppTokens:
    """The installation token cache of one provider entry."""

    def __init__(self, provider: str, app: GitHubAppConfig, clock: Callable[[], float]) -> None:
        self.provider = provider
        self.app = app
        self.clock = clock
        self.token: InstallationToken | None = None
        self.jwt_in_use = ""  # scrubbed from errors as the token is
        self.fetched = 0  # tokens fetched so far (a test's and a metric's count)
        self._fetching = asyncio.Lock()

    def secrets(self) -> tuple[str, ...]:
        held = (self.token.value,) if self.token else ()
        return (*held, self.jwt_in_use, self.app.private_key.reveal())

    def drop(self) -> bool:
        """Forget the cached token (GitHub answered 401 to it); whether there was one."""
        had = self.token is not None
        self.token = None
        return had

    def make_jwt(self) -> str:
        now = int(self.clock())
        claims = {"iat": now - JWT_BACKDATE, "exp": now + JWT_LIFETIME, "iss": str(self.app.app_id)}
        try:
            token = jwt.encode(claims, self.app.private_key.reveal(), algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError) as e:
            # The key's text never goes into the message: only what kind of failure it was.
            raise HostError(
                f"provider {self.provider!r}: the GitHub App's private key cannot sign a JWT "
                f"({type(e).__name__}); it must be the App's RSA key in PEM"
            ) from None
        self.jwt_in_use = token
        return token

    async def get(self, post: Post) -> str:
        """A token with at least RENEW_BEFORE seconds left, fetched when the cached one lacks
        them. `post(operation, path, headers)` sends the request (the client's own call)."""
        async with self._fetching:  # workers whose token just ended fetch one, not one each
            if self.token is not None and self.token.expires_at - self.clock() > RENEW_BEFORE:
                return self.token.value
            return await self._fetch(post)

    async def _fetch(self, post: Post) -> str:
        self.token = None
        operation = f"installation token for app {self.app.app_id}"
        headers = {"Authorization": f"Bearer {self.make_jwt()}"}
        path = f"/app/installations/{self.app.installation_id}/access_tokens"
        answer = await post(operation, path, headers)
        try:
            doc = expect_object(answer, operation)
            value = expect_str(doc, "token", operation)
            expires = expect_str(doc, "expires_at", operation)
            expires_at = datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp()
        except ValueError as e:
            raise HostError(
                f"provider {self.provider!r}: {operation}: HTTP {answer.status}: unexpected "
                f"answer: {str(e)[:200]}"
            ) from None
        self.token = InstallationToken(value, expires_at)
        self.fetched += 1
        return value
