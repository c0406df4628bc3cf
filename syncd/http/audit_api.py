"""`GET /api/v1/audit`: the stored audit, newest first, as far as the caller may see it (scope
`audit`; see syncd.service.audit_pages for who sees which entry, and how pages are read).

Query parameters: `workspace` and `actor` (exact), `since` (RFC 3339 with a zone, or seconds
since the epoch), `limit` (1 to 1000, default 100), `cursor` (the `next_cursor` of the page
before: an entry's id as a decimal string). A parameter that cannot be used is a 400 naming
it. The answer: `{"entries": [...], "next_cursor": "..." | null}`.

The routes are handed to the API's `create_app` (`audit_routes`), which checks the token and
sets `request.state.actor` through its `scoped` wrapper before this handler runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from syncd.app import Parts
from syncd.http.errors import ApiError
from syncd.service.audit import Actor
from syncd.service.audit_pages import BadParameter, parse_query, read_page

Handler = Callable[[Request], Awaitable[Response]]
Scoped = Callable[[str, Handler], Handler]
PATH = "/api/v1/audit"


def audit_routes(parts: Parts, scoped: Scoped) -> list[Route]:
    """The audit's routes, each behind `scoped` (the API's token check for a scope)."""

    async def list_audit(request: Request) -> Response:
        actor = getattr(request.state, "actor", None)
        if not isinstance(actor, Actor) or not actor.access.anywhere("audit"):
            # `scoped` checked the token: this is a wiring mistake, never the caller's.
            raise ApiError(403, "the `audit` scope is required")
        try:
            query = parse_query(request.query_params)
        except BadParameter as e:
            raise ApiError(400, str(e), {"parameter": e.name}) from None
        page = await parts.store_calls.run(
            read_page, parts.core.store, actor, parts.config.workspaces, query
        )
        return JSONResponse(
            {"entries": [e.to_dict() for e in page.entries], "next_cursor": page.next_cursor}
        )

    return [Route(PATH, scoped("audit", list_audit), methods=["GET"])]
