"""Gitea's REST API (v1), which Forgejo keeps: commit statuses, a pull request's head, and its
comments through the issues API.

https://docs.gitea.com/api/ (templates/swagger/v1_json.tmpl in go-gitea/gitea).
"""

from __future__ import annotations

from syncd.report.hosts.base import Comment
from syncd.report.hosts.http import (
    expect_int,
    expect_list,
    owner_repo,
)
from syncd.report.hosts.owner_repo import OwnerRepoHost


class GiteaHost(OwnerRepoHost):
    # Gitea keeps a comment in a TEXT column with no limit of its own (MySQL's TEXT holds 64 KiB,
    # so 65,536 is what every database under Gitea takes), and a longer comment is unreadable
    # on a pull request anyway: the renderer cuts at this and says so.
    MAX_COMMENT = 65536
    MAX_DESCRIPTION = 255  # kept short: a status's description is one line in the UI

    async def _auth_headers(self) -> dict[str, str]:
        assert self._config.token is not None  # Gitea takes a token only (the loader checks)
        return {
            "Authorization": f"token {self._config.token.reveal()}",
            "Accept": "application/json",
        }

    async def _list_comments(
        self, repository: str, number: int, page: int
    ) -> tuple[list[Comment], bool]:
        # The API lists every comment of an issue in one answer (no page or limit parameter in
        # its description); the answer is bounded by the client's 4 MiB all the same.
        owner, repo = owner_repo(repository)
        operation = f"comments of {repository}#{number}"
        answer = await self.call(
            operation, "GET", f"/repos/{owner}/{repo}/issues/{number}/comments"
        )
        comments: list[Comment] = self.parse(
            operation,
            answer,
            lambda a: [
                Comment(expect_int(c, "id", operation), str(c.get("body") or ""))
                for c in expect_list(a, operation)
            ],
        )
        return comments, False

    async def _edit_comment(self, repository: str, number: int, id: int, body: str) -> None:
        owner, repo = owner_repo(repository)
        await self.call(
            f"edit comment {id} on {repository}#{number}",
            "PATCH",
            f"/repos/{owner}/{repo}/issues/comments/{id}",
            {"body": body},
        )

    async def _create_comment(self, repository: str, number: int, body: str) -> None:
        owner, repo = owner_repo(repository)
        await self.call(
            f"comment on {repository}#{number}",
            "POST",
            f"/repos/{owner}/{repo}/issues/{number}/comments",
            {"body": body},
        )
