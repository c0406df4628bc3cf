"""What the e-mail digests say, and to whom: the pure core of notify. No I/O here.

Each recipient (an address, lower-cased) has a cursor: it has been told of every run that
finished up to there, and knows which of its workspaces are failing. Given the runs that finished
since, `plan` says which e-mails to send (recipients told the same share one), where each
recipient's cursor moves once the server has its e-mail, and which cursors move at once because
there is nothing to tell. `compose` writes one e-mail's text.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from syncd.config import TargetConfig, WorkspaceConfig
from syncd.core.model import Run, RunResult
from syncd.ops.logs import scrub

MAX_FAILURES = 50  # per workspace in one digest; the rest are counted ("and N more")
MAX_ERROR_CHARS = 2000  # of one run's error in a digest
MAX_SUBJECT_NAMES = 5

# Recipient (lower-cased address) -> [(address as written, workspace)], in config order.
Watchers = Mapping[str, Sequence[tuple[str, WorkspaceConfig]]]


# --- What a recipient is told ------------------------------------------------------------------


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
    # Ended by a planned run: a manual workspace's source reads and plans again, and its
    # changes wait for someone to sync.
    waiting: bool = False

    @property
    def failing(self) -> bool:
        return self.recovered_at is None


def summarize(
    workspaces: Sequence[WorkspaceConfig],
    runs_by_workspace: Mapping[str, Sequence[Run]],
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
            waiting = latest.result is RunResult.PLANNED
            recovered = Report(
                ws.id, ws.name, tuple(shown), more, latest.finished_at, latest.revision, waiting
            )
            reports.append(recovered)
    # The failing first, then the recovered, each in config order.
    reports.sort(key=lambda r: not r.failing)
    return tuple(reports), frozenset(now_failing)


def _failure(run: Run) -> Failure:
    return Failure(run.finished_at or 0.0, str(run.trigger), run.revision, run.error or "")


def counts(run: Run) -> bool:
    """Dry runs are not news. A planned run (a manual workspace's, which applies nothing by
    itself) is news only when it ends failures: `summarize` tells it as a recovery then, and
    says nothing of it otherwise."""
    return not run.dry_run


TARGET_PREFIX = "target:"  # a target's cursor key; an e-mail address has no such prefix


def target_watchers(
    targets: Iterable[TargetConfig], workspaces: Sequence[WorkspaceConfig]
) -> dict[str, list[tuple[str, WorkspaceConfig]]]:
    """Chat and webhook targets, keyed `target:NAME`, each with the workspaces it watches."""
    out: dict[str, list[tuple[str, WorkspaceConfig]]] = {}
    for target in targets:
        watched = [(target.name, ws) for ws in workspaces if target.watches(ws)]
        if watched:
            out[TARGET_PREFIX + target.name] = watched
    return out


def watchers(workspaces: Iterable[WorkspaceConfig]) -> dict[str, list[tuple[str, WorkspaceConfig]]]:
    """Recipient (lower-cased address) -> [(address as written, workspace)], in config order."""
    out: dict[str, list[tuple[str, WorkspaceConfig]]] = {}
    for ws in workspaces:
        for address in dict.fromkeys(ws.notify):
            watched = out.setdefault(address.lower(), [])
            if all(w.id != ws.id for _, w in watched):
                watched.append((address, ws))
    return out


# --- Cursors, and the mailing of a tick --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cursor:
    """A recipient's progress: told of every run that finished up to `at`."""

    at: float
    failing: frozenset[str] = frozenset()  # the workspaces it was told are failing


@dataclass
class State:
    """All recipients' progress, kept as one row so that cursor and failing set change together."""

    watermark: float  # where the last tick read up to; a new recipient starts here
    ticked_at: float | None = None
    cursors: dict[str, Cursor] = field(default_factory=dict)

    def follow(self, recipients: Iterable[str]) -> None:
        """Recipients no longer configured are forgotten; new ones start at the watermark."""
        self.cursors = {key: self.cursors.get(key) or Cursor(self.watermark) for key in recipients}

    def dump(self) -> str:
        return json.dumps(
            {
                "version": 1,
                "watermark": self.watermark,
                "ticked_at": self.ticked_at,
                "recipients": {
                    k: {"cursor": c.at, "failing": sorted(c.failing)}
                    for k, c in sorted(self.cursors.items())
                },
            }
        )

    @classmethod
    def load(cls, text: str) -> State:
        """Raises ValueError, KeyError or TypeError on a row it cannot read."""
        doc = json.loads(text)
        return cls(
            watermark=float(doc["watermark"]),
            ticked_at=None if doc.get("ticked_at") is None else float(doc["ticked_at"]),
            cursors={
                k: Cursor(float(r["cursor"]), frozenset(r["failing"]))
                for k, r in doc.get("recipients", {}).items()
            },
        )


@dataclass(frozen=True, slots=True)
class Addressee:
    key: str  # the recipient: its address, lower-cased
    address: str  # as written in the config
    after: Cursor  # its cursor once the server has accepted the e-mail


@dataclass(frozen=True, slots=True)
class Digest:
    """One e-mail: what it says, and to whom."""

    reports: tuple[Report, ...]
    addressees: tuple[Addressee, ...]

    @property
    def to(self) -> list[str]:
        return [a.address for a in self.addressees]


@dataclass(frozen=True, slots=True)
class Mailing:
    """A tick's mailing: the e-mails to send, and the cursors that move without one."""

    digests: tuple[Digest, ...]
    # Recipients with nothing to tell: their cursors move now, no e-mail needed.
    told: Mapping[str, Cursor]


def plan(
    watched: Watchers,
    cursors: Mapping[str, Cursor],
    runs_by_workspace: Mapping[str, Sequence[Run]],
    until: float,
) -> Mailing:
    """The e-mails for the counted runs up to `until`: one per distinct content, shared by the
    recipients told the same. A recipient already at `until` is left out."""
    groups: dict[tuple[Report, ...], list[Addressee]] = {}
    told: dict[str, Cursor] = {}
    for key, pairs in watched.items():
        cursor = cursors[key]
        if cursor.at >= until:
            continue
        workspaces = [ws for _, ws in pairs]
        reports, failing = summarize(workspaces, runs_by_workspace, cursor.at, cursor.failing)
        after = Cursor(until, failing)
        if reports:
            # The first address as written stands for the recipient.
            groups.setdefault(reports, []).append(Addressee(key, pairs[0][0], after))
        else:
            told[key] = after
    digests = tuple(Digest(reports, tuple(group)) for reports, group in groups.items())
    return Mailing(digests, told)


# --- The message -------------------------------------------------------------------------------


def compose(
    reports: Sequence[Report], *, from_addr: str, to: Sequence[str], now: float
) -> EmailMessage:
    """The digest e-mail: plain text, one section per workspace; never a secret."""
    subject, body = text(reports, now)
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = from_addr
    msg["To"] = ", ".join(to)
    msg["Date"] = format_datetime(datetime.fromtimestamp(now, UTC))
    msg["Message-ID"] = make_msgid("syncd", domain=from_addr.rpartition("@")[2] or None)
    msg.set_content(body)
    return msg


def text(reports: Sequence[Report], now: float) -> tuple[str, str]:
    """A digest's subject and plain-text body, for an e-mail or a chat or webhook target."""
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
    return scrub("syncd: " + ", ".join(parts)), scrub("\n".join(lines)) + "\n"


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
        if report.waiting:
            at = _iso(report.recovered_at)
            lines.append(
                f"{title}: recovered, planned at {at} ({revision}); its changes wait for a"
                " manual sync"
            )
        else:
            at = _iso(report.recovered_at)
            lines.append(f"{title}: recovered, succeeded at {at} ({revision})")
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
