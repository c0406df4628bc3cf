"""What a commit would do to a workspace if it were applied now: the plan against the live
steps, or why it would not apply (a bad step file, the wipe guard, an untrusted signature).

The same phases as a sync (verify, read and plan, guard), changing nothing and taking no
lease: a pull request's plan, `GET /preview?revision=` and `syncd diff --revision` all come from
here, so a plan reported on a pull request says what the sync of that commit would do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from syncd.config import WorkspaceConfig
from syncd.core.errors import PlanRefused, StepFileError
from syncd.core.model import Plan
from syncd.core.plan import guard_plan
from syncd.git.signatures import Unverified
from syncd.sync.reading import Reading
from syncd.sync.verifying import permanent


@dataclass(frozen=True, slots=True)
class Preview:
    """A commit's plan for one workspace. `refused` says why it would not apply (then `plan`
    is what was planned before the refusal, or None when nothing could be read)."""

    workspace: str
    revision: str
    plan: Plan | None
    refused: str | None = None
    signed_by: str | None = None

    @property
    def would_apply(self) -> bool:
        return self.refused is None

    @property
    def counts(self) -> str:
        """`+C ~U -D`, as statuses and the console say it."""
        plan = self.plan or Plan()
        return f"+{len(plan.creates)} ~{len(plan.updates)} -{len(plan.deletes)}"


Verify = Callable[[WorkspaceConfig, str], str | None]
ReadAt = Callable[[WorkspaceConfig, str], Reading]


def preview(ws: WorkspaceConfig, commit: str, verify: Verify, read_at: ReadAt) -> Preview:
    """The plan of `commit` (in the mirror) against the workspace's live steps, in the order a
    sync takes: the signature first (an untrusted commit is not even read), then the steps,
    then the guard. What the commit itself is refused for is the preview's `refused`; what
    says nothing of the commit (the store or the mirror failing, a verifier that ran out of
    time) is raised, as a sync would retry it: a pull request must not be told its commit is
    bad, nor see syncd's own troubles in its status."""
    try:
        signed_by = verify(ws, commit)
    except Unverified as e:
        if not permanent(e):
            raise
        return Preview(ws.id, commit, None, str(e))
    try:
        reading = read_at(ws, commit)
    except (StepFileError, PlanRefused) as e:  # a bad file; a folder gone: an empty result
        return Preview(ws.id, commit, None, str(e), signed_by)
    try:
        guard_plan(reading.plan, reading.live_total, ws.allow_empty, ws.max_deletes)
    except PlanRefused as e:
        return Preview(ws.id, commit, reading.plan, str(e), signed_by)
    return Preview(ws.id, commit, reading.plan, None, signed_by)
