"""Where workspaces' live steps, sync state and run history are kept."""

from syncd.store.protocol import ApplyBase, ApplyConflict, IndexUpdate, Store, StoreError
from syncd.store.sqlite import SqliteStore
from syncd.store.sqlite_schema import MIGRATIONS

__all__ = [
    "MIGRATIONS",
    "ApplyBase",
    "ApplyConflict",
    "IndexUpdate",
    "SqliteStore",
    "Store",
    "StoreError",
]
