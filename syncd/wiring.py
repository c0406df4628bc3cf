"""Wiring in one place: build the parts from a config. No module-level state anywhere else."""

from __future__ import annotations

from dataclasses import dataclass

from syncd.config import Config
from syncd.engine import Engine, SyncObserver
from syncd.git import GitObserver, GitSource
from syncd.store import SqliteStore


@dataclass
class Core:
    config: Config
    store: SqliteStore
    git: GitSource
    engine: Engine

    def close(self) -> None:
        self.store.close()


def build_core(
    config: Config,
    sync_observer: SyncObserver | None = None,
    git_observer: GitObserver | None = None,
) -> Core:
    store = SqliteStore(config.store.sqlite_path)
    git = GitSource(config.state_dir, timeout=config.git.timeout, observer=git_observer)
    engine = Engine(store, git, observer=sync_observer)
    return Core(config, store, git, engine)
