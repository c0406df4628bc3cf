"""E-mail digests against a real SMTP server (aiosmtpd) and a real SQLite store file."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from prometheus_client import CollectorRegistry

from syncd.config import Config, load_config
from syncd.core.model import Run, RunResult, SyncState, Trigger
from syncd.core.retry import Policy
from syncd.notify.digest import Report, compose, summarize
from syncd.notify.digester import STATE_KEY, Digester
from syncd.ops.logs import FIELDS, register_secrets
from syncd.ops.metrics import Metrics
from syncd.store import SqliteStore

T0 = 1_700_000_000.0
REV = "0123456789abcdef0123456789abcdef01234567"
PROD, DEV, QUIET = "12345", "678", "9"
OPS, ALICE = "ops@example.com", "alice@example.com"


# --- A real SMTP server ------------------------------------------------------------------------


@dataclass
class Mail:
    mail_from: str | None
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def body(self) -> str:
        part = self.message.get_body(("plain",))
        assert part is not None
        return str(part.get_content()).replace("\r\n", "\n")


class Inbox:
    """An aiosmtpd handler that keeps what it receives, and refuses the addresses in `refuse`."""

    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.refuse: dict[str, str] = {}
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        # bytes: the Controller keeps the default decode_data=False.
        assert isinstance(envelope.content, bytes)
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: object
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"smtp-pass-0123")

    def to(self, address: str) -> list[Mail]:
        return [m for m in self.mails if address in m.rcpt_tos]


class SmtpServer:
    def __init__(self, inbox: Inbox, **kwargs: Any) -> None:
        self.inbox, self.kwargs = inbox, kwargs
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(
            self.inbox, hostname="127.0.0.1", port=self.port, **self.kwargs
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def smtp(inbox: Inbox) -> Iterator[SmtpServer]:
    server = SmtpServer(inbox)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


# --- Config, store, runs, clock ----------------------------------------------------------------


def write_config(
    tmp: Path,
    port: int,
    notify: dict[str, list[str]] | None = None,
    interval: str = "15m",
    environ: dict[str, str] | None = None,
    **smtp: Any,
) -> Config:
    notify = {PROD: [OPS, ALICE], DEV: [OPS], QUIET: []} if notify is None else notify
    names = {PROD: "prod", DEV: "dev", QUIET: "quiet"}
    doc = {
        "state_dir": str(tmp / "state"),
        "notifications": {
            "interval": interval,
            "smtp": {"host": "127.0.0.1", "port": port, "from": "syncd@example.com", **smtp},
        },
        "workspaces": [
            {
                "id": ws_id,
                "name": names[ws_id],
                "source": {"url": f"https://git.example.com/acme/{ws_id}.git"},
                "notify": addresses,
            }
            for ws_id, addresses in notify.items()
        ],
    }
    path = tmp / "syncd.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_config(path, environ=environ or {})


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def record(
    store: SqliteStore,
    ws: str,
    result: RunResult,
    at: float,
    error: str | None = None,
    trigger: Trigger = Trigger.WEBHOOK,
    dry_run: bool = False,
) -> Run:
    if result is RunResult.FAILED and error is None:
        error = f"sync of {ws} failed"
    run = Run(uuid.uuid4().hex, ws, trigger, REV, result, at - 1, at, error=error, dry_run=dry_run)
    store.record_run(run, SyncState(ws))
    return run


def sent(metrics: Metrics, result: str) -> float:
    value = metrics.registry.get_sample_value(
        "syncd_notifications_sent_total", {"result": result, "channel": "email"}
    )
    return value or 0.0


def cursors(store: SqliteStore) -> dict[str, float]:
    state = json.loads(store.get_meta(STATE_KEY) or "{}")
    return {k: r["cursor"] for k, r in state["recipients"].items()}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "syncd.db")
    yield s
    s.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def digester(store: SqliteStore, config: Config, metrics: Metrics, clock: Clock) -> Digester:
    quick = Policy(base=0.01, cap=0.01, attempts=2)
    d = Digester(store, lambda: config, metrics, clock=clock, attempt_policy=quick)
    assert d.tick() == 0  # the first tick only starts the bookkeeping
    return d


# --- Digests -----------------------------------------------------------------------------------


def test_failures_become_one_digest_per_recipient(
    tmp_path: Path,
    store: SqliteStore,
    smtp: SmtpServer,
    inbox: Inbox,
    clock: Clock,
    metrics: Metrics,
) -> None:
    config = write_config(tmp_path, smtp.port)
    d = digester(store, config, metrics, clock)
    register_secrets(["hunter2-notify-secret"])
    record(
        store, PROD, RunResult.FAILED, T0 + 10, "bad step file a.step.json hunter2-notify-secret"
    )
    record(store, DEV, RunResult.FAILED, T0 + 20, "fetch failed: timeout", Trigger.POLL)
    record(store, DEV, RunResult.FAILED, T0 + 30, "fetch failed again", Trigger.MANUAL)
    # Not news: a dry run, a planned run before the failures, and a workspace nobody watches.
    record(store, PROD, RunResult.FAILED, T0 + 40, "dry-run-only failure", dry_run=True)
    record(store, DEV, RunResult.PLANNED, T0 + 5)
    record(store, QUIET, RunResult.FAILED, T0 + 60, "nobody watches quiet")

    clock.now += 900
    assert d.tick() == 2

    assert len(inbox.mails) == 2 and sent(metrics, "ok") == 2 and sent(metrics, "error") == 0
    [ops] = inbox.to(OPS)
    assert ops.rcpt_tos == [OPS] and ops.mail_from == "syncd@example.com"
    assert ops.message["Subject"] == "syncd: 2 workspaces failing (prod, dev)"
    assert ops.message["To"] == OPS and ops.message["From"] == "syncd@example.com"
    assert ops.message["Date"] and ops.message["Message-ID"].endswith("@example.com>")
    body = ops.body
    assert "prod (workspace 12345): failing, 1 failed run" in body
    assert "dev (workspace 678): failing, 2 failed runs" in body
    assert "2023-11-14T22:13:30Z  trigger=webhook  revision=0123456789ab\n" in body
    assert "trigger=poll" in body and "trigger=manual" in body and REV[:13] not in body
    assert "error: bad step file a.step.json ***" in body and "hunter2" not in body
    assert "fetch failed: timeout" in body and "fetch failed again" in body
    assert "dry-run-only" not in body and "quiet" not in body
    # The newest failure first.
    assert body.index("fetch failed again") < body.index("fetch failed: timeout")

    [alice] = inbox.to(ALICE)
    assert alice.rcpt_tos == [ALICE]
    assert alice.message["Subject"] == "syncd: 1 workspace failing (prod)"
    assert "prod (workspace 12345)" in alice.body and "dev" not in alice.body

    # Told once: the next interval has nothing new.
    clock.now += 900
    assert d.tick() == 0 and len(inbox.mails) == 2


def test_nothing_failed_sends_nothing(
    tmp_path: Path,
    store: SqliteStore,
    smtp: SmtpServer,
    inbox: Inbox,
    clock: Clock,
    metrics: Metrics,
) -> None:
    d = digester(store, write_config(tmp_path, smtp.port), metrics, clock)
    record(store, PROD, RunResult.SUCCEEDED, T0 + 10)
    record(store, DEV, RunResult.PLANNED, T0 + 20)
    record(store, DEV, RunResult.FAILED, T0 + 30, dry_run=True)
    for _ in range(3):
        clock.now += 900
        assert d.tick() == 0
    assert inbox.mails == [] and sent(metrics, "ok") == sent(metrics, "error") == 0


def test_a_recovery_note_once_a_failing_workspace_succeeds(
    tmp_path: Path,
    store: SqliteStore,
    smtp: SmtpServer,
    inbox: Inbox,
    clock: Clock,
    metrics: Metrics,
) -> None:
    d = digester(store, write_config(tmp_path, smtp.port), metrics, clock)
    record(store, PROD, RunResult.FAILED, T0 + 10)
    clock.now += 900
    assert d.tick() == 1  # ops and alice are told the same: they share one e-mail
    assert sorted(inbox.mails[0].rcpt_tos) == [ALICE, OPS]
    # Still failing and nothing new: nothing to say.
    clock.now += 900
    assert d.tick() == 0

    record(store, PROD, RunResult.SUCCEEDED, clock.now + 10)
    clock.now += 900
    assert d.tick() == 1
    note = inbox.mails[-1]
    assert sorted(note.rcpt_tos) == [ALICE, OPS]
    assert note.message["Subject"] == "syncd: 1 workspace recovered (prod)"
    assert "prod (workspace 12345): recovered, succeeded at " in note.body
    assert "failed run" not in note.body

    # Failed and recovered within one interval: the failure is told, as recovered.
    record(store, DEV, RunResult.FAILED, clock.now + 10, "dev broke briefly")
    record(store, DEV, RunResult.SUCCEEDED, clock.now + 20)
    clock.now += 900
    assert d.tick() == 1
    brief = inbox.mails[-1]
    assert brief.rcpt_tos == [OPS]
    assert brief.message["Subject"] == "syncd: 1 workspace recovered (dev)"
    assert "before that: 1 failed run" in brief.body and "dev broke briefly" in brief.body

    clock.now += 900
    assert d.tick() == 0 and len(inbox.mails) == 3


def test_smtp_down_is_counted_and_retried_at_the_next_tick(
    tmp_path: Path,
    store: SqliteStore,
    smtp: SmtpServer,
    inbox: Inbox,
    clock: Clock,
    metrics: Metrics,
) -> None:
    d = digester(store, write_config(tmp_path, smtp.port), metrics, clock)
    before = cursors(store)
    smtp.stop()
    record(store, PROD, RunResult.FAILED, T0 + 10, "lost while smtp was down?")
    record(store, DEV, RunResult.FAILED, T0 + 20)  # so that ops and alice get different e-mails
    clock.now += 900
    assert d.tick() == 0
    # Both e-mails counted as errors (the second is not tried against a server that is down).
    assert sent(metrics, "error") == 2 and sent(metrics, "ok") == 0
    assert cursors(store) == before

    smtp.start()
    record(store, DEV, RunResult.FAILED, clock.now + 10, "failed after the outage")
    clock.now += 900
    assert d.tick() == 2
    [ops] = inbox.to(OPS)
    assert "lost while smtp was down?" in ops.body and "failed after the outage" in ops.body
    assert sent(metrics, "ok") == 2

    clock.now += 900
    assert d.tick() == 0 and len(inbox.mails) == 2  # no duplicates


def test_a_partly_failed_tick_does_not_send_twice(
    tmp_path: Path,
    store: SqliteStore,
    smtp: SmtpServer,
    inbox: Inbox,
    clock: Clock,
    metrics: Metrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = write_config(tmp_path, smtp.port, {PROD: [ALICE], DEV: [OPS]})
    d = digester(store, config, metrics, clock)
    inbox.refuse[OPS] = "451 4.3.0 try again later"
    record(store, PROD, RunResult.FAILED, T0 + 10)
    record(store, DEV, RunResult.FAILED, T0 + 20, "dev failure for ops")
    clock.now += 900
    assert d.tick() == 1
    assert [m.rcpt_tos for m in inbox.mails] == [[ALICE]]
    assert sent(metrics, "ok") == 1 and sent(metrics, "error") == 1
    # A 4xx is tried again within the tick, under the SMTP attempt policy, and logged.
    retries = [getattr(r, FIELDS) for r in caplog.records if r.getMessage() == "digest retry"]
    [retried] = retries  # two attempts in this test's policy: one retry
    assert retried["to"] == OPS and retried["attempt"] == 1
    assert retried["error"].startswith("SMTPRecipientsRefused: ") and "451" in retried["error"]

    del inbox.refuse[OPS]
    clock.now += 900
    assert d.tick() == 1
    assert [m.rcpt_tos for m in inbox.mails] == [[ALICE], [OPS]]
    assert "dev failure for ops" in inbox.mails[-1].body

    # Refused for good (5xx): counted and logged, but not asked again every interval.
    inbox.refuse[OPS] = "550 5.1.1 no such user"
    record(store, DEV, RunResult.FAILED, clock.now + 10)
    clock.now += 900
    assert d.tick() == 0 and sent(metrics, "error") == 2
    clock.now += 900
    assert d.tick() == 0 and sent(metrics, "error") == 2


def test_pending_digests_survive_a_restart(
    tmp_path: Path, smtp: SmtpServer, inbox: Inbox, clock: Clock
) -> None:
    config = write_config(tmp_path, smtp.port)
    first = SqliteStore(tmp_path / "syncd.db")
    d = digester(first, config, Metrics(CollectorRegistry()), clock)
    smtp.stop()
    record(first, PROD, RunResult.FAILED, T0 + 10, "failed before the outage")
    clock.now += 900
    assert d.tick() == 0
    record(first, PROD, RunResult.FAILED, clock.now + 10, "failed just before the restart")
    first.close()  # the daemon stops (or dies) with both failures untold

    smtp.start()
    clock.now += 900
    second = SqliteStore(tmp_path / "syncd.db")
    try:
        d = Digester(second, lambda: config, Metrics(CollectorRegistry()), clock=clock)
        assert d.tick() == 1
        [mail] = inbox.mails
        assert sorted(mail.rcpt_tos) == [ALICE, OPS]
        assert "failed before the outage" in mail.body
        assert "failed just before the restart" in mail.body
        clock.now += 900
        assert d.tick() == 0 and len(inbox.mails) == 1
    finally:
        second.close()


# --- TLS ---------------------------------------------------------------------------------------


def test_starttls_verifies_the_certificate_and_logs_in(
    tmp_path: Path,
    store: SqliteStore,
    inbox: Inbox,
    clock: Clock,
    metrics: Metrics,
    ca: trustme.CA,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = SmtpServer(
        inbox,
        tls_context=tls_context(ca),
        require_starttls=True,
        auth_required=True,
        authenticator=inbox.authenticate,
    )
    server.start()
    try:
        config = write_config(
            tmp_path,
            server.port,
            tls="starttls",
            username="syncd",
            password_env="SYNCD_TEST_SMTP_PASSWORD",
            environ={"SYNCD_TEST_SMTP_PASSWORD": "smtp-pass-0123"},
        )
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        d = digester(store, config, metrics, clock)
        record(store, PROD, RunResult.FAILED, T0 + 10, "sent over starttls")
        # The CA is not trusted yet: the certificate is refused, nothing is sent.
        clock.now += 900
        assert d.tick() == 0 and sent(metrics, "error") >= 1 and inbox.mails == []

        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        clock.now += 900
        assert d.tick() == 1
        assert "sent over starttls" in inbox.to(OPS)[0].body
        assert (b"syncd", b"smtp-pass-0123") in inbox.logins
    finally:
        server.stop()


def test_implicit_tls(
    tmp_path: Path,
    store: SqliteStore,
    inbox: Inbox,
    clock: Clock,
    metrics: Metrics,
    ca: trustme.CA,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = SmtpServer(inbox, ssl_context=tls_context(ca))
    server.start()
    try:
        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        config = write_config(tmp_path, server.port, {PROD: [OPS]}, tls="tls")
        d = digester(store, config, metrics, clock)
        record(store, PROD, RunResult.FAILED, T0 + 10, "sent over tls")
        clock.now += 900
        assert d.tick() == 1 and "sent over tls" in inbox.mails[0].body
    finally:
        server.stop()


# --- The loop ----------------------------------------------------------------------------------


def test_the_loop_sends_a_digest_each_interval(
    tmp_path: Path, store: SqliteStore, smtp: SmtpServer, inbox: Inbox, metrics: Metrics
) -> None:
    interval = 0.5
    config = write_config(tmp_path, smtp.port, {PROD: [OPS]}, interval="500ms")

    async def wait_for_mails(n: int, since: float) -> float:
        deadline = time.monotonic() + 10 * interval
        while len(inbox.mails) < n:
            assert time.monotonic() < deadline, f"no digest {n} within {10 * interval}s"
            await asyncio.sleep(0.02)
        return time.monotonic() - since

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(Digester(store, lambda: config, metrics).run(stop))
        await asyncio.sleep(0.05)
        start = time.monotonic()
        record(store, PROD, RunResult.FAILED, time.time(), "first failure")
        assert await wait_for_mails(1, start) < 3 * interval
        start = time.monotonic()
        record(store, PROD, RunResult.FAILED, time.time(), "second failure")
        assert await wait_for_mails(2, start) < 3 * interval
        stop.set()
        await asyncio.wait_for(task, timeout=2)

    asyncio.run(main())
    first, second = inbox.mails
    assert "first failure" in first.body and "second failure" not in first.body
    assert "second failure" in second.body and "first failure" not in second.body
    assert sent(metrics, "ok") == 2


# --- The message -------------------------------------------------------------------------------


def test_compose_caps_each_workspace_and_the_subject(tmp_path: Path) -> None:
    notify = {ws: [OPS] for ws in (PROD, DEV, QUIET)}
    config = write_config(tmp_path, 25, notify)
    runs = {
        PROD: [
            Run(f"r{i}", PROD, Trigger.POLL, None, RunResult.FAILED, T0 + i, T0 + i, error=f"e{i}")
            for i in range(60)
        ]
    }
    reports, failing = summarize(config.workspaces, runs, T0 - 1, {DEV})
    assert failing == {PROD, DEV}  # dev had no run: it stays failing, and is not told again
    [report] = reports
    assert len(report.failures) == 50 and report.more == 10
    msg = compose(reports, from_addr="syncd@example.com", to=[OPS, ALICE], now=T0 + 100)
    body = msg.get_content()
    assert "failing, 60 failed runs" in body and "... and 10 more" in body
    assert "e59" in body and "e10" in body and "e9\n" not in body
    assert "revision=(no revision)" in body
    assert msg["To"] == f"{OPS}, {ALICE}"

    many = [Report(str(i), f"ws{i}") for i in range(7)]
    subject = compose(many, from_addr="syncd@example.com", to=[OPS], now=T0)["Subject"]
    assert subject == "syncd: 7 workspaces failing (ws0, ws1, ws2, ws3, ws4, +2)"
    mixed = [Report("1", "prod"), Report("2", "dev", recovered_at=T0, recovered_revision=REV)]
    subject = compose(mixed, from_addr="syncd@example.com", to=[OPS], now=T0)["Subject"]
    assert subject == "syncd: 1 workspace failing (prod), 1 recovered (dev)"
