"""The words of reports: a run's commit status, a pull request's plan status, and the Markdown
of the one comment syncd keeps on a pull request. Pure: no I/O, no clock.

Step names and refusals come from a git repository a stranger may control (a pull request's
head is anyone's commit): every such text is escaped before it reaches Markdown (as HTML
character references, which GitHub, GitLab and Gitea all decode as text), and diffs go into
fenced blocks longer than any run of backticks they hold. Nothing here reads a secret, and a
refusal's text arrives already redacted.

The comment is deterministic (the same inputs give the same text): the reporter compares it
with what it last sent to decide whether to edit.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field

from syncd.config import WorkspaceConfig
from syncd.core.model import Mode, Plan, Run, RunResult
from syncd.report.host import CommitStatus, State
from syncd.sync.previewing import Preview

MARKER = "<!-- syncd:plan -->"  # see signed_marker: the one a comment carries names its PR


def signed_marker(key: bytes, repository: str, number: int) -> str:
    """The marker of syncd's comment on one pull request: MARKER's words and an HMAC of the
    pull request under a key only syncd holds, so a comment someone else wrote with a marker
    in it (to have syncd edit theirs, or to block it) is never taken for syncd's."""
    mac = hmac.new(key, f"{repository}#{number}".encode(), hashlib.sha256).hexdigest()[:24]
    return f"<!-- syncd:plan {mac} -->"


MAX_DESCRIPTION = 140  # GitHub's limit for a status's description; the others take more
MAX_NAME = 200  # characters of a step or workspace name shown
MAX_REFUSAL_LINES = 20  # a refusal names at most 20 bad files, then "and N more"
MAX_REFUSAL_LINE = 300
SHORT_SHA = 12

# Characters Markdown (or HTML inside it) could read as syntax anywhere in a line: written as
# numeric character references. `@` and `#` too: a name must not mention a user or an issue.
_SPECIAL = set("\\`*_{}[]<>()#!|~@&\"'$:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_BACKTICKS = re.compile(r"`+")
_HEX = re.compile(r"[0-9a-fA-F]{4,64}")


def counts(created: int, updated: int, deleted: int) -> str:
    return f"+{created} ~{updated} -{deleted}"


def plan_counts(plan: Plan) -> str:
    return counts(len(plan.creates), len(plan.updates), len(plan.deletes))


def first_line(text: str | None, limit: int = MAX_DESCRIPTION) -> str:
    """The first non-empty line of `text`, at most `limit` characters (`…` ends a cut one)."""
    line = next((x.strip() for x in (text or "").splitlines() if x.strip()), "")
    line = _CONTROL.sub(" ", line)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def escape(text: str, limit: int = MAX_NAME) -> str:
    """`text` as inert Markdown on one line: control characters and line ends become spaces,
    syntax becomes character references, and it is cut to `limit` characters (before escaping,
    so a reference is never cut in half)."""
    flat = _CONTROL.sub(" ", text)
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return "".join(f"&#{ord(c)};" if c in _SPECIAL else c for c in flat)


def fenced(body: str, info: str = "") -> str:
    """`body` in a fenced code block no line of it can close: the fence is longer than any
    run of backticks inside."""
    longest = max((len(m) for m in _BACKTICKS.findall(body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{body.rstrip(chr(10))}\n{fence}\n"


def _sha(revision: str, length: int = 40) -> str:
    """A commit id as shown: hex as it is, anything else (it came from a payload) escaped."""
    cut = revision[:length]
    return cut if _HEX.fullmatch(cut) else escape(cut, length)


def _base(public_url: str | None) -> str | None:
    return public_url.rstrip("/") if public_url else None


def workspace_url(ws: WorkspaceConfig, public_url: str | None) -> str | None:
    """The workspace's console page, when `server.public_url` says where syncd is."""
    base = _base(public_url)
    return f"{base}/ui/workspaces/{urllib.parse.quote(ws.id, safe='')}" if base else None


def preview_url(ws: WorkspaceConfig, revision: str, public_url: str | None) -> str | None:
    """The console's page of a commit's plan for the workspace."""
    page = workspace_url(ws, public_url)
    return f"{page}/preview/{urllib.parse.quote(revision, safe='')}" if page else None


# -- commit statuses ------------------------------------------------------------------------


def run_context(ws: WorkspaceConfig) -> str:
    return f"syncd/{ws.name}"


def plan_context(ws: WorkspaceConfig) -> str:
    return f"syncd/plan/{ws.name}"


def running(ws: WorkspaceConfig, revision: str, public_url: str | None) -> CommitStatus:
    """The status set on `revision` while a run of it works."""
    return CommitStatus(State.PENDING, run_context(ws), "syncing", workspace_url(ws, public_url))


def run_status(
    ws: WorkspaceConfig, run: Run, plan: Plan | None, public_url: str | None
) -> CommitStatus | None:
    """The status a finished run leaves on its revision; None for a dry run (it decides
    nothing) and a run that never learned its revision (the remote could not be read)."""
    if run.dry_run or not run.revision:
        return None
    url, context = workspace_url(ws, public_url), run_context(ws)
    done = counts(run.created, run.updated, run.deleted)
    if run.result == RunResult.SUCCEEDED:
        return CommitStatus(State.SUCCESS, context, f"applied: {done}", url)
    if run.result == RunResult.FAILED:
        return CommitStatus(State.FAILURE, context, first_line(run.error) or "failed", url)
    # Planned: a manual workspace compared the commit and waits for someone to sync it; an
    # automatic one is held back (a change window, a promotion gate) or suspended.
    pending = plan_counts(plan) if plan is not None else done
    empty = plan.empty if plan is not None else not (run.created or run.updated or run.deleted)
    if empty:
        return CommitStatus(State.SUCCESS, context, "in sync: nothing to apply", url)
    if ws.mode is Mode.AUTOMATIC:
        why = "held back (a change window, a promotion gate, or suspended)"
        return CommitStatus(State.PENDING, context, f"{why}: {pending}", url)
    return CommitStatus(State.PENDING, context, f"waits for a manual sync: {pending}", url)


def plan_status(ws: WorkspaceConfig, preview: Preview, public_url: str | None) -> CommitStatus:
    """The status of a pull request head's plan for one workspace."""
    url = preview_url(ws, preview.revision, public_url)
    if not preview.would_apply:
        why = first_line(preview.refused) or "would not apply"
        return CommitStatus(State.FAILURE, plan_context(ws), why, url)
    plan = preview.plan or Plan()
    said = "no changes" if plan.empty else preview.counts
    return CommitStatus(State.SUCCESS, plan_context(ws), f"would apply: {said}", url)


# -- the pull request's comment ---------------------------------------------------------------


@dataclass
class _Section:
    """One workspace's part of the comment, in pieces that can be left out from the end."""

    head: str  # heading, verdict, the refusal: always shown (unless compact)
    compact: str  # heading and a one-line verdict: when even the heads do not fit
    rows: list[str]  # the table's rows, one change each
    diffs: list[str]  # one block per change
    tail: str  # the link to the console
    kept_rows: int = 0
    kept_diffs: int = 0
    short: bool = False
    _row_sums: list[int] = field(default_factory=list)
    _diff_sums: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.kept_rows, self.kept_diffs = len(self.rows), len(self.diffs)
        self._row_sums = _prefix_sums(self.rows)
        self._diff_sums = _prefix_sums(self.diffs)

    def _notes(self) -> tuple[str, str, str]:
        table = _TABLE_HEAD if self.kept_rows else ""
        hidden = len(self.rows) - self.kept_rows
        more = f"\n_{hidden} more changes not listed._\n" if hidden else ""
        gap = "\n" if self.kept_diffs else ""
        return table, more, gap

    def length(self) -> int:
        # As text() would be long, in constant time: the cutting loop asks after each cut.
        table, more, gap = self._notes()
        head = self.compact if self.short else self.head
        rows, diffs = self._row_sums[self.kept_rows], self._diff_sums[self.kept_diffs]
        return len(head) + len(table) + rows + len(more) + len(gap) + diffs + len(self.tail)

    def text(self) -> str:
        table, more, gap = self._notes()
        head = self.compact if self.short else self.head
        rows = "".join(self.rows[: self.kept_rows])
        diffs = "".join(self.diffs[: self.kept_diffs])
        return head + table + rows + more + gap + diffs + self.tail


_TABLE_HEAD = "\n| Action | Step |\n| --- | --- |\n"


def _prefix_sums(pieces: list[str]) -> list[int]:
    sums = [0]
    for piece in pieces:
        sums.append(sums[-1] + len(piece))
    return sums


def _verdict(preview: Preview) -> str:
    plan = preview.plan or Plan()
    if preview.would_apply:
        if plan.empty:
            return "**Would apply**: no changes; the workspace already holds this commit's steps."
        return f"**Would apply**: {preview.counts} ({plan.unchanged} unchanged)."
    return "**Would not apply**"


def _section(ws: WorkspaceConfig, preview: Preview, public_url: str | None) -> _Section:
    title = f"\n### {escape(ws.name)} ({escape(ws.id)}, {ws.mode})\n\n"
    verdict = _verdict(preview)
    signed = f"\nSigned by {escape(preview.signed_by)}.\n" if preview.signed_by else ""
    head = title + verdict + ("\n" if preview.would_apply else ":\n\n")
    compact = title + verdict
    if not preview.would_apply:
        lines = (preview.refused or "").splitlines()
        shown = [first_line(x, MAX_REFUSAL_LINE) for x in lines[:MAX_REFUSAL_LINES]]
        if len(lines) > MAX_REFUSAL_LINES:
            shown.append(f"… and {len(lines) - MAX_REFUSAL_LINES} more lines")
        head += fenced("\n".join(shown) or "(no reason given)", "text")
        compact += f": {escape(first_line(preview.refused), MAX_DESCRIPTION)}"
    head += signed
    compact += "\n"
    rows: list[str] = []
    diffs: list[str] = []
    # A refused commit shows why, not what it would change: a pull request that deletes
    # every step must not print every live step of the workspace for its author.
    changes = (preview.plan or Plan()).changes if preview.would_apply else ()
    for change in changes:
        name = escape(change.name)
        rows.append(f"| {change.action} | {name} |\n")
        summary = f"<details><summary>{change.action} <code>{name}</code></summary>\n\n"
        diffs.append(summary + fenced(change.diff, "diff") + "\n</details>\n")
    link = preview_url(ws, preview.revision, public_url)
    tail = f"\n[This plan in the syncd console]({link})\n" if link else ""
    return _Section(head, compact, rows, diffs, tail)


def _where(previews: Sequence[tuple[WorkspaceConfig, Preview]], public_url: str | None) -> str:
    """Where the whole plan is, for the note that says the comment was cut."""
    if len(previews) == 1:
        ws, preview = previews[0]
        link = preview_url(ws, preview.revision, public_url)
        if link:
            return f"[the syncd console]({link})"
        return f"`syncd diff {ws.id} --revision {_sha(preview.revision)}`"
    sha = _sha(previews[0][1].revision) if previews else "SHA"
    command = f"`syncd diff WS --revision {sha}`"
    return f"each workspace's console page, or {command}" if public_url else command


def plan_comment(
    previews: Sequence[tuple[WorkspaceConfig, Preview]],
    head: str,
    limit: int,
    public_url: str | None,
    marker: str = MARKER,
) -> str:
    """The comment on a pull request: `marker`, a heading, then each workspace's verdict, a
    table of its changes and each change's diff (none for a commit that would not apply). At
    most `limit` characters: past it, whole diffs go from the end first, then the tables' rows,
    then the refusals' details, then the last workspaces; a note says so and where the whole
    plan is."""
    top = f"{marker}\n## syncd plan for {_sha(head, SHORT_SHA)}\n"
    sections = [_section(ws, preview, public_url) for ws, preview in previews]
    if not sections:
        top += "\nNo workspace follows this pull request's base branch.\n"
    where = _where(previews, public_url)

    def note(what: str, dropped: int = 0) -> str:
        left = f"; {dropped} more workspaces not shown" if dropped else ""
        return (
            f"\n_{what} cut to fit the host's limit of {limit} characters{left}; "
            f"the full plan is at {where}._\n"
        )

    body = top + "".join(s.text() for s in sections)
    if len(body) <= limit:
        return body
    # Each stage removes one piece at a time from the end, keeping the total in step.
    total = sum(s.length() for s in sections)
    stages = (("Diffs", "kept_diffs"), ("Diffs and tables", "kept_rows"))
    for what, attribute in stages:
        fixed = len(top) + len(note(what))
        for s in reversed(sections):
            while fixed + total > limit and getattr(s, attribute) > 0:
                before = s.length()
                setattr(s, attribute, getattr(s, attribute) - 1)
                total += s.length() - before
        if fixed + total <= limit:
            return top + note(what) + "".join(s.text() for s in sections)
    what = "Diffs, tables and refusals' details"
    for s in sections:
        s.short = True
    shown = list(sections)
    while shown:
        text = note(what, len(sections) - len(shown))
        if len(top) + len(text) + sum(s.length() for s in shown) <= limit:
            return top + text + "".join(s.text() for s in shown)
        shown.pop()
    # A limit too small for even one workspace's heading: the marker and the note alone.
    return (top + note("Everything", len(sections)))[:limit]
