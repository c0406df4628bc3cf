"""GitLab's REST API (v4): commit statuses, a merge request's head and its notes.

https://docs.gitlab.com/api/commits/#set-the-pipeline-status-of-a-commit, /api/notes/,
/api/merge_requests/. A project is named by its URL-encoded path (`group%2Fsub%2Fproject`).
"""

from __future__ import annotations

import re

from syncd.report.host import CommitStatus, State
from syncd.report.hosts.base import Comment, RestHost
from syncd.report.hosts.http import (
    PER_PAGE,
    Answer,
    expect_int,
    expect_list,
    expect_object,
    expect_str,
    host_message,
    segment,
)

# GitLab's states are a pipeline's: a failed run is `failed` whether it was our error or not.
STATES = {
    State.PENDING: "pending",
    State.SUCCESS: "success",
    State.FAILURE: "failed",
    State.ERROR: "failed",
}
# GitLab refuses to move a status to the state it is in ("Cannot transition status via
# :enqueue from :pending"): the status already says what we meant to set.
_SAME_STATE = re.compile(r"Cannot transition status via :\w+ from :(\w+)")


class GitLabHost(RestHost):
    MAX_COMMENT = 1_000_000  # "The content of a note. Limited to 1,000,000 characters."
    MAX_DESCRIPTION = 255  # a one-line summary; kept to what a varchar column takes

    async def _auth_headers(self) -> dict[str, str]:
        assert self._config.token is not None  # GitLab takes a token only (the loader checks)
        return {"PRIVATE-TOKEN": self._config.token.reveal(), "Accept": "application/json"}

    def _project(self, repository: str) -> str:
        return f"/projects/{segment(repository.strip('/'))}"

    async def set_status(self, repository: str, sha: str, status: CommitStatus) -> None:
        state = STATES[status.state]
        body: dict[str, str] = {
            "state": state,
            "name": status.context,
            "description": self.describe(status.description),
        }
        if status.target_url:
            body["target_url"] = status.target_url

        def already(answer: Answer) -> bool:
            if answer.status != 400:
                return False
            found = _SAME_STATE.search(host_message(answer.body))
            return found is not None and found.group(1) == state

        await self.call(
            f"status {status.context} on {repository}@{sha[:12]}",
            "POST",
            f"{self._project(repository)}/statuses/{segment(sha)}",
            body,
            accept=already,
        )

    async def pull_head(self, repository: str, number: int) -> str:
        operation = f"merge request {repository}!{number}"
        answer = await self.call(
            operation, "GET", f"{self._project(repository)}/merge_requests/{number}"
        )
        sha: str = self.parse(
            operation, answer, lambda a: expect_str(expect_object(a, operation), "sha", operation)
        )
        return sha

    async def _list_comments(
        self, repository: str, number: int, page: int
    ) -> tuple[list[Comment], bool]:
        operation = f"notes of {repository}!{number} (page {page})"
        answer = await self.call(
            operation,
            "GET",
            f"{self._project(repository)}/merge_requests/{number}/notes",
            # Oldest first, so that the note found is the first one made, as on the other hosts.
            params={"sort": "asc", "order_by": "created_at", "per_page": PER_PAGE, "page": page},
        )

        def read(a: Answer) -> list[Comment]:
            return [
                Comment(expect_int(n, "id", operation), str(n.get("body") or ""))
                for n in expect_list(a, operation)
                if not n.get("system")  # GitLab's own notes ("added 1 commit") are never ours
            ]

        comments: list[Comment] = self.parse(operation, answer, read)
        return comments, len(expect_list(answer, operation)) >= PER_PAGE

    async def _edit_comment(self, repository: str, number: int, id: int, body: str) -> None:
        await self.call(
            f"edit note {id} on {repository}!{number}",
            "PUT",
            f"{self._project(repository)}/merge_requests/{number}/notes/{id}",
            {"body": body},
        )

    async def _create_comment(self, repository: str, number: int, body: str) -> None:
        await self.call(
            f"note on {repository}!{number}",
            "POST",
            f"{self._project(repository)}/merge_requests/{number}/notes",
            {"body": body},
        )
