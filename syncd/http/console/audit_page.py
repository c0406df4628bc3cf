"""The console's audit page, `/ui/audit`: who did what, when, newest first, filtered by the
query (`workspace`, `actor`, `since`, `limit`), with a link to the next (older) page by cursor.

What it shows and how it pages is the API's (syncd.service.audit_pages): the entries of the
workspaces the visitor may read, and those of no workspace, to holders of `audit`. The console's
routes hand in how a visitor is told (signed in, with their actor) and how a page is rendered,
so that this module needs nothing of theirs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from syncd.app import Parts
from syncd.http.console.gate import Refused
from syncd.service.audit import Actor
from syncd.service.audit_pages import BadParameter, parse_query, read_page

Handler = Callable[[Request], Awaitable[Response]]
# The signed-in visit (the console's `Visit`) and who it is; raises SignInFirst or Refused.
Visitor = Callable[[Request], tuple[Any, Actor]]
# The console's `page(request, seen, template, status=200, headers=None, **context)`.
Render = Callable[..., Response]
FILTERS = ("workspace", "actor", "since", "limit")


def audit_page(parts: Parts, visitor: Visitor, render: Render) -> Handler:
    async def handler(request: Request) -> Response:
        seen, actor = visitor(request)
        if not actor.access.anywhere("audit"):
            raise Refused(403, f"{actor.name!r} lacks the 'audit' scope this page needs.")
        q = request.query_params
        try:
            query = parse_query(q)
        except BadParameter as e:
            raise Refused(400, f"The {e.name} filter {e.message}.") from None
        page = await parts.store_calls.run(
            read_page, parts.core.store, actor, parts.config.workspaces, query
        )
        filters = {name: q[name] for name in FILTERS if q.get(name)}
        older = None
        if page.next_cursor is not None:
            older = urlencode({**filters, "cursor": page.next_cursor})
        return render(
            request,
            seen,
            "audit.html",
            entries=[e.to_dict() for e in page.entries],
            filters=filters,
            older=older,
            first_page=not q.get("cursor"),
        )

    return handler
