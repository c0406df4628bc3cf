"""What a request's headers tell before its body is read: who sent it, and which delivery."""

from __future__ import annotations

from collections.abc import Mapping

from syncd.webhooks.errors import ProviderNotDetected
from syncd.webhooks.message import header, lowered
from syncd.webhooks.providers import BY_NAME, Provider, provider

# Gitea, Forgejo and Gogs send X-GitHub-Event too, so they are looked for before GitHub; the
# two Bitbuckets share X-Event-Key and are told apart afterwards.
_PRECEDENCE = ("gitea", "gitlab", "bitbucket", "github", "generic")
_BITBUCKETS = (BY_NAME["bitbucket"], BY_NAME["bitbucket-server"])


def detect_provider(headers: Mapping[str, str]) -> str:
    """The provider that sent a request to `/hooks`, told from its headers alone."""
    headers = lowered(headers)
    for name in _PRECEDENCE:
        if _sends(BY_NAME[name], headers):
            return _bitbucket_flavour(headers) if name == "bitbucket" else name
    raise ProviderNotDetected(
        "cannot tell the webhook provider from the headers: looked for X-Gitea-Event, "
        "X-Forgejo-Event, X-Gogs-Event, X-Gitlab-Event, X-Event-Key, X-GitHub-Event and "
        f"X-Signature; Azure DevOps sends none of these and must use "
        f"{BY_NAME['azure-devops'].path}",
    )


def _sends(candidate: Provider, headers: Mapping[str, str]) -> bool:
    return any(
        name in headers or (name.endswith("-") and any(h.startswith(name) for h in headers))
        for name in candidate.detected_by
    )


def _bitbucket_flavour(headers: Mapping[str, str]) -> str:
    """Cloud or Server: their own headers first, then an event key only Server sends."""
    cloud, server = _BITBUCKETS
    if any(h in headers for h in cloud.told_apart_by):
        return cloud.name
    if any(h in headers for h in server.told_apart_by):
        return server.name
    key = header(headers, server.event_headers[0])
    return server.name if key.startswith(server.own_event_prefixes) else cloud.name


def delivery_id(provider_name: str, headers: Mapping[str, str]) -> str | None:
    """The id a redelivery of the same event repeats, when the headers carry one."""
    names = provider(provider_name).delivery_headers
    headers = lowered(headers)
    for name in names:
        value = header(headers, name)
        # An id too long or odd to key a table by is no id: the event is simply not deduplicated.
        if value and len(value) <= 200 and value.isprintable():
            return value
    return None
