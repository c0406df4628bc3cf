"""The git hosts syncd hears from, and every fact about how each one sends a webhook.

One table: detection, signature checks and payload readers all read their facts here, so a
provider is described in one place. Header names are lower-case, as Starlette gives them; the
signature headers keep their documented spelling because error messages name them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from syncd.core.model import WEBHOOK_PROVIDERS
from syncd.webhooks.errors import UnknownProvider

__all__ = ["PROVIDERS", "Provider", "Scheme", "provider"]

# The names, in the order config, the API's 404 and the OpenAPI document list them.
PROVIDERS = WEBHOOK_PROVIDERS


class Scheme(StrEnum):
    """How a provider proves that a delivery comes from it."""

    HMAC_SHA256 = "hmac-sha256"  # hex HMAC-SHA256 of the body, in one of signature_headers
    GITLAB_TOKEN = "gitlab-token"  # X-Gitlab-Token, or a Standard Webhooks signature
    BASIC_AUTH = "basic-auth"  # HTTP basic auth: the password is the secret


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    # On `/hooks`, any of these headers names the provider (a name ending in "-" is a prefix).
    detected_by: tuple[str, ...]
    # The event's name, first present wins; () when the body carries it.
    event_headers: tuple[str, ...]
    # Events that are a push, and events that only check the hook is reachable.
    push_events: tuple[str, ...]
    ping_events: tuple[str, ...]
    # The id a redelivery repeats, first present wins.
    delivery_headers: tuple[str, ...]
    scheme: Scheme
    # For HMAC_SHA256: (header, prefix before the hex), in the order they are looked for.
    signature_headers: tuple[tuple[str, str], ...] = ()
    # Among providers detected by the same header, these headers or event prefixes point here.
    told_apart_by: tuple[str, ...] = ()
    own_event_prefixes: tuple[str, ...] = ()
    # Events that are a pull (merge) request, read by syncd.webhooks.pulls; () for a provider
    # whose pull requests syncd does not read.
    pull_events: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        """The endpoint for this provider alone."""
        return f"/hooks/{self.name}"


_TABLE = (
    Provider(
        name="github",
        detected_by=("x-github-event",),
        event_headers=("x-github-event",),
        push_events=("push",),
        ping_events=("ping",),
        delivery_headers=("x-github-delivery",),
        scheme=Scheme.HMAC_SHA256,
        signature_headers=(("X-Hub-Signature-256", "sha256="),),
        pull_events=("pull_request",),
    ),
    Provider(
        name="gitlab",
        detected_by=("x-gitlab-event", "x-gitlab-token"),
        event_headers=("x-gitlab-event",),
        push_events=("Push Hook", "System Hook"),
        ping_events=(),
        delivery_headers=("x-gitlab-event-uuid", "idempotency-key", "webhook-id"),
        scheme=Scheme.GITLAB_TOKEN,
        pull_events=("Merge Request Hook",),
    ),
    Provider(
        # Gitea, Forgejo and Gogs share one payload; they send X-GitHub-Event too.
        name="gitea",
        detected_by=("x-gitea-", "x-forgejo-", "x-gogs-"),
        event_headers=("x-forgejo-event", "x-gitea-event", "x-gogs-event", "x-github-event"),
        push_events=("push",),
        ping_events=("ping",),
        delivery_headers=(
            "x-forgejo-delivery",
            "x-gitea-delivery",
            "x-gogs-delivery",
            "x-github-delivery",
        ),
        scheme=Scheme.HMAC_SHA256,
        signature_headers=(
            ("X-Forgejo-Signature", ""),
            ("X-Gitea-Signature", ""),
            ("X-Gogs-Signature", ""),
            ("X-Hub-Signature-256", "sha256="),
        ),
        pull_events=("pull_request",),
    ),
    Provider(
        name="bitbucket",
        detected_by=("x-event-key",),
        event_headers=("x-event-key",),
        push_events=("repo:push",),
        ping_events=(),
        # Not X-Hook-UUID: it names the hook, and every delivery of a hook carries the same one.
        delivery_headers=("x-request-uuid",),
        scheme=Scheme.HMAC_SHA256,
        signature_headers=(("X-Hub-Signature", "sha256="),),
        told_apart_by=("x-hook-uuid", "x-request-uuid"),
    ),
    Provider(
        # Bitbucket Server and Data Center. Cloud's event keys look alike ("repo:push") but are
        # never these.
        name="bitbucket-server",
        detected_by=("x-event-key",),
        event_headers=("x-event-key",),
        push_events=("repo:refs_changed",),
        ping_events=("diagnostics:ping",),
        delivery_headers=("x-request-id",),
        scheme=Scheme.HMAC_SHA256,
        signature_headers=(("X-Hub-Signature", "sha256="),),
        told_apart_by=("x-request-id",),
        own_event_prefixes=("repo:refs_changed", "repo:modified", "diagnostics:ping", "pr:"),
    ),
    Provider(
        # It sends no header of its own: the event and its id are in the body.
        name="azure-devops",
        detected_by=(),
        event_headers=(),
        push_events=("git.push",),
        ping_events=(),
        delivery_headers=(),
        scheme=Scheme.BASIC_AUTH,
    ),
    Provider(
        # syncd's own format, for any sender that can sign a body.
        name="generic",
        detected_by=("x-signature",),
        event_headers=(),
        push_events=(),
        ping_events=(),
        delivery_headers=("x-delivery-id",),
        scheme=Scheme.HMAC_SHA256,
        signature_headers=(("X-Signature", "sha256="),),
    ),
)

BY_NAME: Mapping[str, Provider] = MappingProxyType({p.name: p for p in _TABLE})


def provider(name: str) -> Provider:
    """The facts about provider `name`; UnknownProvider when syncd knows no such provider."""
    found = BY_NAME.get(name)
    if found is None:
        raise UnknownProvider(name, PROVIDERS)
    return found
