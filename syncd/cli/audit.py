"""`syncd audit`: who did what, when, newest first, as a table (or the API's JSON with --json).

Client mode asks the server's `GET /api/v1/audit` (token scope `audit`: the entries that token
may see); local mode reads this host's store, all of it (the host's user can read the store
anyway), through the same paging code as the server. `--since` takes what the API takes (RFC
3339 with a zone, seconds since the epoch) or a duration back from now (`2h`, `7d`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from syncd.cli import output as out
from syncd.cli.apiclient import ApiClient, BadServer
from syncd.cli.commands import NoConfig, config_path
from syncd.cli.local import load_lazy
from syncd.cli.options import EXIT_OK, EXIT_USAGE, client_limits, server_of, token_of
from syncd.config.checks import parse_duration
from syncd.core.audit_model import MAX_LIMIT
from syncd.core.times import parse_time
from syncd.service.audit import Actor
from syncd.service.audit_pages import BadParameter, parse_query, parse_since, read_page
from syncd.store import open_store

View = dict[str, Any]
DEFAULT_LIMIT = 50
MAX_PAGES = 20  # pages asked for to fill --limit (a page can come back short: see audit_pages)


def add_command(sub: Any, common: argparse.ArgumentParser) -> None:
    help_text = "show who did what, when: the stored audit, newest first"
    cmd = sub.add_parser("audit", parents=[common], help=help_text, description=help_text)
    cmd.add_argument("--workspace", metavar="WS", help="only this workspace's entries (its id)")
    cmd.add_argument(
        "--actor", metavar="NAME", help="only this actor's (a token's name, oidc:..., local:...)"
    )
    cmd.add_argument(
        "--since",
        metavar="WHEN",
        help="only entries since WHEN: RFC 3339 (2026-03-01T12:00:00Z), seconds since the "
        "epoch, or a duration back from now (90m, 2h, 7d)",
    )
    cmd.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"at most N entries, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})",
    )
    cmd.add_argument("--json", action="store_true", help="print JSON, as the API does")
    cmd.set_defaults(handler=cmd_audit)


def since_seconds(text: str, now: Callable[[], float] = time.time) -> float:
    """WHEN as unix seconds; ValueError saying what is accepted."""
    try:
        return parse_since(text)
    except ValueError:
        pass
    try:
        return now() - parse_duration(text)
    except ValueError:
        raise ValueError(
            f"--since {text!r}: expected RFC 3339 with a zone (2026-03-01T12:00:00Z), seconds "
            "since the epoch, or a duration back from now (90m, 2h, 7d)"
        ) from None


def cmd_audit(args: argparse.Namespace) -> int:
    params: dict[str, str] = {"limit": str(args.limit)}
    if args.workspace:
        params["workspace"] = args.workspace
    if args.actor:
        params["actor"] = args.actor
    try:
        if args.since:
            params["since"] = f"{since_seconds(args.since):.3f}"
        parse_query(params)  # refused here as the server would refuse it
    except BadParameter as e:
        print(f"syncd audit: --{e.name} {e.message}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as e:
        print(f"syncd audit: {e}", file=sys.stderr)
        return EXIT_USAGE
    server = server_of(args)
    found = _remote(args, server, params) if server else _local(args, params)
    if args.json:
        out.print_json(found)
    else:
        table(found["entries"])
        if found["next_cursor"] is not None:
            print("(older entries not shown: raise --limit, or narrow with --since)")
    return EXIT_OK


def _gather(ask: Callable[[dict[str, str]], View], params: dict[str, str]) -> View:
    """Pages until --limit entries or the end, at most MAX_PAGES."""
    wanted = int(params["limit"])
    entries: list[View] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        query = {**params, "limit": str(wanted - len(entries))}
        if cursor is not None:
            query["cursor"] = cursor
        page = ask(query)
        entries += page["entries"]
        cursor = page["next_cursor"]
        if cursor is None or len(entries) >= wanted:
            break
    return {"entries": entries, "next_cursor": cursor}


def _remote(args: argparse.Namespace, server: str, params: dict[str, str]) -> View:
    api = ApiClient(server, token_of(args), getattr(args, "ca_file", None), **client_limits(args))
    api.check_version()

    def ask(query: dict[str, str]) -> View:
        page = api.get("/api/v1/audit", **query)
        if not isinstance(page.get("entries"), list) or not all(
            isinstance(e, dict) for e in page["entries"]
        ):
            raise BadServer(f"{api.base}/api/v1/audit: `entries` is not a list of objects")
        cursor = page.get("next_cursor")
        if cursor is not None and not isinstance(cursor, str):
            raise BadServer(f"{api.base}/api/v1/audit: `next_cursor` is not a string")
        return page

    return _gather(ask, params)


def _local(args: argparse.Namespace, params: dict[str, str]) -> View:
    path = config_path(args)
    if not path.exists():
        raise NoConfig(
            f"no config at {path} and no --server: give --server URL (or $SYNCD_SERVER) to "
            f"use a syncd server's API, or --config FILE (or $SYNCD_CONFIG) for this host's"
        )
    config = load_lazy(path)
    store = open_store(config.store, pool_size=1)
    try:

        def ask(query: dict[str, str]) -> View:
            page = read_page(store, Actor.local(), config.workspaces, parse_query(query))
            return {
                "entries": [e.to_dict() for e in page.entries],
                "next_cursor": page.next_cursor,
            }

        return _gather(ask, params)
    finally:
        store.close()


def _when(stamp: object) -> str:
    """An entry's time (RFC 3339) in local time, as `syncd runs` shows times."""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(parse_time(stamp)))
    except ValueError:
        return str(stamp)


def table(entries: list[View]) -> None:
    print(
        f"{'AT':<19} {'ACTOR':<20} {'VIA':<7} {'ACTION':<13} {'WORKSPACE':<16} {'RESULT':<7} DETAIL"
    )
    for e in entries:
        detail = e.get("detail") or ""
        if e.get("revision"):
            detail = f"{out.short(e['revision'])} {detail}".strip()
        if e.get("step"):
            detail = f"step {out.cut(e['step'], 40)[0]} {detail}".strip()
        print(
            f"{_when(e.get('at')):<19} {out.cut(str(e.get('actor')), 20)[0]:<20} "
            f"{str(e.get('via'))[:7]:<7} {str(e.get('action'))[:13]:<13} "
            f"{out.cut(e.get('workspace') or '-', 16)[0]:<16} {str(e.get('result'))[:7]:<7} "
            f"{out.cut(detail, 100)[0]}".rstrip()
        )
    print(f"{len(entries)} entries, newest first")
