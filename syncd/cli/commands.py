"""The commands: each reads or steers workspaces through a Backend (local or client mode) and
prints with syncd.cli.output, so both modes print the same and exit the same."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from syncd import __version__
from syncd.cli import output as out
from syncd.cli.apiclient import ApiClient
from syncd.cli.apierrors import ApiFailed, BadServer, ClientError
from syncd.cli.backend import Backend, View
from syncd.cli.client import RemoteBackend
from syncd.cli.local import LocalBackend
from syncd.cli.options import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    client_limits,
    server_of,
    token_of,
)
from syncd.cli.wait import wait_revision
from syncd.config import default_config_path, load_config
from syncd.config.checks import parse_duration
from syncd.config.state import state_dir_problem
from syncd.core.errors import ConfigError, NotFound, StateUnusable, SyncdError
from syncd.service.views import PREVIEW_REVISION


class NoConfig(NotFound):
    """Local mode without a config file (exit 2): the command names `--server`."""


# -- choosing the mode --------------------------------------------------------------------------


def config_path(args: argparse.Namespace) -> Path:
    return args.config or default_config_path(os.environ)


def backend_for(args: argparse.Namespace) -> Backend:
    server = server_of(args)
    if server:
        token = token_of(args)
        client = ApiClient(server, token, getattr(args, "ca_file", None), **client_limits(args))
        return RemoteBackend(client)
    path = config_path(args)
    if not path.exists():
        # Most likely a laptop, not the daemon's host: say how to reach a server.
        raise NoConfig(
            f"no config at {path} and no --server: give --server URL (or $SYNCD_SERVER) to "
            f"use a syncd server's API, or --config FILE (or $SYNCD_CONFIG) for this host's"
        )
    return LocalBackend(path, out.progress_printer())


def with_backend(args: argparse.Namespace, body: Callable[[Backend], int]) -> int:
    backend = backend_for(args)
    try:
        return body(backend)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        if not isinstance(backend, RemoteBackend):
            raise
        # The server answered JSON, but not in the shapes syncd's views have: one line, no
        # traceback (the printing code trusts the views it is given).
        api = backend.client
        raise BadServer(
            f"{api.base}: an answer syncd would not give ({api.clean(f'{type(e).__name__}: {e}')})"
        ) from None
    finally:
        backend.close()


# -- commands -----------------------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    # Every secret resolved: missing ones are reported; with --no-secrets (before the unit
    # runs, when systemd's /run/credentials/ files do not exist yet) they are listed, not read.
    no_secrets = bool(getattr(args, "no_secrets", False))
    config = load_config(config_path(args), lazy_secrets=no_secrets)
    problem, note = state_dir_problem(config)
    if problem is not None:
        raise StateUnusable(problem)
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
    if note is not None:
        print(f"  note: {note}")
    for warning in config.warnings:
        print(f"  warning: {warning}")
    unread = config.unresolved_secrets()
    if unread:
        print(f"  secret files not present, checked the rest: {len(unread)} not read")
        for secret in unread:
            print(f"    {secret.source}")
    return EXIT_OK


def _clear_progress() -> None:
    if out.progress_printer() is not None:
        sys.stderr.write("\r\033[K")


def cmd_sync(args: argparse.Namespace) -> int:
    def body(backend: Backend) -> int:
        ws = backend.find(args.workspace)
        result = backend.sync(ws, args.revision, args.dry_run, args.wait)
        _clear_progress()
        if "result" not in result:  # client mode without --wait: queued
            out.print_json(result) if args.json else out.queued(ws, result)
            return EXIT_OK
        if args.json:
            out.print_json(result)
        else:
            out.sync_result(ws, result, bool(args.revision))
        return EXIT_FAILED if result["result"] == "failed" else EXIT_OK

    return with_backend(args, body)


def cmd_diff(args: argparse.Namespace) -> int:
    """The plan now (exit 0 no difference, 1 a difference); with --revision, that commit's
    plan (exit 0 it would apply, 1 it would not); 2 when no plan can be made."""
    revision = getattr(args, "revision", None)
    if revision is not None and not PREVIEW_REVISION.fullmatch(revision):
        why = "expected a commit sha, 7 to 40 hex digits"
        print(f"syncd: --revision {revision!r}: {why}", file=sys.stderr)
        return EXIT_USAGE

    def body(backend: Backend) -> int:
        ws = backend.find(args.workspace)
        try:
            plan = backend.diff(ws) if revision is None else backend.preview(ws, revision)
        except ApiFailed as e:  # the server's preview failed: as local mode says it
            print(f"{out.label(ws)}: {e.body.get('error') or e}", file=sys.stderr)
            return EXIT_USAGE
        except (ClientError, ConfigError):
            raise
        except SyncdError as e:
            print(f"{out.label(ws)}: {e}", file=sys.stderr)
            return EXIT_USAGE
        _clear_progress()
        if args.json:
            out.print_json(plan)
        elif revision is not None:
            out.preview(ws, plan)
        else:
            out.diff(ws, plan)
        if revision is not None:
            return EXIT_OK if plan["would_apply"] else EXIT_FAILED
        return EXIT_OK if out.plan_empty(plan) else EXIT_FAILED

    return with_backend(args, body)


def cmd_status(args: argparse.Namespace) -> int:
    def once(backend: Backend) -> None:
        views = backend.views(args.workspace)
        if args.json:
            out.print_json(views[0] if args.workspace else views)
        else:
            out.status_table(views)

    def body(backend: Backend) -> int:
        if not args.watch:
            once(backend)
            return EXIT_OK
        interval = max(1.0, args.interval)
        for i in range(max(1, args.count)):
            if i:
                time.sleep(interval)
                backend.next_round()
            if sys.stdout.isatty():
                sys.stdout.write("\033[H\033[2J")  # home, clear: a redraw, not a scroll
            print(f"every {interval:g}s: syncd status   {time.strftime('%H:%M:%S')}")
            once(backend)
            sys.stdout.flush()
        return EXIT_OK

    return with_backend(args, body)


def cmd_suspend(args: argparse.Namespace) -> int:
    def body(backend: Backend) -> int:
        ws = backend.find(args.workspace)
        view = backend.suspend(ws)
        if args.json:
            out.print_json(view)
        else:
            print(f"{out.label(ws)}: automation suspended; `syncd resume {ws['id']}` resumes it")
        return EXIT_OK

    return with_backend(args, body)


def cmd_resume(args: argparse.Namespace) -> int:
    """Resume, then sync to the branch head (in this process, or on the server)."""

    def body(backend: Backend) -> int:
        ws = backend.find(args.workspace)
        result = backend.resume(ws)
        _clear_progress()
        if args.json:
            out.print_json(result)
        else:
            out.resumed(ws, result)
        return EXIT_FAILED if result["result"] == "failed" else EXIT_OK

    return with_backend(args, body)


def _listing(
    args: argparse.Namespace, read: Callable[[Backend], object], show: Callable[..., None]
) -> int:
    def body(backend: Backend) -> int:
        found = read(backend)
        out.print_json(found) if args.json else show(found)
        return EXIT_OK

    return with_backend(args, body)


def cmd_steps(args: argparse.Namespace) -> int:
    return _listing(args, lambda b: b.steps(b.find(args.workspace)), out.steps)


def cmd_runs(args: argparse.Namespace) -> int:
    limit = min(max(1, args.limit), 1000)
    return _listing(args, lambda b: b.runs(b.find(args.workspace), limit), out.runs)


def cmd_run(args: argparse.Namespace) -> int:
    return _listing(args, lambda b: b.run(args.run_id), out.run)


def cmd_replicas(args: argparse.Namespace) -> int:
    return _listing(args, lambda b: b.replicas(), out.replicas)


def cmd_health(args: argparse.Namespace) -> int:
    def body(backend: Backend) -> int:
        ws = backend.find(args.workspace)
        report = backend.health(ws)
        out.print_json(report) if args.json else out.health(ws, report)
        return EXIT_OK

    return with_backend(args, body)


def cmd_export(args: argparse.Namespace) -> int:
    order: View = {"branch": args.branch, "allow_tracked_branch": args.allow_tracked_branch}
    if args.message is not None:
        order["message"] = args.message

    def body(backend: Backend) -> int:
        ws = backend.find(args.workspace)
        result = backend.export(ws, order)
        out.print_json(result) if args.json else out.exported(ws, result)
        return EXIT_OK

    return with_backend(args, body)


def reached(view: View, target: str) -> bool:
    if target == "healthy":
        return bool(view["health"]["status"] == "Healthy")
    return bool(view["status"] == "Synced")


def cmd_wait(args: argparse.Namespace) -> int:
    """For deploy scripts: exit 0 once reached, EXIT_TIMEOUT when the time is up."""
    try:
        text = args.timeout.strip()
        timeout = parse_duration(int(text) if text.isdigit() else text)
    except ValueError as e:
        print(f"syncd: --timeout: {e}", file=sys.stderr)
        return EXIT_USAGE

    if args.revision is not None:
        return with_backend(args, lambda b: wait_revision(args, b, timeout))

    def body(backend: Backend) -> int:
        deadline = time.monotonic() + timeout
        while True:
            view = backend.find(args.workspace)
            if reached(view, args.target):
                print(f"{out.label(view)}: {view['status']}, {view['health']['status']}")
                return EXIT_OK
            left = deadline - time.monotonic()
            if left <= 0:
                print(
                    f"syncd: {out.label(view)}: not {args.target} after {args.timeout}: "
                    f"{view['status']}, {view['health']['status']}",
                    file=sys.stderr,
                )
                return EXIT_TIMEOUT
            time.sleep(min(1.0, left))
            backend.next_round()

    return with_backend(args, body)


def cmd_complete_workspaces(args: argparse.Namespace) -> int:
    """Workspace ids, one a line, for the completion scripts; quiet when none can be read."""
    try:
        ids = with_backend(args, lambda b: _print_lines(b.workspace_ids()))
    except (SyncdError, OSError):
        return EXIT_FAILED
    return ids


def _print_lines(lines: list[str]) -> int:
    for line in lines:
        print(line)
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    from syncd.store import open_store

    config = load_config(config_path(args))
    # Opening a store migrates it (under a lock on PostgreSQL, in a transaction on SQLite).
    store = open_store(config.store, pool_size=1)
    try:
        before, after = store.migrated_from, store.schema_version()
    finally:
        store.close()
    done = f"migrated from {before}" if before != after else "already up to date"
    print(f"store {config.store.where}: schema version {after} ({done})")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from syncd.daemon import serve
    from syncd.ops.logs import setup_logging

    setup_logging(args.log_format, args.log_level)
    config = load_config(config_path(args))
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
