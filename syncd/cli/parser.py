"""The command line: every command, its options and its help, in one parser.

The global options (--config, --server, --token-file, --ca-file, --deadline, --max-answer) may
come before the command (`syncd --server URL status`) or after it: the command's copies default
to SUPPRESS, so that a value given before the command is not overwritten by the command's own
default.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from syncd.cli import commands as c
from syncd.cli.completion import script
from syncd.cli.options import EXIT_OK, EXIT_TIMEOUT
from syncd.cli.transport import DEADLINE, MAX_ANSWER
from syncd.config.checks import parse_duration

# The commands that read or steer a workspace: local mode, or client mode with --server.
CLIENT_HELP = (
    "with --server (or $SYNCD_SERVER) through that server's HTTP API, token from "
    "--token-file, $SYNCD_TOKEN or $ALOMA_KEY; else from this host's config and store"
)


def global_options(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=default,
        help="config file (default: $SYNCD_CONFIG, else /etc/syncd/syncd.yaml)",
    )
    parser.add_argument(
        "--server",
        metavar="URL",
        default=default,
        help="talk to this syncd server (default: $SYNCD_SERVER; unset: local mode)",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        default=default,
        help="API token for --server (default: $SYNCD_TOKEN, else $ALOMA_KEY)",
    )
    parser.add_argument(
        "--ca-file",
        type=Path,
        metavar="FILE",
        default=default,
        help="CA bundle to verify the server's certificate (default: the system's)",
    )
    parser.add_argument(
        "--deadline",
        type=_duration,
        metavar="D",
        default=default,
        help="with --server, give up when the server has not answered within D, all the "
        f"command's requests together: 90, 30s, 5m (default: {DEADLINE:g}s; `wait`, "
        "`status --watch` and a run's polls start it again at each round)",
    )
    parser.add_argument(
        "--max-answer",
        type=_mebibytes,
        metavar="MIB",
        default=default,
        help=f"with --server, refuse an answer larger than MIB MiB (default: {MAX_ANSWER >> 20})",
    )


def _duration(text: str) -> float:
    try:
        seconds = parse_duration(int(text) if text.strip().isdigit() else text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text!r}")
    return seconds


def _mebibytes(text: str) -> int:
    if not text.strip().isdigit() or not 0 < int(text) <= 1 << 20:
        raise argparse.ArgumentTypeError(f"expected a number of MiB (1 or more), got {text!r}")
    return int(text) << 20


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="syncd",
        description="GitOps sync daemon for workspaces",
        epilog=f"Workspace commands run {CLIENT_HELP}. Exit codes: see docs/cli.md.",
    )
    global_options(p, None)
    common = argparse.ArgumentParser(add_help=False)
    global_options(common, argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(
        name: str,
        handler: Callable[[argparse.Namespace], int],
        help: str | None,
        json_flag: bool = False,
    ) -> argparse.ArgumentParser:
        if help:
            cmd = sub.add_parser(name, parents=[common], help=help, description=help)
        else:  # no help: hidden from the list
            cmd = sub.add_parser(name, parents=[common])
        cmd.set_defaults(handler=handler)
        if json_flag:
            cmd.add_argument("--json", action="store_true", help="print JSON, as the API does")
        return cmd

    def ws_arg(cmd: argparse.ArgumentParser, optional: bool = False) -> None:
        nargs = "?" if optional else None
        cmd.add_argument("workspace", metavar="WS", nargs=nargs, help="workspace id or name")

    cmd = add("check-config", c.cmd_check_config, "validate the config and every included file")
    cmd.add_argument(
        "--no-secrets",
        action="store_true",
        help="list the secrets that cannot be read (systemd's credentials before the unit "
        "runs) instead of failing on them; check everything else",
    )
    cmd = add("sync", c.cmd_sync, "sync a workspace now (in-process, or on --server)", True)
    ws_arg(cmd)
    cmd.add_argument("--dry-run", action="store_true", help="plan and record, apply nothing")
    cmd.add_argument("--revision", help="sync to this commit instead of the branch head")
    cmd.add_argument(
        "--wait",
        action="store_true",
        help="with --server, wait for the run and print it (local mode always waits)",
    )
    cmd = add("diff", c.cmd_diff, "show what a sync would change (exit 1 when it would)", True)
    ws_arg(cmd)
    cmd.add_argument(
        "--revision",
        metavar="SHA",
        help="show what this commit (7 to 40 hex digits: on the branch, or a pull request head "
        "syncd has fetched) would do instead of the branch head; exit 0 when it would apply, "
        "1 when it would not (a bad step file, the wipe guard, an unverified signature), 2 "
        "when it is unknown",
    )
    cmd = add("status", c.cmd_status, "show where workspaces stand", True)
    ws_arg(cmd, optional=True)
    cmd.add_argument("--watch", action="store_true", help="redraw every --interval seconds")
    cmd.add_argument(
        "--interval", type=float, default=2.0, metavar="S", help="--watch: seconds (default 2)"
    )
    cmd.add_argument(
        "--count",
        type=int,
        default=1800,
        metavar="N",
        help="--watch: stop after N redraws (default 1800, an hour at 2 s)",
    )
    cmd = add("suspend", c.cmd_suspend, "suspend a workspace's automation (kept across restarts)")
    cmd.add_argument("--json", action="store_true", help="print JSON, as the API does")
    ws_arg(cmd)
    cmd = add("resume", c.cmd_resume, "resume automation and sync to the branch head", True)
    ws_arg(cmd)
    cmd = add("steps", c.cmd_steps, "list a workspace's live steps", True)
    ws_arg(cmd)
    cmd = add("runs", c.cmd_runs, "list a workspace's runs, newest first", True)
    ws_arg(cmd)
    cmd.add_argument("--limit", type=int, default=20, metavar="N", help="at most N runs (20)")
    cmd = add("run", c.cmd_run, "show one run", True)
    cmd.add_argument("run_id", metavar="ID", help="a run id, as `syncd runs` lists them")
    cmd = add("health", c.cmd_health, "show a workspace's health and why", True)
    ws_arg(cmd)
    add("replicas", c.cmd_replicas, "list the replicas, their heartbeats and holds", True)
    cmd = add(
        "wait",
        c.cmd_wait,
        f"wait until a workspace is Synced or Healthy, or has applied a revision (exit "
        f"{EXIT_TIMEOUT} on timeout)",
    )
    ws_arg(cmd)
    cmd.add_argument(
        "--for",
        dest="target",
        choices=("synced", "healthy"),
        default="synced",
        help="what to wait for (default: synced; with --revision: applied and healthy)",
    )
    cmd.add_argument(
        "--revision",
        metavar="SHA|HEAD",
        help="wait until this commit (HEAD: the branch head now), or one after it, is applied "
        "and Healthy: exit 0; 1 if a run of it failed; 2 if it is not on the branch",
    )
    cmd.add_argument("--json", action="store_true", help="with --revision: print the answer")
    cmd.add_argument(
        "--timeout", default="5m", metavar="D", help="give up after D: 90, 30s, 5m, 1h (5m)"
    )
    cmd = add("export", c.cmd_export, "commit a workspace's live steps to a branch, push", True)
    ws_arg(cmd)
    cmd.add_argument("--branch", required=True, help="the branch to commit to")
    cmd.add_argument("--message", help="the commit message")
    cmd.add_argument(
        "--allow-tracked-branch",
        action="store_true",
        help="allow a branch an automatic workspace tracks",
    )
    add("migrate", c.cmd_migrate, "bring the store's schema up to this syncd's version")
    cmd = add("serve", c.cmd_serve, "run the daemon: webhooks, polling, API, metrics")
    cmd.add_argument("--listen", metavar="HOST:PORT", help="override server.listen")
    cmd.add_argument("--log-format", choices=("text", "json"), default="text")
    cmd.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    from syncd import demo  # demo imports its heavy parts only when it runs

    demo.add_command(sub, common)
    from syncd.cli.pull import add_command as add_pull  # pull reads a server's API, not the config

    add_pull(sub, common)
    from syncd.cli.audit import add_command as add_audit  # reads the store or the server's API

    add_audit(sub, common)
    from syncd.cli.admin import add_command as add_admin  # the store itself: backups

    add_admin(sub, common)
    cmd = add("completion", cmd_completion, "print a shell completion script")
    cmd.add_argument("shell", choices=("bash", "zsh", "fish"))
    add("__complete-workspaces", c.cmd_complete_workspaces, None)
    add("version", c.cmd_version, "print the version")
    return p


def cmd_completion(args: argparse.Namespace) -> int:
    # Here, not in commands: the script is made from this parser.
    print(script(args.shell, build_parser()))
    return EXIT_OK
