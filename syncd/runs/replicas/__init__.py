"""Replicas: what several `syncd serve` processes on one PostgreSQL store share, behind the one
interface the scheduler uses (`Coordinator`). With SQLite there is one process and the
in-process `LocalCoordinator`; with PostgreSQL, `PostgresCoordinator`."""

from syncd.runs.replicas.coordinator import (
    Claimed,
    Coordinator,
    LocalCoordinator,
    ReplicaInfo,
    Submitted,
)

__all__ = [
    "Claimed",
    "Coordinator",
    "LocalCoordinator",
    "ReplicaInfo",
    "Submitted",
]
