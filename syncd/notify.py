"""E-mail digests of failed syncs: one per recipient per `notifications.interval`.

The queue is the runs table itself, which each sync writes atomically, so a crash loses
nothing. One meta row, `notify.state`, says how far each recipient has been told: its cursor (a
`finished_at` time) and the workspaces it was told are failing. Each tick reads the runs that
finished since the oldest cursor, and for every recipient composes one e-mail that lists, per
watched workspace, the failed runs since its cursor, or a short recovery note when a workspace
it was told is failing has succeeded again. Nothing failed and nothing recovered: no e-mail.

A recipient's cursor moves only once the server has accepted its e-mail, so an SMTP outage
delays digests but loses none, and in a partly failed tick the recipients already served get no
duplicate. The state is kept in one row so that cursor and failing set change together. Delivery
is at least once: a crash between the server's "250" and the state write sends that e-mail again.
The schedule survives restarts too: the first tick after a start comes one interval after the
last one, so a crash-looping daemon still sends at most one digest per interval.
"""

from __future__ import annotations

import asyncio
import json
import logging
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import tenacity

from syncd.config import Config, SmtpConfig, WorkspaceConfig
from syncd.logs import scrub
from syncd.metrics import Metrics
from syncd.model import Run, RunResult
from syncd.store import Store

log = logging.getLogger("syncd.notify")

STATE_KEY = "notify.state"
MAX_FAILURES = 50  # per workspace in one digest; the rest are counted ("and N more")
MAX_ERROR_CHARS = 2000  # of one run's error in a digest
MAX_SUBJECT_NAMES = 5
# Runs are read only up to `now - SETTLE`: a run's finished_at is taken just before the
# transaction that records it commits, which may wait on the SQLite lock for seconds.
SETTLE = 15.0
PAGE = 10_000  # runs per read
MAX_SCAN = 100_000  # runs per tick; a longer backlog is worked off over several ticks


# --- The pure core: what a recipient is told ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Failure:
    finished_at: float
    trigger: str
    revision: str | None
    error: str


@dataclass(frozen=True, slots=True)
class Report:
    """One workspace in a digest: its failed runs, and whether it has recovered since."""

    workspace: str  # id
    name: str
    failures: tuple[Failure, ...] = ()  # newest first, at most MAX_FAILURES
    more: int = 0  # older failures left out
    recovered_at: float | None = None  # the succeeded run that ended the failures
    recovered_revision: str | None = None

    @property
    def failing(self) -> bool:
        return self.recovered_at is None


def summarize(
    workspaces: Sequence[WorkspaceConfig],
    runs_by_workspace: dict[str, list[Run]],
    since: float,
    failing: Collection[str],
) -> tuple[tuple[Report, ...], frozenset[str]]:
    """What a recipient watching `workspaces` is told about the runs after `since`, and which
    of them it then knows to be failing. `runs_by_workspace` holds counted runs, oldest first.

    A workspace is failing when its latest run failed; with no run it stays as it was.
    """
    reports: list[Report] = []
    now_failing: set[str] = set()
    for ws in workspaces:
        runs = [r for r in runs_by_workspace.get(ws.id, ()) if (r.finished_at or 0) > since]
        failed = [r for r in runs if r.result is RunResult.FAILED]
        latest = runs[-1] if runs else None
        was_failing = ws.id in failing
        is_failing = was_failing if latest is None else latest.result is RunResult.FAILED
        if is_failing:
            now_failing.add(ws.id)
        shown = [_failure(r) for r in reversed(failed[-MAX_FAILURES:])]
        more = max(0, len(failed) - MAX_FAILURES)
        if failed and is_failing:
            reports.append(Report(ws.id, ws.name, tuple(shown), more))
        elif latest is not None and not is_failing and (failed or was_failing):
            recovered = Report(
                ws.id, ws.name, tuple(shown), more, latest.finished_at, latest.revision
            )
            reports.append(recovered)
    # The failing first, then the recovered, each in config order.
    reports.sort(key=lambda r: not r.failing)
    return tuple(reports), frozenset(now_failing)


def _failure(run: Run) -> Failure:
    return Failure(run.finished_at or 0.0, str(run.trigger), run.revision, run.error or "")


def compose(
    reports: Sequence[Report], *, from_addr: str, to: Sequence[str], now: float
) -> EmailMessage:
    """The digest e-mail: plain text, one section per workspace; never a secret."""
    failing = [r for r in reports if r.failing]
    recovered = [r for r in reports if not r.failing]
    parts = []
    if failing:
        parts.append(f"{_count(len(failing), 'workspace')} failing ({_names(failing)})")
    if recovered:
        noun = "" if failing else f" {_plural(len(recovered), 'workspace')}"
        parts.append(f"{len(recovered)}{noun} recovered ({_names(recovered)})")
    lines = [f"syncd digest of {_iso(now)}: failed and recovered syncs since the last one.", ""]
    for report in reports:
        lines += _section(report)
    msg = EmailMessage()
    msg["Subject"] = "syncd: " + ", ".join(parts)
    msg["From"] = from_addr
    msg["To"] = ", ".join(to)
    msg["Date"] = format_datetime(datetime.fromtimestamp(now, UTC))
    msg["Message-ID"] = make_msgid("syncd", domain=from_addr.rpartition("@")[2] or None)
    msg.set_content(scrub("\n".join(lines)) + "\n")
    return msg


def _section(report: Report) -> list[str]:
    title = f"{report.name} (workspace {report.workspace})"
    lines = []
    if report.failing:
        lines.append(
            f"{title}: failing, {_count(len(report.failures) + report.more, 'failed run')}"
        )
    else:
        assert report.recovered_at is not None
        revision = _short(report.recovered_revision)
        lines.append(f"{title}: recovered, succeeded at {_iso(report.recovered_at)} ({revision})")
        if report.failures:
            total = len(report.failures) + report.more
            lines.append(f"  before that: {_count(total, 'failed run')}")
    for failure in report.failures:
        lines.append(
            f"  - {_iso(failure.finished_at)}  trigger={failure.trigger}"
            f"  revision={_short(failure.revision)}"
        )
        error = scrub(failure.error)
        if len(error) > MAX_ERROR_CHARS:
            error = error[:MAX_ERROR_CHARS] + " [...]"
        for i, line in enumerate(error.splitlines() or [""]):
            lines.append(("    error: " if i == 0 else "           ") + line)
    if report.more:
        lines.append(f"  ... and {report.more} more")
    lines.append("")
    return lines


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _short(revision: str | None) -> str:
    return revision[:12] if revision else "(no revision)"


def _plural(n: int, noun: str) -> str:
    return noun if n == 1 else noun + "s"


def _count(n: int, noun: str) -> str:
    return f"{n} {_plural(n, noun)}"


def _names(reports: Sequence[Report]) -> str:
    names = [r.name for r in reports[:MAX_SUBJECT_NAMES]]
    if len(reports) > MAX_SUBJECT_NAMES:
        names.append(f"+{len(reports) - MAX_SUBJECT_NAMES}")
    return ", ".join(names)


# --- Progress kept in the store ----------------------------------------------------------------


@dataclass
class _Recipient:
    cursor: float  # told of every run that finished up to here
    failing: frozenset[str] = frozenset()


@dataclass
class _State:
    watermark: float  # where the last tick read up to; a new recipient starts here
    ticked_at: float | None = None
    recipients: dict[str, _Recipient] = field(default_factory=dict)

    def dump(self) -> str:
        return json.dumps(
            {
                "version": 1,
                "watermark": self.watermark,
                "ticked_at": self.ticked_at,
                "recipients": {
                    k: {"cursor": r.cursor, "failing": sorted(r.failing)}
                    for k, r in sorted(self.recipients.items())
                },
            }
        )

    @classmethod
    def load(cls, text: str) -> _State:
        doc = json.loads(text)
        return cls(
            watermark=float(doc["watermark"]),
            ticked_at=None if doc.get("ticked_at") is None else float(doc["ticked_at"]),
            recipients={
                k: _Recipient(float(r["cursor"]), frozenset(r["failing"]))
                for k, r in doc.get("recipients", {}).items()
            },
        )


# --- Sending -----------------------------------------------------------------------------------


class _Halted(Exception):
    """The daemon is stopping: no more retries or e-mails in this tick."""


def _permanent(error: BaseException) -> bool:
    """Errors that the same attempt a few seconds later would meet again."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in error.recipients.values())
    if isinstance(error, smtplib.SMTPResponseException):
        return error.smtp_code >= 500
    return isinstance(error, smtplib.SMTPNotSupportedError | ssl.SSLCertVerificationError)


def _refused_for_good(refused: dict[str, tuple[int, bytes]]) -> set[str]:
    return {address for address, (code, _) in refused.items() if code >= 500}


def _server_wide(error: BaseException) -> bool:
    """Errors that every other e-mail of this tick would meet too (server down, bad login)."""
    return not isinstance(error, smtplib.SMTPRecipientsRefused | smtplib.SMTPDataError)


class _Session:
    """One SMTP connection for a tick's e-mails, opened on first use and after an error."""

    def __init__(self, smtp: SmtpConfig) -> None:
        self.smtp = smtp
        self._client: smtplib.SMTP | None = None

    def send(self, msg: EmailMessage, to: Sequence[str]) -> dict[str, tuple[int, bytes]]:
        """Send; return the recipients the server refused while accepting others."""
        try:
            client = self._client or self._connect()
            self._client = client
            refused = client.send_message(msg, from_addr=self.smtp.from_addr, to_addrs=list(to))
        except BaseException:
            self.close()
            raise
        return dict(refused)

    def _connect(self) -> smtplib.SMTP:
        s = self.smtp
        client: smtplib.SMTP
        if s.tls == "tls":
            context = ssl.create_default_context()
            client = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
        else:
            client = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        try:
            if s.tls == "starttls":
                client.starttls(context=ssl.create_default_context())
            if s.username and s.password:
                client.login(s.username, s.password.reveal())
        except BaseException:
            client.close()
            raise
        return client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()


# --- The digester ------------------------------------------------------------------------------


class Digester:
    """Sends the digests: `tick` once (blocking), or `run` the loop until `stop` is set."""

    def __init__(
        self,
        store: Store,
        config: Callable[[], Config],
        metrics: Metrics | None,
        clock: Callable[[], float] = time.time,
        *,
        attempts: int = 4,
        max_wait: float = 30.0,
    ) -> None:
        self.store = store
        self.config = config
        self.metrics = metrics
        self.clock = clock
        self.attempts = max(1, attempts)
        self.max_wait = max_wait
        self._halt = threading.Event()
        self._lock = threading.Lock()

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every `notifications.interval`, keeping the schedule across restarts."""
        relay = asyncio.create_task(self._relay(stop))
        try:
            try:
                delay = await asyncio.to_thread(self._first_delay)
            except Exception as e:  # a store error: the ticks will try again
                log.error("digest state unreadable error=%s", e)
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
                    log.error("digest tick failed error=%s", e)
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
        """Send the digests due now; return how many e-mails the server accepted."""
        with self._lock:
            return self._tick()

    def _tick(self) -> int:
        config = self.config()
        smtp = config.notifications.smtp
        now = self.clock()
        until = now - min(SETTLE, config.notifications.interval / 2)
        state = self._load(now)
        # No SMTP, no addresses (the config refuses one without the other).
        watchers = _watchers(config.workspaces) if smtp else {}
        # Recipients no longer configured are forgotten; new ones start at the watermark.
        state.recipients = {
            key: state.recipients.get(key) or _Recipient(state.watermark) for key in watchers
        }
        cursors = [r.cursor for r in state.recipients.values()]
        if smtp is None or not cursors or min(cursors) >= until:
            state.watermark, state.ticked_at = max(state.watermark, until), now
            self._save(state)
            return 0
        # 1. read the runs that count, since the oldest cursor
        ids = {ws.id for watched in watchers.values() for _, ws in watched}
        runs, until = self._read(min(cursors), until, ids)
        # 2. what each recipient is told; recipients told the same share one e-mail
        groups: dict[tuple[Report, ...], list[str]] = {}
        after: dict[str, _Recipient] = {}
        for key, watched in watchers.items():
            recipient = state.recipients[key]
            if recipient.cursor >= until:
                continue
            workspaces = [ws for _, ws in watched]
            reports, failing = summarize(workspaces, runs, recipient.cursor, recipient.failing)
            after[key] = _Recipient(until, failing)
            if reports:
                groups.setdefault(reports, []).append(key)
            else:
                state.recipients[key] = after[key]
        # 3. send, moving each recipient's cursor as soon as the server has its e-mail
        sent, session = 0, _Session(smtp)
        try:
            for done, (reports, keys) in enumerate(groups.items()):
                if self._halt.is_set():
                    break  # stopping: the rest stays pending and goes out after the restart
                to = [watchers[k][0][0] for k in keys]
                msg = compose(reports, from_addr=smtp.from_addr, to=to, now=now)
                try:
                    accepted, given_up, error = self._deliver(session, msg, to)
                except _Halted:
                    break
                for key, address in zip(keys, to, strict=True):
                    if address in accepted or address in given_up:
                        state.recipients[key] = after[key]
                self._save(state)
                sent += bool(accepted)
                self._count("error" if error else "ok")
                if error is None:
                    log.info("digest sent to=%s workspaces=%d", ",".join(to), len(reports))
                    continue
                log.error("digest not sent to=%s error=%s", ",".join(to), _describe(error))
                if given_up:
                    log.error("digest recipients refused for good to=%s", ",".join(given_up))
                if _server_wide(error):
                    # The other e-mails would fail alike: count them, leave them pending.
                    for _ in range(len(groups) - done - 1):
                        self._count("error")
                    break
        finally:
            session.close()
        state.watermark, state.ticked_at = max(state.watermark, until), now
        self._save(state)
        return sent

    def _deliver(
        self, session: _Session, msg: EmailMessage, to: Sequence[str]
    ) -> tuple[set[str], set[str], BaseException | None]:
        """Send with retries. Return who has the e-mail, who was refused for good (5xx:
        asking again each interval would not help, and their backlog would grow for ever),
        and the error, if not everyone has it."""
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=tenacity.wait_exponential_jitter(
                multiplier=min(1.0, self.max_wait),
                max=self.max_wait,
                jitter=min(1.0, self.max_wait),
            ),
            retry=tenacity.retry_if_exception(lambda e: not _permanent(e)),
            sleep=self._sleep,
            before_sleep=lambda state: log.warning(
                "digest retry to=%s attempt=%d error=%s",
                ",".join(to),
                state.attempt_number,
                _describe(state.outcome.exception()) if state.outcome else None,
            ),
            reraise=True,
        )
        try:
            refused = retrying(session.send, msg, to)
        except smtplib.SMTPRecipientsRefused as e:
            return set(), _refused_for_good(e.recipients), e
        except OSError as e:  # smtplib's errors are OSErrors, as are socket and TLS errors
            return set(), set(), e
        if not refused:
            return set(to), set(), None
        accepted = {a for a in to if a not in refused}
        return accepted, _refused_for_good(refused), smtplib.SMTPRecipientsRefused(refused)

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
                if _counts(run) and run.workspace in ids:
                    out.setdefault(run.workspace, []).append(run)
            scanned += len(page)
            if not full:
                return out, until
            since = page[-1].finished_at or since
            if scanned >= MAX_SCAN:
                return out, since

    def _load(self, now: float) -> _State:
        text = self.store.get_meta(STATE_KEY)
        if text is not None:
            try:
                return _State.load(text)
            except (ValueError, KeyError, TypeError) as e:
                log.error("digest state unreadable, starting afresh error=%s", e)
        # First start: look one interval back, and write it down at once, so that failures
        # between now and a crash before the first tick are still sent after the restart.
        state = _State(watermark=now - self.config().notifications.interval)
        self._save(state)
        return state

    def _save(self, state: _State) -> None:
        self.store.set_meta(STATE_KEY, state.dump())

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.notifications.labels(result).inc()


def _counts(run: Run) -> bool:
    """Dry runs and planned runs are not news."""
    return not run.dry_run and run.result in (RunResult.FAILED, RunResult.SUCCEEDED)


def _watchers(
    workspaces: Iterable[WorkspaceConfig],
) -> dict[str, list[tuple[str, WorkspaceConfig]]]:
    """Recipient (lower-cased address) -> [(address as written, workspace)], in config order."""
    out: dict[str, list[tuple[str, WorkspaceConfig]]] = {}
    for ws in workspaces:
        for address in dict.fromkeys(ws.notify):
            watched = out.setdefault(address.lower(), [])
            if all(w.id != ws.id for _, w in watched):
                watched.append((address, ws))
    return out


def _describe(error: Any) -> str:
    return scrub(f"{type(error).__name__}: {error}").replace("\n", " ")
