"""What the commands read and steer, as the JSON views of syncd/views.py: the same shapes from
this process's own store (local mode) and from a server's HTTP API (client mode), so that one
printing code serves both."""

from __future__ import annotations

from typing import Any, Protocol

View = dict[str, Any]
FINISHED = ("succeeded", "failed", "planned")


class Backend(Protocol):
    def find(self, key: str) -> View:
        """A workspace's view, by id or name; NotFound (or ApiNotFound) naming the known ones."""
        ...

    def views(self, key: str | None) -> list[View]: ...

    def diff(self, ws: View) -> View: ...

    def preview(self, ws: View, revision: str) -> View:
        """What a commit would do to the workspace now, as `GET .../preview` answers
        (preview_view); RevisionNotFound (or ApiNotFound) when no such commit is known."""
        ...

    def sync(self, ws: View, revision: str | None, dry_run: bool, wait: bool) -> View:
        """The finished run (sync_result_view), or, not waiting, `{run_id, coalesced, ...}`."""
        ...

    def steps(self, ws: View) -> list[View]: ...

    def runs(self, ws: View, limit: int) -> list[View]: ...

    def run(self, run_id: str) -> View: ...

    def health(self, ws: View) -> View: ...

    def suspend(self, ws: View) -> View: ...

    def resume(self, ws: View) -> View:
        """Resume, then the finished sync to the branch head (sync_result_view)."""
        ...

    def export(self, ws: View, order: View) -> View: ...

    def wait_revision(self, ws: View, revision: str, seconds: float) -> View:
        """One round of `wait --revision`: the revision (HEAD or a sha) resolved, then held
        until it is applied and healthy, a run of it failed, or `seconds` passed; as
        `GET .../wait` answers (`revision` is the full sha: later rounds pass it)."""
        ...

    def workspace_ids(self) -> list[str]: ...

    def replicas(self) -> View:
        """As `GET /api/v1/replicas` answers: `{shared, replicas: [replica_view...]}`."""
        ...

    def next_round(self) -> None:
        """A new round of a command that waits by design (`wait`, `status --watch`): in client
        mode, the server's answers get a whole new deadline (--deadline)."""
        ...

    def close(self) -> None: ...
