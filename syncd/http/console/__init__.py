"""The web console: pages at /ui/ over the workspace use cases (see routes.py)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import RedirectResponse
from starlette.routing import Route

from syncd.app import Parts
from syncd.http.console.routes import create_console

PREFIX = "/ui"


def mount_console(app: Starlette, parts: Parts) -> None:
    """Serve the console at /ui/ beside the API."""

    async def to_console(request: object) -> RedirectResponse:
        return RedirectResponse(PREFIX + "/", status_code=307)

    app.router.routes.append(Route(PREFIX, to_console, methods=["GET"]))
    app.mount(PREFIX, create_console(parts, PREFIX))


__all__ = ["PREFIX", "create_console", "mount_console"]
