"""Why a webhook request is refused, as types. Only the API turns them into statuses."""

from __future__ import annotations

from collections.abc import Sequence

from syncd.core.errors import SyncdError


class WebhookRejected(SyncdError):
    """A webhook request syncd refuses; the subclass says why, the message says what."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownProvider(WebhookRejected):
    """The request names a provider syncd does not know."""

    def __init__(self, provider: str, known: Sequence[str]) -> None:
        super().__init__(f"unknown webhook provider {provider[:40]!r}; known: {', '.join(known)}")
        self.provider = provider
        self.known = tuple(known)


class BadSignature(WebhookRejected):
    """No configured secret signed the request, or none is configured: nothing more is read."""


class MalformedPayload(WebhookRejected):
    """A signed request whose headers or body cannot be read as the provider's event."""


class ProviderNotDetected(MalformedPayload):
    """A request to `/hooks` whose headers name no provider."""
