"""Local mode: the commands read the config and the store of this host, and sync in-process.

The config is read with lazy secrets: a command reveals only the secrets it uses (a sync, the
git password of its workspace), so `status` runs without any of the daemon's secrets.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from syncd.app import Core, build_core, coordinator_for, local_actions
from syncd.cli.backend import View
from syncd.config import Config, WorkspaceConfig, load_config
from syncd.ops.logs import register_secrets
from syncd.runs.replicas import ReplicaInfo
from syncd.service.actions import Act
from syncd.service.audit import Actor
from syncd.service.views import diff_view, preview_view, replica_view, sync_result_view
from syncd.service.waiting import POLL_SECONDS, Waiting
from syncd.sync.engine import Outcome, Progress
from syncd.sync.export import parse_export_request


def load_lazy(path: Path) -> Config:
    config = load_config(path, lazy_secrets=True)
    # A warning logged in-process (a mirror rebuilt, a source failing) is scrubbed like the
    # daemon's: the secrets this command could read are registered before any work starts.
    register_secrets(config.secret_values())
    return config


class LocalBackend:
    def __init__(self, config_path: Path, progress: Progress | None = None) -> None:
        self.config_path = config_path
        self.progress = progress
        self._core: Core | None = None

    @property
    def core(self) -> Core:
        if self._core is None:
            self._core = build_core(load_lazy(self.config_path))
        return self._core

    def _ws(self, view: View) -> WorkspaceConfig:
        return self.core.workspaces.get(view["id"])

    def _with_git(self, view: View) -> WorkspaceConfig:
        """The workspace, once its git password is known to be readable: a missing secret is
        a config problem (exit 2), not a failed run recorded in the history."""
        ws = self._ws(view)
        if ws.source.password is not None:
            ws.source.password.reveal()
        return ws

    def find(self, key: str) -> View:
        return self.core.workspaces.view(self.core.workspaces.find(key))

    def views(self, key: str | None) -> list[View]:
        service = self.core.workspaces
        chosen = [service.find(key)] if key else service.tagged(None)
        return service.views(chosen)

    def diff(self, ws: View) -> View:
        found = self._with_git(ws)
        return diff_view(found, self.core.workspaces.preview(found))

    def preview(self, ws: View, revision: str) -> View:
        found = self._with_git(ws)  # it may fetch: the git password must be readable
        return preview_view(found, self.core.workspaces.preview_revision(found, revision))

    def _act(self, action: str, ws: View) -> Act:
        return local_actions(self.core, self.progress).act(Actor.local(), action, ws["id"])

    def sync(self, ws: View, revision: str | None, dry_run: bool, wait: bool) -> View:
        found = self._with_git(ws)  # in-process, a sync always runs to its end

        async def sync() -> Outcome:
            async with self._act("sync", ws) as act:
                return await (await act.sync(revision, dry_run)).future

        return sync_result_view(found, asyncio.run(sync()))

    def steps(self, ws: View) -> list[View]:
        return [s.to_dict() for s in self.core.workspaces.steps(self._ws(ws))]

    def runs(self, ws: View, limit: int) -> list[View]:
        return [r.to_dict() for r in self.core.workspaces.runs(self._ws(ws), limit)]

    def run(self, run_id: str) -> View:
        return self.core.workspaces.run(run_id).to_dict()

    def health(self, ws: View) -> View:
        return self.core.workspaces.health(self._ws(ws))

    def suspend(self, ws: View) -> View:
        async def suspend() -> View:
            async with self._act("suspend", ws) as act:
                return await act.suspend()

        return asyncio.run(suspend())

    def resume(self, ws: View) -> View:
        found = self._with_git(ws)

        async def resume() -> Outcome:
            async with self._act("resume", ws) as act:
                return await (await act.resume()).future

        return sync_result_view(found, asyncio.run(resume()))

    def export(self, ws: View, order: View) -> View:
        self._with_git(ws)

        async def export() -> View:
            async with self._act("export", ws) as act:
                return (await act.export(parse_export_request(order))).to_dict()

        return asyncio.run(export())

    def replicas(self) -> View:
        """The replicas the store knows (heartbeats, holds), read as any replica reads them;
        this command is none of them. A SQLite store has none: one process does the work."""
        core = self.core
        coordinator = coordinator_for(core.config, core.store)
        if coordinator is None:
            return {"shared": False, "replicas": [], "store": core.config.store.where}

        async def read() -> list[ReplicaInfo]:
            try:
                return await coordinator.replicas()
            finally:
                await coordinator.stop()

        found = asyncio.run(read())
        return {"shared": True, "replicas": [replica_view(r) for r in found]}

    def wait_revision(self, ws: View, revision: str, seconds: float) -> View:
        """Resolved here (a HEAD asks the remote, with this host's git credentials), then
        checked against this host's store every POLL_SECONDS: the daemon applies, not us."""
        found = self._with_git(ws)
        waiting = Waiting(self.core.workspaces)
        target = waiting.target(found, revision)
        deadline = time.monotonic() + max(0.0, seconds)
        while True:
            view = waiting.check(found, target)
            left = deadline - time.monotonic()
            if view["result"] != "waiting" or left <= 0:
                return view
            time.sleep(min(POLL_SECONDS, left))

    def workspace_ids(self) -> list[str]:
        # Only the config: completion must not open the store.
        return [ws.id for ws in load_lazy(self.config_path).workspaces]

    def next_round(self) -> None:
        pass  # no deadline here: in-process work

    def close(self) -> None:
        if self._core is not None:
            self._core.close()
