"""Printing: every command's human output, made from the JSON views (syncd/views.py) alone, so
that local and client mode print the same."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from syncd.cli.backend import View
from syncd.core.times import parse_time


def print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False))


def progress_printer(stream: TextIO = sys.stderr) -> Callable[[str], None] | None:
    """Long work shows progress on a terminal, and stays quiet in pipes and logs."""
    if not stream.isatty():
        return None

    def say(message: str) -> None:
        stream.write(f"\r\033[K{message}")
        stream.flush()

    return say


def label(ws: View) -> str:
    return f"{ws['id']} ({ws['name']})"


def short(rev: str | None) -> str:
    return (rev or "?")[:12]


# The status table shows an error's first line up to this many characters.
ERROR_CHARS = 120


def cut(text: str, limit: int = ERROR_CHARS) -> tuple[str, bool]:
    """The first line of `text`, at most `limit` characters (the last one `…` when cut), and
    whether anything was left out."""
    lines = text.splitlines() or [""]
    first = lines[0]
    if len(first) > limit:
        return first[: limit - 1] + "…", True
    return first, len(lines) > 1


def status_table(views: list[View]) -> None:
    print(
        f"{'ID':<16} {'NAME':<16} {'MODE':<10} {'STATUS':<10} {'HEALTH':<10} "
        f"{'APPLIED':<12} LAST RUN"
    )
    shortened = False
    for v in views:
        last = v["last_run"]
        last_text = f"{last['result']} ({last['trigger']})" if last else "-"
        applied = (v["last_applied_revision"] or "-")[:12]
        if v["pinned_revision"]:
            last_text += f"; pinned at {v['pinned_revision'][:12]}"
        if blocked := v.get("blocked"):  # a daemon before change windows has no such key
            last_text += f"; held by {blocked['reason']} until {blocked['until'] or 'unknown'}"
        if v["health"]["error"]:
            error, was_cut = cut(v["health"]["error"])
            shortened = shortened or was_cut
            last_text += f"; {error}"
        print(
            f"{v['id']:<16} {v['name']:<16} {v['mode']:<10} {v['status']:<10} "
            f"{v['health']['status']:<10} {applied:<12} {last_text}"
        )
    if shortened:
        print("(errors cut short; `syncd status --json` or `syncd health WS` shows them whole)")


def diff(ws: View, plan: View) -> None:
    for action in ("create", "update", "delete"):
        for change in plan[action]:
            print(f"{change['action']} {change['name']}")
            if change.get("diff"):
                print(change["diff"])
    print(
        f"{label(ws)} at {plan['revision'][:12]}: {len(plan['create'])} to create, "
        f"{len(plan['update'])} to update, {len(plan['delete'])} to delete, "
        f"{plan['unchanged']} unchanged"
    )


def preview(ws: View, found: View) -> None:
    """`diff --revision`: the commit's plan as `diff` prints one, then whether it would apply."""
    diff(ws, found)
    if found.get("signed_by"):
        print(f"signed by {found['signed_by']}")
    if not found["would_apply"]:
        print(f"would not apply: {found['refused']}")


def plan_empty(plan: View) -> bool:
    return not (plan["create"] or plan["update"] or plan["delete"])


def sync_result(ws: View, result: View, pinned_by_request: bool) -> None:
    rev = short(result["revision"])
    if result["result"] == "failed":
        print(f"{label(ws)}: sync failed at {rev}: {result['error']}", file=sys.stderr)
        return
    verb = "would change" if result["result"] == "planned" else "synced to"
    counts = (
        f"{result['created']} created, {result['updated']} updated, {result['deleted']} deleted"
    )
    print(f"{label(ws)}: {verb} {rev}: {counts}")
    if result["result"] == "succeeded" and pinned_by_request:
        print(pin_note(ws, result))


def pin_note(ws: View, result: View) -> str:
    pinned = short(result["pinned_revision"])
    if result["suspended"]:
        return (
            f"{label(ws)}: pinned at {pinned}; automation suspended "
            f"(`syncd resume {ws['id']}` returns it to the branch head)"
        )
    return f"{label(ws)}: pinned at {pinned}"


def queued(ws: View, accepted: View) -> None:
    how = "joined the queued run" if accepted.get("coalesced") else "queued as run"
    print(f"{label(ws)}: sync {how} {accepted['run_id']}")


def resumed(ws: View, result: View) -> None:
    if result["result"] == "failed":
        print(f"{label(ws)}: resumed; the sync to the head failed: {result['error']}")
    elif result["result"] == "planned":  # a manual workspace: compared, nothing applied
        counts = f"{result['created']} to create, {result['updated']} to update, "
        counts += f"{result['deleted']} to delete"
        print(
            f"{label(ws)}: resumed; compared with the branch head {short(result['revision'])}: "
            f"{counts} (manual mode: `syncd sync {ws['id']}` applies them)"
        )
    else:
        print(f"{label(ws)}: resumed; synced to the branch head {short(result['revision'])}")


def steps(found: list[View]) -> None:
    for s in found:
        content = s["content"]
        flags = ("" if content.get("enabled", True) else " disabled") + (
            "" if content.get("valid", True) else " invalid"
        )
        print(f"{s['name']}  v{s['version']} {s['origin']}{flags}")
    print(f"{len(found)} steps")


def _when(stamp: object) -> str:
    """A time of an answer (RFC 3339; unix seconds from an older server) in local time."""
    if not stamp:
        return "-"
    try:
        seconds = parse_time(stamp)
    except ValueError:
        return str(stamp)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def runs(found: list[View]) -> None:
    print(
        f"{'RUN':<12} {'STARTED':<19} {'TRIGGER':<8} {'ACTOR':<16} {'RESULT':<9} "
        f"{'REVISION':<12} {'+':>4} {'~':>4} {'-':>4} COMMIT / ERROR"
    )
    for r in found:
        result = r["result"] + ("*" if r.get("dry_run") else "")
        # An error says more than the commit's message; else the message and its author.
        if r["error"]:
            tail = cut(r["error"], 100)[0]
        else:
            tail = cut(r.get("message") or "", 60)[0]
            if r.get("author"):
                tail += f" ({cut(r['author'], 40)[0]})"
        actor = cut(r.get("actor") or "-", 16)[0]
        print(
            f"{r['id'][:12]:<12} {_when(r['started_at']):<19} {r['trigger']:<8} {actor:<16} "
            f"{result:<9} {(r['revision'] or '-')[:12]:<12} {r['created']:>4} "
            f"{r['updated']:>4} {r['deleted']:>4} {tail.strip()}"
        )
        if r.get("signed_by"):  # a `verify` workspace's run: whose signature was verified
            print(f"{'':<12} signed by {cut(r['signed_by'], 120)[0]}")
    print(f"{len(found)} runs (+ created, ~ updated, - deleted; * a dry run)")


def run(found: View) -> None:
    for key in ("id", "workspace", "trigger", "actor", "result", "revision", "message", "author"):
        if key in found:  # an older server's run has no actor, message or author
            print(f"{key + ':':<13}{found[key] if found[key] is not None else '-'}")
    print(f"{'dry_run:':<13}{found['dry_run']}")
    print(f"{'started:':<13}{_when(found['started_at'])}")
    print(f"{'finished:':<13}{_when(found['finished_at'])}")
    print(
        f"{'changes:':<13}{found['created']} created, {found['updated']} updated, "
        f"{found['deleted']} deleted"
    )
    if found.get("signed_by"):
        print(f"{'signed by:':<13}{found['signed_by']}")
    if found["error"]:
        print(f"{'error:':<13}{found['error']}")


def _names(items: list[Any]) -> str:
    return ", ".join(str(i) for i in items) if items else "none"


def health(ws: View, report: View) -> None:
    record = report["health"]
    print(f"{label(ws)}: {record['status']}")
    if record.get("error"):
        print(f"  error: {record['error']}")
    reachable = report["source_reachable"]
    print(f"  source reachable: {'unknown' if reachable is None else 'yes' if reachable else 'no'}")
    if report.get("local_failure"):
        print("  local failure: this host's state directory or disk, not the remote")
    if report["suspended"]:
        print(f"  automation suspended; pinned at {short(report['pinned_revision'])}")
    for provider, seen in sorted(report["webhook_last_seen"].items()):
        print(f"  webhook {provider}: last seen {_when(seen) if seen else 'never'}")
    print(f"  unused webhook secrets: {_names(report['webhooks_unused'])}")
    print(f"  invalid steps: {_names(report['invalid_steps'])}")
    print(f"  disabled steps: {_names(report['disabled_steps'])}")
    print(f"  changed outside git: {_names(report['changed_outside_git'])}")


def replicas(found: View) -> None:
    """`syncd replicas`: one line each, the answering replica marked *; then the count alive."""
    listed = found["replicas"]
    if listed:
        print(
            f"{'REPLICA':<32} {'HOST':<20} {'PID':>7} {'STATE':<6} {'STARTED':<19} "
            f"{'LAST SEEN':<19} HOLDS"
        )
    for r in listed:
        rid = r["id"] + ("*" if r.get("this") else "")
        print(
            f"{rid:<32} {r['host'][:20]:<20} {r['pid']:>7} "
            f"{'alive' if r['alive'] else 'gone':<6} {_when(r['started_at']):<19} "
            f"{_when(r['last_seen']):<19} {_names(r['holds'])}"
        )
    if not found["shared"]:
        where = f" ({found['store']})" if found.get("store") else ""
        print(
            f"one process: the store{where} is not shared, so `syncd serve` runs alone; "
            "replicas need a PostgreSQL store"
        )
        return
    alive = sum(1 for r in listed if r["alive"])
    print(f"{alive} alive, {len(listed) - alive} gone (* answered this request)")


def exported(ws: View, result: View) -> None:
    if result["changed"]:
        what = f"committed {short(result['commit'])}"
    else:
        what = f"nothing to commit; the branch is at {short(result['commit'])}"
    print(f"{label(ws)}: exported {result['files']} files to {result['branch']}: {what}")


def waited(ws: View, found: View, asked: str, timeout: str, quiet: bool = False) -> None:
    """How `wait --revision` ended: applied on stdout (unless `quiet`: --json printed it);
    a failed run or the time up on stderr."""
    target = short(found["revision"])
    named = target if asked.upper() != "HEAD" else f"HEAD ({target})"
    applied = short(found["applied_revision"])
    where = f"applied {applied}, {found['status']}, {found['health']}"
    if found["result"] == "applied":
        if not quiet:
            also = "" if found["applied_revision"] == found["revision"] else f" (in {applied})"
            print(f"{label(ws)}: {named} applied{also}: {found['status']}, {found['health']}")
        return
    if found["result"] == "failed":
        run = found.get("last_run") or {}
        why = run.get("error") or "its commit is marked failed"
        print(f"syncd: {label(ws)}: a run of {named} failed: {why}", file=sys.stderr)
        return
    print(f"syncd: {label(ws)}: {named} not applied after {timeout}: {where}", file=sys.stderr)
