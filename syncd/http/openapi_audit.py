"""The audit's part of the OpenAPI document: `GET /api/v1/audit` (syncd.http.audit_api) and
its schemas. Kept apart from syncd.http.openapi, which merges it in (the operation is built with
that module's `op`, handed in, so this module needs nothing of it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from syncd.core.audit_model import MAX_DETAIL, MAX_LIMIT
from syncd.http.openapi_schemas import INT, STR, TIME, Schema, fields, nullable, obj, param, ref

PATH = "/api/v1/audit"
AUDIT_OPERATION_IDS = {("get", PATH): "listAuditEntries"}

AUDIT_SCHEMAS: dict[str, Schema] = {
    "AuditEntry": obj(
        {
            "id": INT,
            "at": TIME,
            **fields("actor:str via:str action:str workspace:str? revision:str? step:str?"),
            "result": {**STR, "description": "ok, refused (the caller's mistake) or error"},
            "status": {**INT, "description": "the HTTP status the caller was answered with"},
            "detail": {
                **nullable(STR),
                "maxLength": MAX_DETAIL,
                "description": "why it was refused or failed; `dry run`, `rollback`",
            },
        },
        description="`actor`: a token's name, `oidc:<subject>`, `local:<os user>`, or `syncd` "
        "(a config reload); `via`: api, console, local or daemon; `action`: sync, suspend, "
        "resume, step.put, step.delete, export, sign_in, sign_out or config_reload.",
    ),
    "AuditPage": obj(
        {
            "entries": {"type": "array", "items": ref("AuditEntry")},
            "next_cursor": {
                **nullable(STR),
                "description": "`cursor` of the next (older) page; null: no older entries",
            },
        }
    ),
}

PARAMS = (
    param("workspace", "query", STR, "only this workspace's entries (exact id)"),
    param("actor", "query", STR, "only this actor's entries (exact)"),
    param(
        "since",
        "query",
        STR,
        "only entries at or after this time: RFC 3339 with a zone, or seconds since the epoch",
    ),
    param(
        "limit",
        "query",
        {**INT, "minimum": 1, "maximum": MAX_LIMIT, "default": 100},
        "how many at most; out of range is a 400",
    ),
    param("cursor", "query", STR, "the `next_cursor` of the page before; anything else is a 400"),
)


def audit_paths(op: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """The audit's path items, built with syncd.http.openapi's `op`."""
    return {
        PATH: {
            "get": op(
                "audit",
                "Who did what, when: the stored audit, newest first",
                {
                    "200": {
                        "description": "OK",
                        "content": {"application/json": {"schema": ref("AuditPage")}},
                    }
                },
                "400 503",
                *PARAMS,
                text="Entries of every change (sync, suspend, resume, step edits, export) from "
                "the API, the console and the local CLI, and of sign-ins, sign-outs and config "
                "reloads. Only the entries the token may see: those of workspaces it may read "
                "(of a workspace no longer configured: when its id globs match the id), and "
                "those of no workspace. A 400 names the parameter that cannot be used. A page "
                "may hold fewer than `limit` entries while `next_cursor` is not null (at most "
                "5000 entries are looked through per page): ask again with it.",
            )
        }
    }
