"""Push and pull request webhooks: which provider sent one, is it signed, what moved or is
proposed, which workspaces care.

Pure: no I/O. The use case (syncd.service.intake) calls, in order, detect_provider (for
`/hooks`), verify, parse and match. Headers are a mapping with lower-case keys, as Starlette
gives them. Whatever a request holds, these functions answer or raise a WebhookRejected
subclass (UnknownProvider, BadSignature, MalformedPayload), nothing else.

- providers: the one table of facts about each git host
- detect: the provider and the delivery id, from the headers alone
- signatures: HMAC, token and basic-auth checks, in constant time
- payloads: each provider's push payload read into a Push or a Ping
- pulls: GitHub's, GitLab's and Gitea's pull request events read into a PullRequest
- matching: a Push or a PullRequest against what the workspaces follow
"""

from syncd.webhooks.detect import delivery_id, detect_provider
from syncd.webhooks.errors import (
    BadSignature,
    MalformedPayload,
    ProviderNotDetected,
    UnknownProvider,
    WebhookRejected,
)
from syncd.webhooks.matching import Matcher, Target, match
from syncd.webhooks.message import Lowered, lowered
from syncd.webhooks.payloads import Event, Ping, Push, parse
from syncd.webhooks.providers import PROVIDERS, Provider, Scheme, provider
from syncd.webhooks.pulls import PullRequest
from syncd.webhooks.signatures import Verifier, verify

__all__ = [
    "PROVIDERS",
    "BadSignature",
    "Event",
    "Lowered",
    "MalformedPayload",
    "Matcher",
    "Ping",
    "Provider",
    "ProviderNotDetected",
    "PullRequest",
    "Push",
    "Scheme",
    "Target",
    "UnknownProvider",
    "Verifier",
    "WebhookRejected",
    "delivery_id",
    "detect_provider",
    "lowered",
    "match",
    "parse",
    "provider",
    "verify",
]
