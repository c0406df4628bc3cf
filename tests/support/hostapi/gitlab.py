"""A fake GitLab REST API (v4) validated against specs/gitlab.json (written from GitLab's REST
docs, not vendored from GitLab's generated OpenAPI: see specs/README.md). It keeps
commit statuses, merge request heads and notes, takes `PRIVATE-TOKEN`s, and refuses, as GitLab
does, to move a status to the state it already has."""

from __future__ import annotations

from typing import Any

import trustme

from tests.support.hostapi.server import FakeHost, Reply
from tests.support.hostapi.validate import Checked, load, swagger2

# The state machine event GitLab names in its refusal, by the state asked for.
EVENTS = {
    "pending": "enqueue",
    "running": "run",
    "success": "succeed",
    "failed": "drop",
    "canceled": "cancel",
    "skipped": "skip",
}
NOW = "2024-01-01T00:00:00.000Z"
AUTHOR = {"id": 1, "username": "syncd-bot", "name": "syncd", "state": "active"}


class FakeGitLab(FakeHost):
    required_headers = ("PRIVATE-TOKEN",)

    def __init__(self, ca: trustme.CA) -> None:
        super().__init__(ca, swagger2(load("gitlab.json")))
        self.statuses: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.notes: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self.merge_requests: dict[tuple[str, int], str] = {}
        self._next_id = 300

    def set_pull_head(self, project: str, iid: int, sha: str) -> None:
        with self._lock:
            self.merge_requests[(project, iid)] = sha

    def add_notes(self, project: str, iid: int, bodies: list[str], system: bool = False) -> None:
        with self._lock:
            for body in bodies:
                self._add_note(project, iid, body, system)

    def auth(self, headers: dict[str, str], checked: Checked) -> Reply | None:
        lowered = {k.lower(): v for k, v in headers.items()}
        if lowered.get("private-token") in self.tokens:
            return None
        return Reply(401, {"message": "401 Unauthorized"})

    def invalid(self, errors: list[str]) -> Reply:
        return Reply(400, {"error": "; ".join(errors)})

    def _add_note(self, project: str, iid: int, body: str, system: bool) -> dict[str, Any]:
        self._next_id += 1
        note = {
            "id": self._next_id,
            "type": None,
            "body": body,
            "attachment": None,
            "author": AUTHOR,
            "created_at": NOW,
            "updated_at": NOW,
            "system": system,
            "noteable_id": iid,
            "noteable_type": "MergeRequest",
            "project_id": 5,
            "noteable_iid": iid,
            "resolvable": False,
            "confidential": False,
            "internal": False,
        }
        self.notes.setdefault((project, iid), []).append(note)
        return note

    def route(self, checked: Checked) -> Reply:
        assert checked.operation is not None
        op, p, body = checked.operation.id, checked.path, checked.body
        project = str(p.get("id"))
        if op == "postApiV4ProjectsIdStatusesSha":
            name = body.get("name") or body.get("context") or "default"
            history = self.statuses.setdefault((project, p["sha"]), [])
            last = next((s for s in reversed(history) if s["name"] == name), None)
            if last is not None and last["status"] == body["state"]:
                event, state = EVENTS[body["state"]], body["state"]
                return Reply(
                    400, {"message": f"Cannot transition status via :{event} from :{state}"}
                )
            status = {
                "id": len(history) + 90,
                "sha": p["sha"],
                "ref": body.get("ref", "main"),
                "status": body["state"],
                "name": name,
                "target_url": body.get("target_url"),
                "description": body.get("description"),
                "created_at": NOW,
                "started_at": None,
                "finished_at": None,
                "allow_failure": False,
                "coverage": None,
                "author": AUTHOR,
            }
            history.append(status)
            return Reply(201, status)
        if op == "getApiV4ProjectsIdMergeRequestsMergeRequestIid":
            sha = self.merge_requests.get((project, p["merge_request_iid"]))
            if sha is None:
                return Reply(404, {"message": "404 Not found"})
            iid = p["merge_request_iid"]
            return Reply(200, {"id": iid + 1000, "iid": iid, "project_id": 5, "sha": sha})
        if op == "getApiV4ProjectsIdMergeRequestsNoteableIdNotes":
            q = checked.query
            notes = list(self.notes.get((project, p["merge_request_iid"]), []))
            if q.get("sort", "desc") == "desc":
                notes.reverse()
            per_page, page = int(q.get("per_page", 20)), int(q.get("page", 1))
            return Reply(200, notes[(page - 1) * per_page : page * per_page])
        if op == "postApiV4ProjectsIdMergeRequestsNoteableIdNotes":
            return Reply(201, self._add_note(project, p["merge_request_iid"], body["body"], False))
        if op == "putApiV4ProjectsIdMergeRequestsNoteableIdNotesNoteId":
            for note in self.notes.get((project, p["merge_request_iid"]), []):
                if note["id"] == p["note_id"]:
                    note["body"] = body["body"]
                    return Reply(200, note)
            return Reply(404, {"message": "404 Not found"})
        return Reply(404, {"message": "404 Not found"})
