"""GitHub's REST API (github.com and GitHub Enterprise Server): commit statuses, a pull
request's head, and its comments through the issues API (a pull request is an issue there).

https://docs.github.com/en/rest/commits/statuses, /rest/pulls/pulls, /rest/issues/comments
"""

from __future__ import annotations

import time
from collections.abc import Callable

from syncd.config.types import ProviderConfig
from syncd.report.hosts.base import Comment
from syncd.report.hosts.github_app import AppTokens
from syncd.report.hosts.http import (
    PER_PAGE,
    Answer,
    expect_int,
    expect_list,
    owner_repo,
)
from syncd.report.hosts.owner_repo import OwnerRepoHost

API_VERSION = "2022-11-28"


class GitHubHost(OwnerRepoHost):
    MAX_COMMENT = 65536  # GitHub refuses a comment body over 65,536 characters
    MAX_DESCRIPTION = 140  # and a status description over 140

    def __init__(self, config: ProviderConfig, clock: Callable[[], float] = time.time) -> None:
        super().__init__(config, clock)
        self.app = AppTokens(config.name, config.app, clock) if config.app is not None else None

    def _base_headers(self) -> dict[str, str]:
        return {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION}

    async def _auth_headers(self) -> dict[str, str]:
        headers = self._base_headers()
        if self.app is not None:
            token = await self.app.get(self._post_for_token)
        else:
            assert self._config.token is not None  # the config loader requires token or app
            token = self._config.token.reveal()
        headers["Authorization"] = f"Bearer {token}"
        return headers

    async def _post_for_token(self, operation: str, path: str, headers: dict[str, str]) -> Answer:
        """The installation token request: signed by the JWT, not by a token (no retry)."""
        sent = {**self._base_headers(), **headers}
        answer = await self._http.send(operation, "POST", path, sent, secrets=self._secrets())
        if answer.status != 201:
            raise self._http.fail(operation, answer, self._secrets())
        return answer

    def _secrets(self) -> tuple[str, ...]:
        return self.app.secrets() if self.app is not None else super()._secrets()

    async def _renew(self) -> bool:
        return self.app is not None and self.app.drop()

    async def _list_comments(
        self, repository: str, number: int, page: int
    ) -> tuple[list[Comment], bool]:
        owner, repo = owner_repo(repository)
        operation = f"comments of {repository}#{number} (page {page})"
        answer = await self.call(
            operation,
            "GET",
            f"/repos/{owner}/{repo}/issues/{number}/comments",
            params={"per_page": PER_PAGE, "page": page},
        )

        def read(a: Answer) -> list[Comment]:
            return [
                Comment(expect_int(c, "id", operation), str(c.get("body") or ""))
                for c in expect_list(a, operation)
            ]

        comments: list[Comment] = self.parse(operation, answer, read)
        return comments, len(comments) >= PER_PAGE

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
