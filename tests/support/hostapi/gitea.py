"""A fake Gitea (and Forgejo) REST API (v1) validated against the operations of Gitea's own
swagger description (specs/gitea.json). It keeps statuses, pull heads and comments, and takes
`Authorization: token ...`."""

from __future__ import annotations

from typing import Any

import trustme

from tests.support.hostapi.server import FakeHost, Reply
from tests.support.hostapi.validate import Checked, load, swagger2

NOW = "2024-01-01T00:00:00Z"
USER = {"id": 1, "login": "syncd-bot", "full_name": "syncd"}
# The description gives CommitStatusState as a bare string and lists its values only in words;
# the fake holds a state to those words, so a state Gitea would refuse is a violation here.
TIGHTEN = {
    "CommitStatusState": {
        "type": "string",
        "enum": ["pending", "success", "error", "failure", "warning"],
    }
}


class FakeGitea(FakeHost):
    required_headers = ("Authorization",)

    def __init__(self, ca: trustme.CA) -> None:
        super().__init__(ca, swagger2(load("gitea.json"), tighten=TIGHTEN))
        self.statuses: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.comments: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self.pulls: dict[tuple[str, int], str] = {}
        self._next_id = 1

    def set_pull_head(self, repo: str, index: int, sha: str) -> None:
        with self._lock:
            self.pulls[(repo, index)] = sha

    def add_comments(self, repo: str, index: int, bodies: list[str]) -> None:
        with self._lock:
            for body in bodies:
                self._add_comment(repo, index, body)

    def auth(self, headers: dict[str, str], checked: Checked) -> Reply | None:
        lowered = {k.lower(): v for k, v in headers.items()}
        scheme, _, token = lowered.get("authorization", "").partition(" ")
        if scheme == "token" and token in self.tokens:
            return None
        return Reply(401, {"message": "token is required", "url": self.url + "/api/swagger"})

    def _add_comment(self, repo: str, index: int, body: str) -> dict[str, Any]:
        self._next_id += 1
        comment = {
            "id": self._next_id,
            "body": body,
            "user": USER,
            "created_at": NOW,
            "updated_at": NOW,
            "html_url": f"{self.url}/{repo}/pulls/{index}#issuecomment-{self._next_id}",
            "pull_request_url": f"{self.url}/{repo}/pulls/{index}",
            "issue_url": "",
            "original_author": "",
            "original_author_id": 0,
        }
        self.comments.setdefault((repo, index), []).append(comment)
        return comment

    def route(self, checked: Checked) -> Reply:
        assert checked.operation is not None
        op, p, body = checked.operation.id, checked.path, checked.body
        repo = f"{p.get('owner')}/{p.get('repo')}"
        if op == "repoCreateStatus":
            history = self.statuses.setdefault((repo, p["sha"]), [])
            status = {
                "id": len(history) + 1,
                "status": body.get("state"),
                "context": body.get("context", ""),
                "description": body.get("description", ""),
                "target_url": body.get("target_url", ""),
                "created_at": NOW,
                "updated_at": NOW,
                "creator": USER,
                "url": "",
            }
            history.append(status)
            return Reply(201, status)
        if op == "repoGetPullRequest":
            sha = self.pulls.get((repo, p["index"]))
            if sha is None:
                return Reply(404, {"message": "The target couldn't be found.", "errors": []})
            return Reply(200, {"id": p["index"] + 100, "number": p["index"], "head": {"sha": sha}})
        if op == "issueGetComments":
            return Reply(200, self.comments.get((repo, p["index"]), []))
        if op == "issueCreateComment":
            return Reply(201, self._add_comment(repo, p["index"], body["body"]))
        if op == "issueEditComment":
            for comments in self.comments.values():
                for comment in comments:
                    if comment["id"] == p["id"]:
                        comment["body"] = body["body"]
                        return Reply(200, comment)
            return Reply(404, {"message": "The target couldn't be found.", "errors": []})
        return Reply(404, {"message": "The target couldn't be found.", "errors": []})
