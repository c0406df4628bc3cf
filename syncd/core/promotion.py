"""The promotion gate: may a workspace apply a commit, given what the workspace it follows did?

With `promotion: {after: staging, soak: 15m}`, a commit is applied only once `staging` has
applied it (or a descendant of it) and has stayed Healthy since, for at least the soak. The
soak counts from the later of two times: when `staging` first applied a commit holding the
candidate (in its current unbroken run of such applies), and when it last turned Healthy. A
staging that is Degraded or Suspended (a failed run, a rollback's pin) holds everything back
until it is Healthy again, and the soak starts over then.

Pure: the facts are gathered elsewhere (from the store, which replicas share, and the git
mirror: `syncd.sync.gate`); whether one commit holds another is asked through a callable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from syncd.core.model import Health, HealthRecord, Run, RunResult

# `contains(upstream_commit, candidate)`: the upstream commit is the candidate or a descendant.
Contains = Callable[[str, str], bool]


@dataclass(frozen=True)
class Upstream:
    """What the gate knows of the workspace followed: its applied commit, its health record
    (None: never assessed), and its runs, newest first (a bounded look-back)."""

    applied: str | None
    health: HealthRecord | None
    runs: Sequence[Run] = ()


@dataclass(frozen=True)
class Decision:
    """`ok`: the candidate may apply. Else `until`: when it may (the end of the soak), or None
    when that depends on what the upstream does next (apply it, turn Healthy again); `why`
    says which, for a person."""

    ok: bool
    until: float | None = None
    why: str = ""


def decide(
    candidate: str, upstream: Upstream, soak: float, now: float, contains: Contains
) -> Decision:
    """Whether `candidate` may apply at `now` (unix seconds)."""
    if upstream.applied is None or not contains(upstream.applied, candidate):
        return Decision(False, None, "not applied upstream yet")
    record = upstream.health
    if record is not None and record.health is not Health.HEALTHY:
        return Decision(False, None, f"upstream is {record.health}")
    applied_at = first_applied(candidate, upstream.runs, contains)
    healthy_since = record.since if record is not None else None
    start = max((t for t in (applied_at, healthy_since) if t is not None), default=None)
    if start is None or soak <= 0:
        return Decision(True)
    until = start + soak
    if now >= until:
        return Decision(True)
    return Decision(False, until, "soaking upstream")


def first_applied(candidate: str, runs: Sequence[Run], contains: Contains) -> float | None:
    """When the upstream first applied a commit holding `candidate`, in its latest unbroken
    series of such applies (newest first; an apply of an older commit, a rollback, breaks
    it). None when no run of the look-back applied one (pruned history)."""
    found: float | None = None
    for run in runs:
        if run.result is not RunResult.SUCCEEDED or run.dry_run or run.revision is None:
            continue  # planned or failed: the applied commit did not change
        if not contains(run.revision, candidate):
            break
        found = run.finished_at if run.finished_at is not None else run.started_at
    return found
