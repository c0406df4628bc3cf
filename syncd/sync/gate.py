"""The delivery gate of an automatic workspace: its change windows and its promotion, asked
before a run applies anything by itself, by the view (`blocked`), and by the poll.

The rules are pure (`syncd.core.windows`, `syncd.core.promotion`); this gathers their facts.
A promotion's facts are the store's (the upstream workspace's state, health record and runs),
which replicas share, and the git mirror's (whether the upstream's commit holds the candidate).
A person's sync is never held here: only `manual_refusal` (a window with `manual_sync: false`)
refuses one, before it is queued.

`DeliveryGate.held` remembers each workspace's last decision in this process (a bounded map,
one entry per workspace), which the scheduler reads to arm a timer for `until`, and tells the
engine's observers that want to know (`BlockObserver`: the `syncd_workspace_blocked` gauge).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from syncd.config import WorkspaceConfig
from syncd.core import promotion, windows
from syncd.core.errors import SyncdError
from syncd.core.model import Mode, Status, SyncState, automation_suspended
from syncd.core.times import rfc3339, rfc3339_or_none
from syncd.ops.logs import fields
from syncd.store import Store
from syncd.sync.resolving import GitReader, remote_for

log = logging.getLogger("syncd.engine")

Reason = Literal["window", "promotion"]
REASONS: tuple[Reason, ...] = ("window", "promotion")
UPSTREAM_RUNS = 50  # the upstream's runs looked back through for when it first applied a commit
RECHECK = 60.0  # a closed window with no opening in sight is computed again after this long
MAX_CACHED = 256  # distinct window sets whose last closed answer is kept


@dataclass(frozen=True)
class Block:
    """Why an automatic workspace applies nothing by itself now, and until when (None: no
    opening within the look-ahead, or it waits for the upstream to apply or turn Healthy)."""

    reason: Reason
    until: float | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "until": rfc3339_or_none(self.until), "detail": self.detail}


@runtime_checkable
class BlockObserver(Protocol):
    """Told of each decision of a run (metrics): `reason` None when nothing holds it back."""

    def workspace_blocked(self, ws_id: str, reason: str | None) -> None: ...


class DeliveryGate:
    def __init__(
        self, store: Callable[[], Store], git: GitReader, clock: Callable[[], float]
    ) -> None:
        self.store = store
        self.git = git
        self.clock = clock
        self.held: dict[str, Block] = {}  # this process's last decision, per workspace
        self._closed: dict[tuple[windows.Window, ...], tuple[float, windows.Gate]] = {}
        self._lock = threading.Lock()
        # The engine's observers, flattened once: a Protocol's isinstance costs microseconds,
        # and every run asks.
        self._watchers: tuple[object, list[BlockObserver]] | None = None

    # -- the decisions ------------------------------------------------------------------------

    def check(
        self, ws: WorkspaceConfig, candidate: str | None, applied: str | None
    ) -> Block | None:
        """What holds back an automatic change of `ws` to `candidate` now: a closed window
        first, then the promotion. A candidate already applied (a self-heal of outside edits)
        is not promoted again: only windows hold it."""
        now = self.clock()
        gate = self.window_gate(ws, now)
        if not gate.open:
            return Block("window", gate.until, _describe(gate.closing))
        if ws.promotion is None or candidate is None or candidate == applied:
            return None
        decision = self._promotion(ws, candidate, now)
        if decision.ok:
            return None
        return Block("promotion", decision.until, f"{ws.promotion.after}: {decision.why}")

    def view(self, ws: WorkspaceConfig, state: SyncState) -> Block | None:
        """The `blocked` of a workspace's view: an automatic workspace that is behind its branch
        (OutOfSync, not suspended or pinned, not a commit that failed for good), whose gate is
        closed now."""
        if ws.mode is not Mode.AUTOMATIC or automation_suspended(ws.mode, state):
            return None
        if state.status is not Status.OUT_OF_SYNC or not (ws.windows or ws.promotion):
            return None
        seen = state.last_seen_revision
        if seen is not None and seen == state.failed_revision:
            return None
        return self.check(ws, seen, state.last_applied_revision)

    def manual_refusal(self, ws: WorkspaceConfig) -> str | None:
        """Why a person's sync may not apply now (a closed window that says `manual_sync:
        false`), or None."""
        gate = self.window_gate(ws, self.clock())
        if gate.open or gate.manual_sync:
            return None
        opens = f"it opens at {rfc3339(gate.until)}" if gate.until else "no opening in sight"
        return (
            f"workspace {ws.id} is in a closed change window ({_describe(gate.closing)}) that "
            f"takes no manual sync (manual_sync: false); {opens}"
        )

    def window_gate(self, ws: WorkspaceConfig, now: float) -> windows.Gate:
        """The windows' answer, the last closed one reused while it holds (a window that
        never opens costs its whole look-ahead to compute)."""
        if not ws.windows:
            return windows.OPEN
        key = ws.windows
        with self._lock:
            cached = self._closed.get(key)
        if cached is not None:
            at, gate = cached
            fresh = now < gate.until if gate.until is not None else now < at + RECHECK
            if at <= now and fresh:
                return gate
        gate = windows.gate(ws.windows, now)
        if not gate.open:
            with self._lock:
                if len(self._closed) >= MAX_CACHED:
                    self._closed.clear()
                self._closed[key] = (now, gate)
        return gate

    # -- a run's decision ---------------------------------------------------------------------

    def decided(self, ws_id: str, block: Block | None, observer: object) -> None:
        """Remember a run's decision, and tell the observers that watch for it."""
        if block is None:
            self.held.pop(ws_id, None)
        else:
            self.held[ws_id] = block
            log.info(
                "sync held back",
                extra=fields(
                    workspace=ws_id,
                    reason=block.reason,
                    until=rfc3339_or_none(block.until),
                    detail=block.detail,
                ),
            )
        watchers = self._watchers
        if watchers is None or watchers[0] is not observer:
            watchers = self._watchers = (observer, _flatten(observer))
        for one in watchers[1]:
            try:
                one.workspace_blocked(ws_id, block.reason if block else None)
            except Exception:
                log.exception("observer failed", extra=fields(workspace=ws_id))

    # -- the facts ------------------------------------------------------------------------------

    def _promotion(self, ws: WorkspaceConfig, candidate: str, now: float) -> promotion.Decision:
        assert ws.promotion is not None
        after, store = ws.promotion.after, self.store()
        upstream = promotion.Upstream(
            store.state(after).last_applied_revision,
            store.health(after),
            store.runs(after, UPSTREAM_RUNS),
        )
        remote = remote_for(ws)

        def contains(upstream_commit: str, commit: str) -> bool:
            if upstream_commit == commit:
                return True
            try:
                return self.git.is_ancestor(remote, commit, upstream_commit)
            except SyncdError:
                return False  # the mirror lacks one of them (another remote): not known to

        return promotion.decide(candidate, upstream, ws.promotion.soak, now, contains)


def _describe(closing: tuple[windows.Window, ...]) -> str:
    """The windows that close changes, as a person finds them in the config."""
    shown = [f'{w.kind} "{w.schedule}" in {w.timezone}' for w in closing[:3]]
    more = f" and {len(closing) - 3} more" if len(closing) > 3 else ""
    return ", ".join(shown) + more


def _flatten(observer: object, depth: int = 0) -> list[BlockObserver]:
    """The block observers among the engine's (an `Observers` holds others, maybe nested)."""
    if isinstance(observer, BlockObserver):
        return [observer]
    inner = getattr(observer, "observers", None)
    if depth > 4 or not isinstance(inner, tuple):
        return []
    return [one for each in inner for one in _flatten(each, depth + 1)]
