"""Digests of failed syncs: one e-mail per recipient, and one message per chat or webhook
target (`syncd.targets`), per `notifications.interval`. A target is one more recipient, with
its own cursor (key `target:NAME`); what is said below of recipients holds for targets too.

The queue is the runs table itself, which each sync writes atomically, so a crash loses
nothing. One meta row, `notify.state`, says how far each recipient has been told: its cursor (a
`finished_at` time) and the workspaces it was told are failing. Each tick reads the runs that
finished since the oldest cursor, and for every recipient composes one e-mail that lists, per
watched workspace, the failed runs since its cursor, or a short recovery note when a workspace
it was told is failing has succeeded again. Nothing failed and nothing recovered: no e-mail.
What is told to whom is decided in `syncd.digest`; this module reads, sends and keeps the state.

A recipient's cursor moves only once the server has accepted its e-mail, so an SMTP outage
delays digests but loses none, and in a partly failed tick the recipients already served get no
duplicate. The state is kept in one row so that cursor and failing set change together. Delivery
is at least once: a crash between the server's "250" and the state write sends that e-mail again.
The schedule survives restarts too: the first tick after a start comes one interval after the
last one, so a crash-looping daemon still sends at most one digest per interval.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import threading
import time
from collections.abc import Callable, Collection, Sequence
from email.message import EmailMessage

from syncd.config import Config, SmtpConfig, TargetConfig
from syncd.core import retry
from syncd.core.model import Run
from syncd.core.retry import Policy
from syncd.notify import chat
from syncd.notify.chat import TargetFailed
from syncd.notify.digest import (
    TARGET_PREFIX,
    Addressee,
    Digest,
    Report,
    State,
    compose,
    counts,
    plan,
    target_watchers,
    text,
    watchers,
)
from syncd.notify.smtp import SmtpSession, describe_error, permanent, refused_for_good, server_wide
from syncd.ops.logs import fields
from syncd.ops.metrics import Metrics
from syncd.store import Store

log = logging.getLogger("syncd.notify")

STATE_KEY = "notify.state"
# Runs are read only up to `now - SETTLE`: a run's finished_at is taken just before the
# transaction that records it commits, which may wait on the SQLite lock for seconds.
SETTLE = 15.0
PAGE = 10_000  # runs per read
MAX_SCAN = 100_000  # runs per tick; a longer backlog is worked off over several ticks


# --- The digester ------------------------------------------------------------------------------


class _Halted(Exception):
    """The daemon is stopping: no more retries or e-mails in this tick."""


class Digester:
    """Sends the digests: `tick` once (blocking), or `run` the loop until `stop` is set."""

    def __init__(
        self,
        store: Store,
        config: Callable[[], Config],
        metrics: Metrics | None,
        clock: Callable[[], float] = time.time,
        *,
        attempt_policy: Policy = retry.SMTP_ATTEMPT,
        target_policy: Policy = retry.TARGET_ATTEMPT,
    ) -> None:
        self.store = store
        self.config = config
        self.metrics = metrics
        self.clock = clock
        self.attempt_policy = attempt_policy
        self.target_policy = target_policy
        self._halt = threading.Event()
        self._lock = threading.Lock()

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every `notifications.interval`, keeping the schedule across restarts."""
        relay = asyncio.create_task(self._relay(stop))
        try:
            try:
                delay = await asyncio.to_thread(self._first_delay)
            except Exception as e:  # a store error: the ticks will try again
                log.error("digest state unreadable", extra=fields(error=str(e)))
                delay = self.config().notifications.interval
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                    break
                except TimeoutError:
                    pass
                started = time.monotonic()
                try:
                    await asyncio.to_thread(self.tick)
                except Exception as e:  # a store error: try again at the next tick
                    log.error("digest tick failed", extra=fields(error=str(e)))
                interval = self.config().notifications.interval
                delay = max(0.0, interval - (time.monotonic() - started))
        finally:
            self._halt.set()  # a tick still in its thread stops before its next e-mail
            relay.cancel()

    async def _relay(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._halt.set()

    def _first_delay(self) -> float:
        interval = self.config().notifications.interval
        with self._lock:
            state = self._load(self.clock())
        if state.ticked_at is None:
            return interval
        return min(interval, max(0.0, state.ticked_at + interval - self.clock()))

    def tick(self) -> int:
        """Send the digests due now; return how many e-mails and target messages went out."""
        with self._lock:
            return self._tick()

    def _tick(self) -> int:
        config = self.config()
        smtp = config.notifications.smtp
        now = self.clock()
        until = now - min(SETTLE, config.notifications.interval / 2)
        state = self._load(now)
        # No SMTP, no addresses (the config refuses one without the other). Targets' keys
        # (`target:NAME`) cannot be addresses, so both kinds share the state.
        watched = {
            **(watchers(config.workspaces) if smtp else {}),
            **target_watchers(config.notifications.targets, config.workspaces),
        }
        state.follow(watched)
        cursors = [c.at for c in state.cursors.values()]
        if not cursors or min(cursors) >= until:
            state.watermark, state.ticked_at = max(state.watermark, until), now
            self._save(state)
            return 0
        # 1. read the runs that count, since the oldest cursor
        ids = {ws.id for pairs in watched.values() for _, ws in pairs}
        runs, until = self._read(min(cursors), until, ids)
        # 2. what each recipient is told; the recipients with nothing to tell move on now
        todo = plan(watched, state.cursors, runs, until)
        state.cursors.update(todo.told)
        # 3. send, moving each recipient's cursor as soon as the server has its message
        mail, posts = _split(todo.digests)
        sent = self._mail(smtp, mail, state, now) if smtp is not None else 0
        sent += self._post_all(config.notifications.targets, posts, state, now)
        state.watermark, state.ticked_at = max(state.watermark, until), now
        self._save(state)
        return sent

    def _mail(self, smtp: SmtpConfig, digests: Sequence[Digest], state: State, now: float) -> int:
        """The e-mails, over one SMTP session; return how many the server accepted."""
        sent, session = 0, SmtpSession(smtp)
        try:
            for done, digest in enumerate(digests):
                if self._halt.is_set():
                    break  # stopping: the rest stays pending and goes out after the restart
                to = digest.to
                msg = compose(digest.reports, from_addr=smtp.from_addr, to=to, now=now)
                try:
                    accepted, given_up, error = self._deliver(session, msg, to)
                except _Halted:
                    break
                for addressee in digest.addressees:
                    if addressee.address in accepted or addressee.address in given_up:
                        state.cursors[addressee.key] = addressee.after
                self._save(state)
                sent += bool(accepted)
                self._count("error" if error else "ok", "email")
                if error is None:
                    log.info(
                        "digest sent",
                        extra=fields(to=",".join(to), workspaces=len(digest.reports)),
                    )
                    continue
                log.error(
                    "digest not sent", extra=fields(to=",".join(to), error=describe_error(error))
                )
                if given_up:
                    log.error(
                        "digest recipients refused for good", extra=fields(to=",".join(given_up))
                    )
                if server_wide(error):
                    # The other e-mails would fail alike: count them, leave them pending.
                    for _ in range(len(digests) - done - 1):
                        self._count("error", "email")
                    break
        finally:
            session.close()
        return sent

    def _post_all(
        self,
        configured: Sequence[TargetConfig],
        posts: Sequence[tuple[Addressee, tuple[Report, ...]]],
        state: State,
        now: float,
    ) -> int:
        """One message per chat or webhook target; a target that fails keeps its cursor, so
        its message goes out at a later tick. Return how many were taken."""
        by_name = {t.name: t for t in configured}
        sent = 0
        for addressee, reports in posts:
            if self._halt.is_set():
                break
            target = by_name[addressee.address]
            subject, body = text(reports, now)
            failing = any(r.failing for r in reports)
            try:
                self._post(target, subject, body, failing)
            except _Halted:
                break
            except TargetFailed as e:
                self._count("error", "target")
                log.error(
                    "notification not sent",
                    extra=fields(target=target.name, workspaces=len(reports), error=str(e)),
                )
                continue
            state.cursors[addressee.key] = addressee.after
            self._save(state)
            sent += 1
            self._count("ok", "target")
            log.info("notification sent", extra=fields(target=target.name, workspaces=len(reports)))
        return sent

    def _post(self, target: TargetConfig, subject: str, body: str, failing: bool) -> None:
        """Post with retries under the target policy; raises TargetFailed."""

        def on_retry(attempt: int, error: BaseException | None) -> None:
            log.warning(
                "notification retry",
                extra=fields(target=target.name, attempt=attempt, error=str(error)),
            )

        def once() -> None:
            try:
                chat.send(target.url.reveal(), subject, body, failure=failing)
            except TargetFailed:
                raise
            except Exception as e:  # its message may quote the URL: only its type is kept
                raise TargetFailed(f"{type(e).__name__} while sending") from None

        attempts = retry.attempts(
            self.target_policy, lambda e: isinstance(e, TargetFailed), on_retry, sleep=self._sleep
        )
        attempts(once)

    def _deliver(
        self, session: SmtpSession, msg: EmailMessage, to: Sequence[str]
    ) -> tuple[set[str], set[str], BaseException | None]:
        """Send with retries. Return who has the e-mail, who was refused for good (5xx:
        asking again each interval would not help, and their backlog would grow for ever),
        and the error, if not everyone has it."""

        def on_retry(attempt: int, error: BaseException | None) -> None:
            described = None if error is None else describe_error(error)
            log.warning(
                "digest retry", extra=fields(to=",".join(to), attempt=attempt, error=described)
            )

        attempts = retry.attempts(
            self.attempt_policy, lambda e: not permanent(e), on_retry, sleep=self._sleep
        )
        try:
            refused = attempts(session.send, msg, to)
        except smtplib.SMTPRecipientsRefused as e:
            return set(), refused_for_good(e.recipients), e
        except OSError as e:  # smtplib's errors are OSErrors, as are socket and TLS errors
            return set(), set(), e
        if not refused:
            return set(to), set(), None
        accepted = {a for a in to if a not in refused}
        return accepted, refused_for_good(refused), smtplib.SMTPRecipientsRefused(refused)

    def _sleep(self, seconds: float) -> None:
        if self._halt.wait(seconds):
            raise _Halted()

    def _read(
        self, since: float, until: float, ids: Collection[str]
    ) -> tuple[dict[str, list[Run]], float]:
        """Counted runs per workspace, oldest first, and how far the reading got."""
        out: dict[str, list[Run]] = {}
        scanned = 0
        while True:
            page = self.store.runs_finished_since(since, until, PAGE)
            full = len(page) == PAGE
            if full and page[0].finished_at != page[-1].finished_at:
                # Leave the last instant's runs to the next page: it may hold more of them.
                last = page[-1].finished_at
                page = [r for r in page if r.finished_at != last]
            for run in page:
                if counts(run) and run.workspace in ids:
                    out.setdefault(run.workspace, []).append(run)
            scanned += len(page)
            if not full:
                return out, until
            since = page[-1].finished_at or since
            if scanned >= MAX_SCAN:
                return out, since

    def _load(self, now: float) -> State:
        text = self.store.get_meta(STATE_KEY)
        if text is not None:
            try:
                return State.load(text)
            except (ValueError, KeyError, TypeError) as e:
                log.error("digest state unreadable, starting afresh", extra=fields(error=str(e)))
        # First start: look one interval back, and write it down at once, so that failures
        # between now and a crash before the first tick are still sent after the restart.
        state = State(watermark=now - self.config().notifications.interval)
        self._save(state)
        return state

    def _save(self, state: State) -> None:
        self.store.set_meta(STATE_KEY, state.dump())

    def _count(self, result: str, channel: str) -> None:
        if self.metrics is not None:
            self.metrics.notifications.labels(result, channel).inc()


def _split(
    digests: Sequence[Digest],
) -> tuple[list[Digest], list[tuple[Addressee, tuple[Report, ...]]]]:
    """The e-mails (recipients told the same share one), and one message per target."""
    mail: list[Digest] = []
    posts: list[tuple[Addressee, tuple[Report, ...]]] = []
    for digest in digests:
        addresses = tuple(a for a in digest.addressees if not a.key.startswith(TARGET_PREFIX))
        if addresses:
            mail.append(Digest(digest.reports, addresses))
        posts += [(a, digest.reports) for a in digest.addressees if a not in addresses]
    return mail, posts
