"""A commit status for every run of a workspace that reports them (`report.commit_status`):
`pending` while it works, then what it did (see `syncd.report.render.run_status`).

An observer of the engine: it only hands reports to the `Reporter`, so a sync never waits on the
host. The replica that runs a sync is the one that reports it: one status per run, not one per
replica. A run that ends as the last one on the same commit did (a workspace healed of an
edit outside git, again and again) says nothing new, and is not reported again: a host keeps a
bounded number of statuses per commit and context.
"""

from __future__ import annotations

from collections.abc import Callable

from syncd.config import Config, WorkspaceConfig
from syncd.core.model import Plan, Run, SyncState
from syncd.report import render
from syncd.report.host import CommitStatus, Host
from syncd.report.reporter import Report, Reporter


class RunReports:
    def __init__(self, reporter: Reporter, config: Callable[[], Config]) -> None:
        self._reporter = reporter
        self._config = config
        # Each workspace's last final status: (commit, state, description); one per workspace.
        self._last: dict[str, tuple[str, str, str]] = {}

    def run_started(self, ws: WorkspaceConfig, run: Run) -> None:
        if run.revision is None or run.dry_run:
            return
        last = self._last.get(ws.id)
        if last is not None and last[0] == run.revision:
            return  # the commit has its status: a `pending` would hide it until the run ends
        self._submit(ws, run.revision, render.running(ws, run.revision, self._public_url()))

    def run_finished(
        self, ws: WorkspaceConfig, run: Run, plan: Plan | None, state: SyncState, seconds: float
    ) -> None:
        status = render.run_status(ws, run, plan, self._public_url())
        if status is None or run.revision is None:
            return
        said = (run.revision, str(status.state), status.description)
        if self._last.get(ws.id) == said:
            return
        self._last[ws.id] = said
        self._submit(ws, run.revision, status)

    def run_amended(self, ws: WorkspaceConfig, run: Run) -> None:
        """A run reported as applied, failed afterwards by a check: the commit says so."""
        self.run_finished(ws, run, None, SyncState(ws.id), 0.0)

    def _submit(self, ws: WorkspaceConfig, sha: str, status: CommitStatus) -> None:
        report = ws.report
        if report is None or not report.commit_status:
            return
        repository = report.repository

        async def send(host: Host) -> None:
            await host.set_status(repository, sha, status)

        key = (report.provider, repository, sha, status.context)
        self._reporter.submit(Report(key, report.provider, "commit_status", (ws.id,), send))

    def _public_url(self) -> str | None:
        return self._config().server.public_url
