"""The state directory: whether it takes files. Not pure: a probe writes a file and removes it.

The daemon checks it before it starts (`check_state_writable`), `/readyz` at each probe
(`state_problem`, so a directory that turned read-only or full makes the replica unready), and
`check-config` before the unit runs (`state_dir_problem`, which creates nothing: systemd's
`StateDirectory=` makes the directory when the unit starts).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from syncd.config.types import Config
from syncd.core.errors import StateUnusable


def state_problem(folder: Path, create: bool = False) -> str | None:
    """Why `folder` cannot take a new file, or None when it can. `create`: make it first."""
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".syncd-probe-"):
            pass
    except OSError as e:
        return f"cannot write to the state directory {folder}: {e.strerror or e}"
    return None


def check_state_writable(config: Config) -> None:
    """The state directory and the store's folder must take files: say which one does not,
    before anything starts (SQLite would only say "unable to open database file")."""
    folders = [config.state_dir]
    if not config.store.is_postgres:
        folders.append(config.store.sqlite_path.parent)
    for folder in dict.fromkeys(folders):
        problem = state_problem(folder, create=True)
        if problem is not None:
            raise StateUnusable(problem)
    database = config.store.sqlite_path
    usable = os.access(database, os.R_OK | os.W_OK)
    if not config.store.is_postgres and database.exists() and not usable:
        raise StateUnusable(f"cannot write to the database {database}: permission denied")


def state_dir_problem(config: Config) -> tuple[str | None, str | None]:
    """For `check-config`: (a problem, a note). A state directory that exists must take files;
    one that does not exist yet is a note (the unit's `StateDirectory=` makes it), unless a
    file stands where it should be."""
    folder = config.state_dir
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing != folder:
        if not existing.is_dir():
            return f"the state directory {folder} cannot be made: {existing} is a file", None
        return None, f"the state directory {folder} does not exist yet (the daemon makes it)"
    if not folder.is_dir():
        return f"the state directory {folder} is not a directory", None
    return state_problem(folder), None
