"""The `syncd` command. The only place that turns errors into exit codes.

Exit status: 0 success, 1 a failed sync (or, for `diff`, a difference), 2 bad usage or config.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from syncd import __version__
from syncd.app import Core, build_core
from syncd.config import Config, WorkspaceConfig, default_config_path, load_config
from syncd.errors import ConfigError, NotFound, StateUnusable, SyncdError
from syncd.model import RunResult, SyncState, automation_suspended
from syncd.views import diff_view, sync_result_view

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as e:
        print(f"syncd: config refused:\n{e}", file=sys.stderr)
        return EXIT_USAGE
    except (NotFound, StateUnusable) as e:
        print(f"syncd: {e}", file=sys.stderr)
        return EXIT_USAGE
    except SyncdError as e:
        print(f"syncd: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="syncd", description="GitOps sync daemon for workspaces")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        help="config file (default: $SYNCD_CONFIG, else /etc/syncd/syncd.yaml)",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(
        name: str, handler: Callable[[argparse.Namespace], int], help: str, json_flag: bool = False
    ) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, parents=[common], help=help, description=help)
        cmd.set_defaults(handler=handler)
        if json_flag:
            cmd.add_argument("--json", action="store_true", help="print JSON, as the API does")
        return cmd

    add("check-config", cmd_check_config, "validate the config and every included file")
    cmd = add("sync", cmd_sync, "sync a workspace now, in-process (no server needed)", True)
    cmd.add_argument("workspace", metavar="WS", help="workspace id or name")
    cmd.add_argument("--dry-run", action="store_true", help="plan and record, apply nothing")
    cmd.add_argument("--revision", help="sync to this commit instead of the branch head")
    cmd = add("diff", cmd_diff, "show what a sync would change (exit 1 when it would)", True)
    cmd.add_argument("workspace", metavar="WS")
    cmd = add("status", cmd_status, "show where workspaces stand", True)
    cmd.add_argument("workspace", metavar="WS", nargs="?")
    cmd = add(
        "suspend", cmd_suspend, "suspend a workspace's automation (kept across restarts)", True
    )
    cmd.add_argument("workspace", metavar="WS")
    cmd = add("resume", cmd_resume, "resume automation and sync to the branch head", True)
    cmd.add_argument("workspace", metavar="WS")
    cmd = add("steps", cmd_steps, "list a workspace's live steps", True)
    cmd.add_argument("workspace", metavar="WS")
    cmd = add("serve", cmd_serve, "run the daemon: webhooks, polling, API, metrics")
    cmd.add_argument("--listen", metavar="HOST:PORT", help="override server.listen")
    cmd.add_argument("--log-format", choices=("text", "json"), default="text")
    cmd.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    from syncd import demo  # demo imports its heavy parts only when it runs

    demo.add_command(sub, common)
    from syncd.pull import add_command as add_pull  # pull reads a server's API, not the config

    add_pull(sub, common)
    add("version", cmd_version, "print the version")
    return p


# -- helpers shared by commands -----------------------------------------------------------------


def load(args: argparse.Namespace) -> Config:
    return load_config(args.config or default_config_path(os.environ))


def progress_printer(stream: TextIO = sys.stderr) -> Callable[[str], None] | None:
    """Long work shows progress on a terminal, and stays quiet in pipes and logs."""
    if not stream.isatty():
        return None

    def say(message: str) -> None:
        stream.write(f"\r\033[K{message}")
        stream.flush()

    return say


def _print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False))


# -- commands -----------------------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load(args)
    modes: dict[str, int] = {}
    for ws in config.workspaces:
        modes[str(ws.mode)] = modes.get(str(ws.mode), 0) + 1
    summary = ", ".join(f"{n} {m}" for m, n in sorted(modes.items())) or "none"
    print(f"config OK: {config.path}")
    print(f"  files read: {len(config.files)}")
    print(f"  workspaces: {len(config.workspaces)} ({summary})")
    print(
        f"  tokens: {len(config.tokens)}; webhook providers: "
        f"{', '.join(sorted(config.webhooks)) or 'none'}"
    )
    return EXIT_OK


def _with_core(args: argparse.Namespace, body: Callable[[Core], int]) -> int:
    core = build_core(load(args))
    try:
        return body(core)
    finally:
        core.close()


def cmd_sync(args: argparse.Namespace) -> int:
    def body(core: Core) -> int:
        ws = core.workspaces.find(args.workspace)
        say = progress_printer()
        outcome = core.workspaces.sync_now(ws, args.revision, args.dry_run, say)
        if say:
            sys.stderr.write("\r\033[K")
        run = outcome.run
        if args.json:
            _print_json(run.to_dict())
        else:
            rev = (run.revision or "?")[:12]
            if run.result is RunResult.FAILED:
                print(f"{ws.id} ({ws.name}): sync failed at {rev}: {run.error}", file=sys.stderr)
            else:
                verb = "would change" if run.result is RunResult.PLANNED else "synced to"
                plan = outcome.plan
                counts = (
                    f"{len(plan.creates)} created, {len(plan.updates)} updated, "
                    f"{len(plan.deletes)} deleted"
                    if plan
                    else ""
                )
                print(f"{ws.id} ({ws.name}): {verb} {rev}: {counts}")
                if run.result is RunResult.SUCCEEDED and args.revision:
                    print(_pin_note(ws, outcome.state))
        return EXIT_FAILED if run.result is RunResult.FAILED else EXIT_OK

    return _with_core(args, body)


def cmd_diff(args: argparse.Namespace) -> int:
    def body(core: Core) -> int:
        ws = core.workspaces.find(args.workspace)
        try:
            reading = core.workspaces.preview(ws)
        except SyncdError as e:
            print(f"{ws.id} ({ws.name}): {e}", file=sys.stderr)
            return EXIT_USAGE
        plan = reading.plan
        if args.json:
            _print_json(diff_view(ws, reading))
        else:
            for change in plan.changes:
                print(f"{change.action} {change.name}")
                if change.diff:
                    print(change.diff)
            print(
                f"{ws.id} ({ws.name}) at {reading.revision[:12]}: {len(plan.creates)} to "
                f"create, {len(plan.updates)} to update, {len(plan.deletes)} to delete, "
                f"{plan.unchanged} unchanged"
            )
        return EXIT_OK if plan.empty else EXIT_FAILED

    return _with_core(args, body)


def cmd_status(args: argparse.Namespace) -> int:
    def body(core: Core) -> int:
        service = core.workspaces
        chosen = [service.find(args.workspace)] if args.workspace else service.tagged(None)
        views = service.views(chosen)
        if args.json:
            _print_json(views[0] if args.workspace else views)
            return EXIT_OK
        print(
            f"{'ID':<16} {'NAME':<16} {'MODE':<10} {'STATUS':<10} {'HEALTH':<10} "
            f"{'APPLIED':<12} LAST RUN"
        )
        for v in views:
            last = v["last_run"]
            last_text = f"{last['result']} ({last['trigger']})" if last else "-"
            applied = (v["last_applied_revision"] or "-")[:12]
            if v["pinned_revision"]:
                last_text += f"; pinned at {v['pinned_revision'][:12]}"
            if v["health"]["error"]:
                last_text += f"; {v['health']['error'].splitlines()[0][:120]}"
            print(
                f"{v['id']:<16} {v['name']:<16} {v['mode']:<10} {v['status']:<10} "
                f"{v['health']['status']:<10} {applied:<12} {last_text}"
            )
        return EXIT_OK

    return _with_core(args, body)


def _pin_note(ws: WorkspaceConfig, state: SyncState) -> str:
    pinned = (state.pinned_revision or "?")[:12]
    if automation_suspended(ws.mode, state):
        return (
            f"{ws.id} ({ws.name}): pinned at {pinned}; automation suspended "
            f"(`syncd resume {ws.id}` returns it to the branch head)"
        )
    return f"{ws.id} ({ws.name}): pinned at {pinned}"


def cmd_suspend(args: argparse.Namespace) -> int:
    def body(core: Core) -> int:
        ws = core.workspaces.find(args.workspace)
        view = core.workspaces.suspend(ws)
        if args.json:
            _print_json(view)
        else:
            print(f"{ws.id} ({ws.name}): automation suspended; `syncd resume {ws.id}` resumes it")
        return EXIT_OK

    return _with_core(args, body)


def cmd_resume(args: argparse.Namespace) -> int:
    """Resume, then sync to the branch head in this process (as `syncd sync` does)."""

    def body(core: Core) -> int:
        ws = core.workspaces.find(args.workspace)
        core.workspaces.resume(ws)
        outcome = core.workspaces.sync_now(ws, progress=progress_printer())
        run = outcome.run
        if args.json:
            _print_json(sync_result_view(ws, outcome))
        elif run.result is RunResult.FAILED:
            print(f"{ws.id} ({ws.name}): resumed; the sync to the head failed: {run.error}")
        else:
            rev = (run.revision or "?")[:12]
            print(f"{ws.id} ({ws.name}): resumed; synced to the branch head {rev}")
        return EXIT_FAILED if run.result is RunResult.FAILED else EXIT_OK

    return _with_core(args, body)


def cmd_steps(args: argparse.Namespace) -> int:
    def body(core: Core) -> int:
        ws = core.workspaces.find(args.workspace)
        steps = core.workspaces.steps(ws)
        if args.json:
            _print_json([s.to_dict() for s in steps])
            return EXIT_OK
        for s in steps:
            flags = ("" if s.content.enabled else " disabled") + (
                "" if s.content.valid else " invalid"
            )
            print(f"{s.name}  v{s.version} {s.origin}{flags}")
        print(f"{len(steps)} steps")
        return EXIT_OK

    return _with_core(args, body)


def cmd_serve(args: argparse.Namespace) -> int:
    from syncd.daemon import serve
    from syncd.logs import setup_logging

    setup_logging(args.log_format, args.log_level)
    config = load(args)
    host = port = None
    if args.listen:
        host, _, port_text = args.listen.rpartition(":")
        if not host or not port_text.isdigit():
            print(f"syncd: --listen {args.listen!r}: expected HOST:PORT", file=sys.stderr)
            return EXIT_USAGE
        host, port = host.strip("[]"), int(port_text)
    return serve(config, host, port)


def cmd_version(args: argparse.Namespace) -> int:
    print(f"syncd {__version__}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
