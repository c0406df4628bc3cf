"""Webhook intake: a signed push in, sync requests out, counted and deduplicated; a signed pull
request in, its plan requested (`syncd.service.pull_plans`).

The use case behind `POST /hooks[/{provider}]`, without HTTP: the API reads the body (and
refuses an oversize one before reading), calls `Intake.receive_push`, and turns the error
types into statuses. Everything else happens here, in this order: verify the signature before
parsing anything, parse, match the push against the workspaces (`screen`: no store, no
scheduler, so an intake process can do it too), then drop a redelivery and request a sync of
each matched workspace (`take`); each result is counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from syncd import webhooks
from syncd.config.credentials import checking_value
from syncd.core.errors import SyncdError
from syncd.core.model import Trigger
from syncd.core.urls import normalize_repo_url
from syncd.ops.logs import fields
from syncd.runs.requests import QueueFull, ShuttingDown, Ticket
from syncd.service.deliveries import DeliveryLog
from syncd.webhooks import BadSignature, Ping, Target, WebhookRejected

if TYPE_CHECKING:  # the config (and with it pygit2) only for the annotations
    from syncd.config import Config

log = logging.getLogger("syncd.intake")

# The metric's provider label when the request names no provider syncd knows.
UNKNOWN = "unknown"


class SyncRequests(Protocol):
    """The scheduler, as far as webhooks need it."""

    async def request(self, ws_id: str, trigger: Trigger) -> Ticket: ...


class PullRequestPlans(Protocol):
    """Plans of pull requests (syncd.service.pull_plans), as far as webhooks need them."""

    async def request(
        self, event: webhooks.PullRequest, matched: tuple[str, ...]
    ) -> tuple[str, ...]: ...


class WebhookCounter(Protocol):
    """The metrics, as far as webhooks need them: one counter by provider and result."""

    def webhook(self, provider: str, result: str) -> None: ...


class DeliveryOutcome(StrEnum):
    """What became of a delivery; the values are the metric's result labels."""

    ACCEPTED = "accepted"  # matched workspaces, each now has a sync requested
    UNMATCHED = "unmatched"  # a push no workspace follows
    IGNORED = "ignored"  # an event that is not a push (tags, issues, ...)
    PING = "ping"
    DUPLICATE = "duplicate"  # a redelivery of an event already taken


@dataclass(frozen=True, slots=True)
class Receipt:
    provider: str
    outcome: DeliveryOutcome
    matched: tuple[str, ...] = ()  # workspace ids the push concerns
    queued: tuple[str, ...] = ()  # those whose sync was requested
    delivery: str | None = None


@dataclass(frozen=True, slots=True)
class Screened:
    """A verified delivery, parsed and matched: answered already (`receipt`), or a push
    that matched workspaces and is still to be taken."""

    provider: str
    event: webhooks.Event
    matched: tuple[str, ...]
    receipt: Receipt | None


def _shown(delivery: str | None) -> str:
    return (delivery or "-")[:64]


class Overloaded(SyncdError):
    """The scheduler refused a sync the push asked for; the delivery may be sent again.

    The message is the scheduler's; `matched` and `queued` say how far the push got.
    """

    def __init__(self, message: str, matched: tuple[str, ...], queued: tuple[str, ...]) -> None:
        super().__init__(message)
        self.matched, self.queued = matched, queued


# A provider's secrets and its signing secrets (GitLab's), revealed.
Secrets = tuple[tuple[str, ...], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class _Prepared:
    config: Config | None  # None: handed in by the daemon (see `Intake.use`)
    targets: list[Target]
    matcher: webhooks.Matcher
    secrets: dict[str, Secrets]
    # Every provider's signature check, its keys set up: dropped with the config, so a
    # secret a reload rotated out goes with it.
    verifiers: dict[str, webhooks.Verifier]


def _prepared(
    config: Config | None, targets: list[Target], secrets: dict[str, Secrets]
) -> _Prepared:
    verifiers = {p: webhooks.Verifier(p, *secrets.get(p, ((), ()))) for p in webhooks.PROVIDERS}
    return _Prepared(config, targets, webhooks.Matcher(targets), secrets, verifiers)


class Intake:
    """Takes push webhooks for the current config; remembers what health reports about them."""

    def __init__(
        self,
        config: Callable[[], Config],
        scheduler: SyncRequests,
        metrics: WebhookCounter,
        deliveries: DeliveryLog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config, self._scheduler, self._metrics = config, scheduler, metrics
        self._deliveries = DeliveryLog() if deliveries is None else deliveries
        self._clock = clock
        # Plans of pull requests: the daemon's (None: pull requests are matched, not planned).
        self.pulls: PullRequestPlans | None = None
        self._prepared: _Prepared | None = None
        self._fixed: _Prepared | None = None
        self._webhook_last_seen: dict[str, float] = {}
        self._secret_last_seen: dict[tuple[str, int], float] = {}

    @property
    def webhook_last_seen(self) -> Mapping[str, float]:
        """When each provider last sent a correctly signed request."""
        return self._webhook_last_seen

    @property
    def secret_last_seen(self) -> Mapping[tuple[str, int], float]:
        """When each (provider, index of the secret) last signed a request."""
        return self._secret_last_seen

    def provider_of(self, named: str | None, headers: Mapping[str, str]) -> str:
        """The provider a request is for: the one its path names, or the one its headers show.

        Raises UnknownProvider or ProviderNotDetected, counted as malformed.
        """
        try:
            if named is None:
                return webhooks.detect_provider(headers)
            return webhooks.provider(named).name
        except WebhookRejected:
            self._metrics.webhook(UNKNOWN, "malformed")
            raise

    def refused(self, provider: str | None, result: str) -> None:
        """Count a request the HTTP layer refused itself (too large, stopping, bad length)."""
        self._metrics.webhook(provider if provider in webhooks.PROVIDERS else UNKNOWN, result)

    async def receive_push(
        self, provider: str | None, headers: Mapping[str, str], body: bytes
    ) -> Receipt:
        """Verify, parse, deduplicate, match and request syncs; count the result.

        Raises UnknownProvider (or ProviderNotDetected), BadSignature, MalformedPayload, and
        Overloaded when the scheduler refuses a sync; each is counted before it is raised.
        """
        provider = self.provider_of(provider, headers)
        return await self.receive_lowered(provider, webhooks.lowered(headers), body)

    async def receive_lowered(
        self, provider: str, headers: Mapping[str, str], body: bytes
    ) -> Receipt:
        """`receive_push` for a known provider's request whose header names are lower-case
        already (as ASGI servers hand them over): the HTTP layer's path, one copy fewer."""
        screened = self.screen(provider, headers, body)
        return screened.receipt if screened.receipt is not None else await self.take(screened)

    def screen(self, provider: str, headers: Mapping[str, str], body: bytes) -> Screened:
        """What needs no store and no scheduler: verify, parse, match. A delivery that asks
        for nothing (an ignored event, a ping, a push no workspace follows) is answered and
        counted here; one that matched is left to `take`. An intake process in front of the
        daemon (`syncd.intake_front`) screens, and hands only matched pushes on."""
        prepared = self._prepare()
        try:
            event = self._verified_event(prepared, provider, headers, body)
        except BadSignature:
            self._metrics.webhook(provider, "unauthorized")
            raise
        except WebhookRejected:
            self._metrics.webhook(provider, "malformed")
            raise
        if event is None:
            return Screened(
                provider, event, (), self._counted(Receipt(provider, DeliveryOutcome.IGNORED))
            )
        if isinstance(event, Ping):
            receipt = Receipt(provider, DeliveryOutcome.PING, delivery=event.delivery)
            return Screened(provider, event, (), self._counted(receipt))
        matched = tuple(prepared.matcher.match(event))
        if matched:
            return Screened(provider, event, matched, None)
        # Pushes that match nothing are most of a busy host's webhooks: not worth a log line
        # each, nor a write to the store (one that matches nothing starts nothing however
        # often it comes).
        if log.isEnabledFor(logging.DEBUG):
            shown = _shown(event.delivery)
            log.debug("webhook", extra=fields(provider=provider, delivery=shown, matched="-"))
        receipt = Receipt(provider, DeliveryOutcome.UNMATCHED, delivery=event.delivery)
        return Screened(provider, event, (), self._counted(receipt))

    async def take(self, screened: Screened) -> Receipt:
        """A matched push: drop a redelivery, request a sync of each workspace, count. A
        matched pull request: drop a redelivery, have its plan made (in the background)."""
        provider, event, matched = screened.provider, screened.event, screened.matched
        assert isinstance(event, webhooks.Push | webhooks.PullRequest) and matched
        if not await self._deliveries.claim(provider, event.delivery, self._clock()):
            return self._counted(
                Receipt(provider, DeliveryOutcome.DUPLICATE, delivery=event.delivery)
            )
        if isinstance(event, webhooks.PullRequest):
            planned = await self.pulls.request(event, matched) if self.pulls else ()
            log.info(
                "webhook",
                extra=fields(
                    provider=provider,
                    delivery=_shown(event.delivery),
                    pr=event.number,
                    matched=",".join(matched),
                    planned=",".join(planned) or "-",
                ),
            )
            receipt = Receipt(provider, DeliveryOutcome.ACCEPTED, matched, (), event.delivery)
            return self._counted(receipt)
        try:
            queued = await self._request_syncs(provider, matched)
        except Overloaded:
            # Only a delivery whose syncs were all requested is taken: a refused one may be resent.
            await self._deliveries.release(provider, event.delivery)
            raise
        log.info(
            "webhook",
            extra=fields(
                provider=provider, delivery=_shown(event.delivery), matched=",".join(matched)
            ),
        )
        receipt = Receipt(provider, DeliveryOutcome.ACCEPTED, matched, queued, event.delivery)
        return self._counted(receipt)

    def seen(self, provider: str, signed_by: int, at: float) -> None:
        """A correctly signed request that another process (an intake process) took."""
        if at > self._webhook_last_seen.get(provider, 0.0):
            self._webhook_last_seen[provider] = at
        if at > self._secret_last_seen.get((provider, signed_by), 0.0):
            self._secret_last_seen[(provider, signed_by)] = at

    def targets(self) -> list[Target]:
        """What each workspace follows, worked out once per config, not once per webhook."""
        return self._prepare().targets

    def use(self, targets: list[Target], secrets: Mapping[str, Secrets]) -> None:
        """Screen with these targets and secrets from now on, not the config's: an intake
        process gets them from the daemon, which has loaded (and checked) the config."""
        self._fixed = _prepared(None, targets, dict(secrets))

    def secrets(self) -> dict[str, Secrets]:
        """Each provider's secrets and signing secrets, revealed: what `use` takes."""
        return self._prepare().secrets

    def _prepare(self) -> _Prepared:
        """Everything a webhook needs of the config that does not depend on the request:
        the targets (indexed by URL) and each provider's secrets. Redone when a reload swaps
        the config object."""
        if self._fixed is not None:
            return self._fixed
        config = self._config()
        if self._prepared is None or self._prepared.config is not config:
            targets = [
                Target(ws.id, normalize_repo_url(ws.source.url), ws.source.branch, ws.source.path)
                for ws in config.workspaces
            ]
            secrets = {
                name: (
                    # One whose file went away (a reload read none) verifies nothing; it keeps
                    # its place, by which deliveries name the secret they used.
                    tuple(checking_value(s) for s in hook.secrets),
                    tuple(checking_value(s) for s in hook.signing_secrets),
                )
                for name, hook in config.webhooks.items()
            }
            self._prepared = _prepared(config, targets, secrets)
        return self._prepared

    def _verified_event(
        self, prepared: _Prepared, provider: str, headers: Mapping[str, str], body: bytes
    ) -> webhooks.Event:
        now = self._clock()
        # Verify before parsing: nothing unsigned is ever looked at.
        verifier = prepared.verifiers.get(provider) or webhooks.Verifier(provider, ())
        signed_by = verifier.verify(headers, body, now)
        self._webhook_last_seen[provider] = now
        self._secret_last_seen[(provider, signed_by)] = now
        # A push's changed files only for a repository whose workspaces look at them.
        return webhooks.parse(provider, headers, body, prepared.matcher.files_wanted)

    async def _request_syncs(self, provider: str, matched: tuple[str, ...]) -> tuple[str, ...]:
        queued: list[str] = []
        for ws_id in matched:
            try:
                queued.append((await self._scheduler.request(ws_id, Trigger.WEBHOOK)).workspace)
            except (QueueFull, ShuttingDown) as e:
                self._metrics.webhook(provider, "overloaded")
                raise Overloaded(str(e), matched, tuple(queued)) from e
        return tuple(queued)

    def _counted(self, receipt: Receipt) -> Receipt:
        self._metrics.webhook(receipt.provider, receipt.outcome.value)
        return receipt
