"""The workspace list's operation in the OpenAPI document (`syncd.http.openapi`): its pages
(`limit`, `cursor`), its filters and its answer's `next_cursor`, by the rules of
`syncd.service.paging`. Pure: data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from syncd.http.openapi_schemas import INT, STR, TAG, Schema, enum, param, ref
from syncd.service.paging import DEFAULT_LIMIT, MAX_CURSOR, MAX_LIMIT

PAGE_LIMIT = param(
    "limit",
    "query",
    {**INT, "minimum": 1, "maximum": MAX_LIMIT},
    "a page of at most this many workspaces, by id; out of range is a 400. Without it (and "
    "without `cursor`) the answer is every workspace, in config order: clients should page",
)
CURSOR = param(
    "cursor",
    "query",
    {**STR, "maxLength": MAX_CURSOR, "pattern": "^[A-Za-z0-9_-]*$"},
    "the `next_cursor` of the page before, as given (opaque); with the same filters. One this "
    f"API did not give is a 400. Without `limit`, pages hold {DEFAULT_LIMIT}",
)
STATUS = param(
    "status", "query", enum("Synced", "OutOfSync", "Unknown"), "only workspaces in this status"
)
HEALTH = param(
    "health", "query", enum("Healthy", "Degraded", "Suspended"), "only workspaces in this health"
)
PARAMETERS: tuple[Schema, ...] = (PAGE_LIMIT, CURSOR, TAG, STATUS, HEALTH)
TEXT = (
    "The workspaces the token may read. With `limit`, a page of them by id, and `next_cursor` "
    "to ask for the next page with (null on the last); the filters are applied before paging, "
    "so a page is full unless it is the last. Without `limit` and `cursor`, every one in "
    "config order and `next_cursor` null (the whole list: slow with thousands of workspaces). "
    "A bad `limit`, `cursor`, `status` or `health` is a 400 whose `detail` is "
    "`{parameter: name}`."
)


def list_operation(op: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """GET /api/v1/workspaces, built with syncd.http.openapi's `op` (handed in, as the audit's
    operation is)."""
    listed = {
        "description": "OK",
        "content": {"application/json": {"schema": ref("WorkspaceList")}},
    }
    return op("read", "Workspaces", {"200": listed}, "400", *PARAMETERS, text=TEXT)
