"""Client mode: the commands go through a syncd server's HTTP API (docs/http-api.md), with a
token; no config, store or secret of the daemon is read here."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable

from syncd.cli.apiclient import ApiClient, ApiNotFound, BadServer
from syncd.cli.backend import FINISHED, View
from syncd.core.errors import NotFound
from syncd.service.paging import MAX_LIMIT

WAIT_RUN_SECONDS = 600.0  # as long as the server waits on `POST .../sync?wait=true`
POLL_SECONDS = 0.5
# One `GET .../wait` holds at most this long (the server allows 300 s); a longer wait asks
# again, so that no proxy's idle timeout cuts it.
WAIT_ROUND_SECONDS = 60
# The workspace list is read a page at a time, of the most the server gives; a walk stops
# after this many pages (500,000 workspaces), which only a server that loops would reach.
MAX_PAGES = 1000


def _q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


class RemoteBackend:
    def __init__(
        self,
        client: ApiClient,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.clock, self.sleep = clock, sleep
        self._checked = False

    def _api(self) -> ApiClient:
        """The client, once the server is known to be syncd of our version (asked once)."""
        if not self._checked:
            self.client.check_version()
            self._checked = True
        return self.client

    def _path(self, ws: View, tail: str = "") -> str:
        return f"/api/v1/workspaces/{_q(ws['id'])}{tail}"

    def find(self, key: str) -> View:
        api = self._api()
        try:
            return api.get(f"/api/v1/workspaces/{_q(key)}")
        except ApiNotFound:
            pass
        # Not an id: a name, as local mode accepts, or nothing the server knows.
        listed = self.views(None)
        for view in listed:
            if view["name"] == key:
                return view
        known = ", ".join(f"{v['id']} ({v['name']})" for v in listed) or "none"
        raise NotFound(f"no workspace {key!r} at {api.base}; known: {known}")

    def _listed(self, path: str, key: str, **query: str) -> list[View]:
        """The list of objects under `key` of the answer: refused before anything is printed
        when the server sends something else."""
        return self._objects(self._api().get(path, **query), path, key)

    def _objects(self, answer: View, path: str, key: str) -> list[View]:
        found = answer.get(key)
        if not isinstance(found, list) or not all(isinstance(v, dict) for v in found):
            raise BadServer(f"{self.client.base}{path}: `{key}` is not a list of objects")
        return found

    def views(self, key: str | None) -> list[View]:
        if key:
            return [self.find(key)]
        return self._every_workspace()

    def _every_workspace(self) -> list[View]:
        """Every workspace the token may read, page after page (by id), following
        `next_cursor` until the server gives none."""
        path = "/api/v1/workspaces"
        found: list[View] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            query = {"limit": str(MAX_LIMIT)} | ({"cursor": cursor} if cursor else {})
            answer = self._api().get(path, **query)
            found += self._objects(answer, path, "workspaces")
            following = answer.get("next_cursor")
            if following is None:
                return found
            if not isinstance(following, str) or not following or following == cursor:
                raise BadServer(f"{self.client.base}{path}: `next_cursor` leads nowhere")
            cursor = following
        raise BadServer(f"{self.client.base}{path}: more than {MAX_PAGES} pages of workspaces")

    def diff(self, ws: View) -> View:
        return self._api().get(self._path(ws, "/diff"))

    def preview(self, ws: View, revision: str) -> View:
        return self._api().get(self._path(ws, "/preview"), revision=revision)

    def sync(self, ws: View, revision: str | None, dry_run: bool, wait: bool) -> View:
        body = {"dry_run": dry_run, "revision": revision}
        if wait:  # the server holds the request until the run ends (up to its 600 s)
            path = self._path(ws, "/sync")
            return self._api().post(path, body, holds=WAIT_RUN_SECONDS, wait="true")
        return self._api().post(self._path(ws, "/sync"), body)

    def steps(self, ws: View) -> list[View]:
        return self._listed(self._path(ws, "/steps"), "steps")

    def runs(self, ws: View, limit: int) -> list[View]:
        return self._listed(self._path(ws, "/runs"), "runs", limit=str(limit))

    def run(self, run_id: str) -> View:
        try:
            return self._api().get(f"/api/v1/runs/{_q(run_id)}")
        except ApiNotFound as e:
            raise NotFound(str(e)) from None

    def health(self, ws: View) -> View:
        return self._api().get(self._path(ws, "/health"))

    def suspend(self, ws: View) -> View:
        return self._api().post(self._path(ws, "/suspend"))

    def resume(self, ws: View) -> View:
        accepted = self._api().post(self._path(ws, "/resume"))
        run = self.wait_run(accepted["run_id"])
        now = self.find(ws["id"])
        return {**run, "suspended": now["suspended"], "pinned_revision": now["pinned_revision"]}

    def wait_run(self, run_id: str, timeout: float = WAIT_RUN_SECONDS) -> View:
        """A queued run, once finished: the server records a run only when it ends."""
        deadline = self.clock() + timeout
        while True:
            self.next_round()  # each poll gets the whole deadline; the loop has its own
            try:
                run = self._api().get(f"/api/v1/runs/{_q(run_id)}")
                if run.get("result") in FINISHED:
                    return run
            except ApiNotFound:
                pass
            if self.clock() >= deadline:
                raise TimeoutError(f"run {run_id} did not finish in {timeout:.0f} s")
            self.sleep(POLL_SECONDS)

    def wait_revision(self, ws: View, revision: str, seconds: float) -> View:
        # The server holds the request up to `seconds`: added to the deadline and the read.
        whole = max(0, min(int(seconds), WAIT_ROUND_SECONDS))
        query = urllib.parse.urlencode({"revision": revision, "timeout": str(whole)})
        path = self._path(ws, f"/wait?{query}")
        return self._api().request("GET", path, holds=float(whole))

    def export(self, ws: View, order: View) -> View:
        return self._api().post(self._path(ws, "/export"), order)

    def replicas(self) -> View:
        found = self._api().get("/api/v1/replicas")
        if not isinstance(found.get("replicas"), list):
            raise BadServer(f"{self.client.base}/api/v1/replicas: `replicas` is not a list")
        return found

    def workspace_ids(self) -> list[str]:
        return [v["id"] for v in self.views(None)]

    def next_round(self) -> None:
        self.client.restart_deadline()

    def close(self) -> None:
        pass
