"""The few series each workspace has on /metrics, kept as plain values and rendered by one
collector.

At 10,000 workspaces every series a workspace adds is 10,000 lines on each scrape, so each has
about six, as Argo CD keeps per application: its status and its health (one series each, the
current value as a label set to 1, as `argocd_app_info` does), its drift, when it last synced
well, and its failed and succeeded runs (at 0 from the start, so that `increase()` sees the
first one). Planned runs (a manual workspace's) get their series at their first. Histograms
carry no workspace label (`Metrics.sync_duration`, by trigger and result); a workspace held
back has a `syncd_workspace_blocked` series only while it is held.

Why not `Gauge(...).labels(ws, ...)`: each label set is an object with its own lock, a changed
status would have to remove one and add another, between which a scrape sees neither, and the
client library formats every sample anew at each scrape (about 0.5 s for 10,000 workspaces).
Here one lock guards immutable rows, a scrape copies them at once (never a workspace in two
states or in none), and a row's text is made once per change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from syncd.core.model import Health, RunResult, Status

# Results whose series exist from the start (at 0): what the shipped alerts compare.
FIRST_RESULTS = (RunResult.FAILED, RunResult.SUCCEEDED)


@dataclass(frozen=True)
class Row:
    """One workspace's series."""

    status: Status = Status.UNKNOWN
    health: Health | None = None  # None until first assessed: no series
    drift: int = 0
    last_success: float | None = None  # None: never synced well, no series
    runs: tuple[tuple[str, float], ...] = field(
        default=tuple((r.value, 0.0) for r in FIRST_RESULTS)
    )
    blocked: str | None = None  # why an automatic workspace is held back, or None
    # A run has set it since it was added: what the store said before is older (`restore`).
    touched: bool = False


class WorkspaceSeries:
    """Every configured workspace's row, under one lock; `render` is the scrape's copy."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, Row] = {}
        # Removed by a reload: a run of it still in flight must not bring its series back.
        self._gone: set[str] = set()
        # Rendered lines by workspace, with the row they were made from (under `_render`).
        self._render = threading.Lock()
        self._text: dict[str, tuple[Row, tuple[str, ...]]] = {}

    def add(self, ws_id: str) -> None:
        """Idempotent: a workspace already here keeps its row."""
        with self._lock:
            self._gone.discard(ws_id)
            self._rows.setdefault(ws_id, Row())

    def forget(self, ws_id: str) -> None:
        with self._lock:
            self._rows.pop(ws_id, None)
            self._gone.add(ws_id)

    def gone(self, ws_id: str) -> bool:
        """Removed by a reload (and not added again)."""
        with self._lock:
            return ws_id in self._gone

    def known(self) -> list[str]:
        with self._lock:
            return list(self._rows)

    def restore(self, ws_id: str, status: Status, drift: int, last_success: float | None) -> None:
        """What the store says, read before this call: taken unless a run has set the row
        since (its news is newer than that read), so a reload never sets a status back."""
        with self._lock:
            row = self._rows.get(ws_id)
            if ws_id in self._gone or (row is not None and row.touched):
                return
            row = replace(row or Row(), status=status, drift=drift)
            if last_success is not None:
                row = replace(row, last_success=last_success)
            self._rows[ws_id] = row

    def set_state(self, ws_id: str, status: Status, drift: int) -> None:
        self._change(ws_id, lambda row: replace(row, status=status, drift=drift, touched=True))

    def set_health(self, ws_id: str, health: Health) -> None:
        self._change(ws_id, lambda row: replace(row, health=health))

    def set_last_success(self, ws_id: str, when: float) -> None:
        self._change(ws_id, lambda row: replace(row, last_success=when, touched=True))

    def set_blocked(self, ws_id: str, reason: str | None) -> None:
        self._change(ws_id, lambda row: replace(row, blocked=reason))

    def count_run(self, ws_id: str, result: str) -> None:
        def counted(row: Row) -> Row:
            runs = dict(row.runs)
            runs[result] = runs.get(result, 0.0) + 1
            return replace(row, runs=tuple(runs.items()), touched=True)

        self._change(ws_id, counted)

    def _change(self, ws_id: str, change: Callable[[Row], Row]) -> None:
        with self._lock:
            if ws_id not in self._gone:
                self._rows[ws_id] = change(self._rows.get(ws_id) or Row())

    def row(self, ws_id: str) -> Row | None:
        with self._lock:
            return self._rows.get(ws_id)

    def render(self) -> bytes:
        """The series in Prometheus' text format. Each workspace's lines are made once per
        change of its row and kept: a scrape of 10,000 workspaces joins strings."""
        with self._lock:
            rows = sorted(self._rows.items())
        parts: list[list[str]] = [[] for _ in FAMILIES]
        with self._render:
            old, kept_now = self._text, {}
            for ws_id, row in rows:
                kept = old.get(ws_id)
                if kept is None or kept[0] is not row:
                    kept = (row, _lines(ws_id, row))
                kept_now[ws_id] = kept
                for part, text in zip(parts, kept[1], strict=True):
                    if text:
                        part.append(text)
            self._text = kept_now  # only the workspaces there now: removed ones go
        out = []
        for (name, kind, text), lines in zip(FAMILIES, parts, strict=True):
            out.append(f"# HELP {name} {text}\n# TYPE {name} {kind}\n")
            out.extend(lines)
        return "".join(out).encode()


# Each family's name, type and help, in the order rendered (`_lines` gives one text each).
FAMILIES = (
    ("syncd_workspace_status", "gauge", "The workspace's sync status: its current one, at 1."),
    ("syncd_workspace_health", "gauge", "The workspace's health: its current one, at 1."),
    ("syncd_workspace_drift_steps", "gauge", "Steps that differ between the workspace and git."),
    (
        "syncd_workspace_last_success_timestamp_seconds",
        "gauge",
        "When the workspace last synced successfully.",
    ),
    (
        "syncd_sync_runs_total",
        "counter",
        "Sync runs, by result (failed and succeeded from 0, planned from the first).",
    ),
    (
        "syncd_workspace_blocked",
        "gauge",
        "1 while an automatic workspace's changes are held back, by why (a closed change"
        " window, a promotion not yet applied or soaked upstream); no series otherwise.",
    ),
)


def _lines(ws_id: str, row: Row) -> tuple[str, ...]:
    ws = 'workspace="' + _escape(ws_id) + '"'
    return (
        f'syncd_workspace_status{{{ws},status="{row.status.value}"}} 1\n',
        f'syncd_workspace_health{{{ws},health="{row.health.value}"}} 1\n' if row.health else "",
        f"syncd_workspace_drift_steps{{{ws}}} {row.drift}\n",
        f"syncd_workspace_last_success_timestamp_seconds{{{ws}}} {row.last_success!r}\n"
        if row.last_success is not None
        else "",
        "".join(f'syncd_sync_runs_total{{{ws},result="{r}"}} {n!r}\n' for r, n in row.runs),
        f'syncd_workspace_blocked{{{ws},reason="{row.blocked}"}} 1\n' if row.blocked else "",
    )


def _escape(value: str) -> str:
    """A label value as the text format writes it (config ids never need it; be exact)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
