"""The reporter between syncs and git hosts: a newer report of the same thing replaces a queued
one, one report per key is in flight at a time, a transient refusal is tried again and a
permanent one is not, each outcome is counted, and a workspace's last failure shows until one
of its reports gets through. Against a stateful fake host, on a real event loop."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable

import pytest

from syncd.config import ProviderConfig, Secret
from syncd.core import retry
from syncd.report import reporter as reporter_module
from syncd.report.host import CommitStatus, Host, HostError, State
from syncd.report.reporter import HostSet, Report, Reporter

PROVIDER = ProviderConfig("gh", "github", "https://api.example", Secret("t0ken-value", "env T"))
QUICK = retry.Policy(base=0.01, cap=0.02, attempts=3)


class FakeHost:
    """Statuses by (repository, sha, context), newest last; `refuse` scripts the next answers."""

    name = "gh"
    max_comment = 1000

    def __init__(self) -> None:
        self.statuses: list[tuple[str, str, CommitStatus]] = []
        self.refuse: list[HostError] = []
        self.gate: asyncio.Event | None = None
        self.closed = False

    async def set_status(self, repository: str, sha: str, status: CommitStatus) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.refuse:
            raise self.refuse.pop(0)
        self.statuses.append((repository, sha, status))

    async def pull_head(self, repository: str, number: int) -> str:
        return "0" * 40

    async def upsert_comment(self, repository: str, number: int, marker: str, body: str) -> None:
        return None

    async def aclose(self) -> None:
        self.closed = True


class Counts:
    def __init__(self) -> None:
        self.seen: Counter[tuple[str, str, str]] = Counter()

    def report(self, provider: str, kind: str, result: str) -> None:
        self.seen[(provider, kind, result)] += 1


def status(state: State, text: str = "") -> CommitStatus:
    return CommitStatus(state, "syncd/prod", text or str(state))


def report(host_status: CommitStatus, sha: str = "a" * 40, ws: str = "prod") -> Report:
    async def send(host: Host) -> None:
        await host.set_status("acme/steps", sha, host_status)

    key = ("gh", "acme/steps", sha, host_status.context)
    return Report(key, "gh", "commit_status", (ws,), send)


async def settle(reporter: Reporter, until: Callable[[], bool]) -> None:
    for _ in range(400):
        if until():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the reporter did not settle in 4 s")


def reporter_for(host: FakeHost, counts: Counts) -> Reporter:
    return Reporter(HostSet(lambda _c: host), counts, lambda: {"gh": PROVIDER}, policy=QUICK)


def test_a_newer_report_replaces_a_queued_one() -> None:
    async def main() -> None:
        host, counts = FakeHost(), Counts()
        reporter = reporter_for(host, counts)
        reporter.submit(report(status(State.PENDING)))
        reporter.submit(report(status(State.SUCCESS)))  # before the loop ran: replaces
        reporter.start()
        await settle(reporter, lambda: reporter.pending() == 0 and bool(host.statuses))
        await reporter.stop(flush=0)
        assert [s.state for _, _, s in host.statuses] == [State.SUCCESS]
        assert counts.seen == {("gh", "commit_status", "ok"): 1}
        assert host.closed

    asyncio.run(main())


def test_reports_of_one_key_arrive_in_order() -> None:
    async def main() -> None:
        host, counts = FakeHost(), Counts()
        reporter = reporter_for(host, counts)
        reporter.start()
        host.gate = asyncio.Event()
        reporter.submit(report(status(State.PENDING)))
        await asyncio.sleep(0.05)  # in flight, held at the host
        reporter.submit(report(status(State.SUCCESS)))
        await asyncio.sleep(0.05)
        host.gate.set()
        await settle(reporter, lambda: len(host.statuses) == 2)
        await reporter.stop(flush=0)
        assert [s.state for _, _, s in host.statuses] == [State.PENDING, State.SUCCESS]

    asyncio.run(main())


def test_a_transient_refusal_is_tried_again_and_the_failure_shows_until_then() -> None:
    async def main() -> None:
        host, counts = FakeHost(), Counts()
        host.refuse = [HostError("gh: HTTP 502", transient=True)]
        reporter = reporter_for(host, counts)
        reporter.start()
        reporter.submit(report(status(State.SUCCESS)))
        await settle(reporter, lambda: bool(host.statuses))
        await reporter.stop(flush=0)
        assert counts.seen[("gh", "commit_status", "retry")] == 1
        assert counts.seen[("gh", "commit_status", "ok")] == 1
        assert reporter.last_failure("prod") is None  # cleared by the success

    asyncio.run(main())


def test_a_permanent_refusal_is_not_retried_and_names_the_provider() -> None:
    async def main() -> None:
        host, counts = FakeHost(), Counts()
        host.refuse = [HostError("gh: set status: HTTP 401 Bad credentials")]
        reporter = reporter_for(host, counts)
        reporter.start()
        reporter.submit(report(status(State.SUCCESS)))
        await settle(reporter, lambda: reporter.last_failure("prod") is not None)
        await settle(reporter, lambda: reporter.pending() == 0)
        await reporter.stop(flush=0)
        failure = reporter.last_failure("prod")
        assert failure is not None and failure.provider == "gh" and "401" in failure.error
        assert "t0ken-value" not in str(failure.to_dict())
        assert counts.seen == {("gh", "commit_status", "error"): 1}
        assert host.statuses == []

    asyncio.run(main())


def test_retries_end_after_the_policys_attempts() -> None:
    async def main() -> None:
        host, counts = FakeHost(), Counts()
        host.refuse = [HostError("gh: HTTP 503", transient=True) for _ in range(5)]
        reporter = reporter_for(host, counts)
        reporter.start()
        reporter.submit(report(status(State.SUCCESS)))
        await settle(reporter, lambda: counts.seen[("gh", "commit_status", "error")] == 1)
        await reporter.stop(flush=0)
        assert counts.seen[("gh", "commit_status", "retry")] == QUICK.attempts - 1
        assert host.statuses == []

    asyncio.run(main())


def test_the_queue_is_bounded_and_drops_the_oldest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reporter_module, "MAX_PENDING", 3)
    host, counts = FakeHost(), Counts()
    reporter = Reporter(HostSet(lambda _c: host), counts, lambda: {"gh": PROVIDER}, policy=QUICK)
    for i in range(5):
        reporter.submit(report(status(State.SUCCESS), sha=f"{i:040x}"))
    assert reporter.pending() == 3
    assert counts.seen == {("gh", "commit_status", "dropped"): 2}


def test_reports_handed_in_from_a_sync_thread_are_sent() -> None:
    async def main() -> None:
        host, counts = FakeHost(), Counts()
        reporter = reporter_for(host, counts)
        reporter.start()
        await asyncio.sleep(0.01)
        thread = threading.Thread(target=reporter.submit, args=(report(status(State.SUCCESS)),))
        thread.start()
        thread.join()
        await settle(reporter, lambda: bool(host.statuses))
        await reporter.stop(flush=0)

    asyncio.run(main())


def test_a_run_failed_by_a_check_after_its_apply_turns_its_status_to_failure() -> None:
    """The commit's status said `applied`; a check then failed the run: the status that
    reaches the host is the failure (it replaces the success if that is still queued)."""
    import dataclasses
    from types import SimpleNamespace

    from syncd.config import ReportConfig
    from syncd.core.model import Mode, Run, RunResult, SyncState, Trigger
    from syncd.report.runs import RunReports
    from tests.support.fakes import workspace

    ws = dataclasses.replace(
        workspace("prod", Mode.AUTOMATIC), report=ReportConfig("gh", "acme/steps")
    )
    config = SimpleNamespace(server=SimpleNamespace(public_url=None))

    async def main() -> None:
        host, counts = FakeHost(), Counts()
        reporter = reporter_for(host, counts)
        reports = RunReports(reporter, lambda: config)  # type: ignore[arg-type,return-value]
        run = Run("r1", "prod", Trigger.WEBHOOK, "a" * 40, RunResult.SUCCEEDED, 1.0, 2.0)
        run.created = 1
        reports.run_finished(ws, run, None, SyncState("prod"), 0.1)
        failed = dataclasses.replace(run, result=RunResult.FAILED, error="check smoke: HTTP 500")
        reports.run_amended(ws, failed)
        reporter.start()
        await settle(reporter, lambda: reporter.pending() == 0 and bool(host.statuses))
        await reporter.stop(flush=0)
        final = host.statuses[-1][2]
        assert final.state is State.FAILURE and final.description == "check smoke: HTTP 500"

    asyncio.run(main())
