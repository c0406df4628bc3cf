"""Where workspaces' live steps, sync state and run history are kept."""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncd.store.protocol import (
    ApplyBase,
    ApplyConflict,
    Fenced,
    IndexUpdate,
    Lease,
    Store,
    StoreError,
)
from syncd.store.sqlite import SqliteStore
from syncd.store.sqlite_schema import MIGRATIONS

if TYPE_CHECKING:
    from syncd.config import StoreConfig
    from syncd.store.postgres import PostgresStore

__all__ = [
    "MIGRATIONS",
    "ApplyBase",
    "ApplyConflict",
    "Fenced",
    "IndexUpdate",
    "Lease",
    "SqliteStore",
    "Store",
    "StoreError",
    "open_store",
]


def open_store(config: StoreConfig, pool_size: int = 8) -> SqliteStore | PostgresStore:
    """The store the config's URL names, opened and migrated to this syncd's schema.

    Raises StoreError naming the file, or the host and database (never the password).
    """
    if config.is_postgres:
        # Imported here: a SQLite deployment never loads the PostgreSQL driver.
        from syncd.store.postgres import PostgresStore

        password = config.password.reveal() if config.password else None
        return PostgresStore(config.url, password, pool_size=pool_size)
    return SqliteStore(config.sqlite_path)
