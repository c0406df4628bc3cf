"""`syncd admin`: work on the store itself, on the store's host: never through a server's API.

- `syncd admin export FILE`: a backup of the store the config names (syncd.store.backup), as
  of one instant, while the daemon runs on.
- `syncd admin import FILE`: that backup restored into the store the config names, which must
  be empty (a new SQLite file, a new PostgreSQL database): with the daemon stopped, this is how
  a store moves from SQLite to PostgreSQL or back.

The config is read with lazy secrets: only the store's password (PostgreSQL) is read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncd.cli.commands import NoConfig, config_path
from syncd.cli.local import load_lazy
from syncd.cli.options import EXIT_OK, EXIT_USAGE
from syncd.config import Config
from syncd.store import SqliteStore, open_store
from syncd.store.backup import Summary, export_backup, import_backup

if TYPE_CHECKING:
    from syncd.store.postgres import PostgresStore


def add_command(sub: Any, common: argparse.ArgumentParser) -> None:
    """`common` (the client's options) is not taken: only --config means anything here."""
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help="config file (default: $SYNCD_CONFIG, else /etc/syncd/syncd.yaml)",
    )
    help_text = "work on this host's store: back it up, restore it (never through --server)"
    admin = sub.add_parser("admin", parents=[config], help=help_text, description=help_text)
    actions = admin.add_subparsers(dest="admin_command", metavar="ACTION", required=True)
    for name, handler, help_line in (
        (
            "export",
            cmd_export,
            "write a backup of the store the config names to FILE: live steps, sync state, "
            "health, runs, audit, as of one instant (the daemon may go on running)",
        ),
        (
            "import",
            cmd_import,
            "restore a backup into the store the config names, which must be empty; refuses, "
            "writing nothing, a file cut short, of another version or changed",
        ),
    ):
        cmd = actions.add_parser(name, parents=[config], help=help_line, description=help_line)
        cmd.add_argument("file", metavar="FILE", type=Path, help="the backup file")
        cmd.set_defaults(handler=handler)


def _refuse_server(args: argparse.Namespace) -> bool:
    if getattr(args, "server", None):
        print(
            "syncd admin: works on this host's store, never through a server: leave out --server",
            file=sys.stderr,
        )
        return True
    return False


def _store(args: argparse.Namespace) -> tuple[Config, SqliteStore | PostgresStore]:
    path = config_path(args)
    if not path.exists():
        raise NoConfig(f"no config at {path}: give --config FILE (or $SYNCD_CONFIG)")
    config = load_lazy(path)
    return config, open_store(config.store, pool_size=1)


def _said(summary: Summary) -> str:
    return f"{summary.describe()} (sha256 {summary.sha256[:16]}...)"


def cmd_export(args: argparse.Namespace) -> int:
    if _refuse_server(args):
        return EXIT_USAGE
    config, store = _store(args)
    try:
        summary = export_backup(store, args.file)
    finally:
        store.close()
    print(f"exported store {config.store.where} to {args.file}: {_said(summary)}")
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    if _refuse_server(args):
        return EXIT_USAGE
    config, store = _store(args)
    try:
        summary = import_backup(store, args.file, config.store.where)
    finally:
        store.close()
    print(f"imported {args.file} into store {config.store.where}: {_said(summary)}")
    return EXIT_OK
