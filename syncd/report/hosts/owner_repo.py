"""A commit status and a pull request's head on hosts whose API has GitHub's shape for them
(GitHub, and Gitea/Forgejo, which takes the same paths, states and fields): one home for both.
"""

from __future__ import annotations

from syncd.report.host import CommitStatus
from syncd.report.hosts.base import RestHost
from syncd.report.hosts.http import Answer, expect_object, expect_str, owner_repo, segment


class OwnerRepoHost(RestHost):
    """`/repos/{owner}/{repo}/statuses/{sha}` and `/repos/{owner}/{repo}/pulls/{number}`."""

    async def set_status(self, repository: str, sha: str, status: CommitStatus) -> None:
        owner, repo = owner_repo(repository)
        body: dict[str, str] = {
            "state": status.state.value,
            "context": status.context,
            "description": self.describe(status.description),
        }
        if status.target_url:
            body["target_url"] = status.target_url
        await self.call(
            f"status {status.context} on {repository}@{sha[:12]}",
            "POST",
            f"/repos/{owner}/{repo}/statuses/{segment(sha)}",
            body,
        )

    async def pull_head(self, repository: str, number: int) -> str:
        owner, repo = owner_repo(repository)
        operation = f"pull request {repository}#{number}"
        answer = await self.call(operation, "GET", f"/repos/{owner}/{repo}/pulls/{number}")

        def read(a: Answer) -> str:
            head = expect_object(a, operation).get("head")
            if not isinstance(head, dict):
                raise ValueError(f"{operation}: no 'head' object in the answer")
            return expect_str(head, "sha", operation)

        head: str = self.parse(operation, answer, read)
        return head
