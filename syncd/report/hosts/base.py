"""The part of a host client that does not depend on the host: a call that turns every answer
but a success into a HostError (asking the subclass once to renew its credentials on a 401),
and the upsert of the one comment that carries a marker."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from syncd.config.types import ProviderConfig
from syncd.report.host import CommitStatus, HostError
from syncd.report.hosts.http import MAX_PAGES, Answer, HostHttp


class Comment:
    __slots__ = ("body", "id")

    def __init__(self, id: int, body: str) -> None:
        self.id = id
        self.body = body


class RestHost:
    """A `Host` over a REST API. Subclasses give the auth headers, the paths and the shapes."""

    MAX_COMMENT = 65536
    MAX_DESCRIPTION = 140

    def __init__(self, config: ProviderConfig, clock: Callable[[], float] = time.time) -> None:
        self._name = config.name
        self._config = config
        self._clock = clock
        self._http = HostHttp(config.name, config.api_url, config.timeout, config.ca_file, clock)

    @property
    def name(self) -> str:
        return self._name

    @property
    def max_comment(self) -> int:
        return self.MAX_COMMENT

    async def aclose(self) -> None:
        await self._http.aclose()

    # What a subclass gives.

    async def set_status(self, repository: str, sha: str, status: CommitStatus) -> None:
        raise NotImplementedError

    async def pull_head(self, repository: str, number: int) -> str:
        raise NotImplementedError

    async def _auth_headers(self) -> dict[str, str]:
        raise NotImplementedError

    def _secrets(self) -> tuple[str, ...]:
        """Every credential value in use, scrubbed from whatever text an error quotes."""
        token = self._config.token
        return (token.reveal(),) if token is not None else ()

    async def _renew(self) -> bool:
        """After a 401: drop a cached credential and say whether a new one is worth a retry."""
        return False

    async def _list_comments(
        self, repository: str, number: int, page: int
    ) -> tuple[list[Comment], bool]:
        """One page of the pull request's comments, oldest first, and whether more follow."""
        raise NotImplementedError

    async def _edit_comment(self, repository: str, number: int, id: int, body: str) -> None:
        raise NotImplementedError

    async def _create_comment(self, repository: str, number: int, body: str) -> None:
        raise NotImplementedError

    # What they share.

    async def call(
        self,
        operation: str,
        method: str,
        path: str,
        body: object = None,
        params: Mapping[str, str | int] | None = None,
        accept: Callable[[Answer], bool] | None = None,
    ) -> Answer:
        """A request whose answer is a success (2xx, or what `accept` takes), else HostError.
        A 401 is tried once more when the subclass renewed its credential (a GitHub App's
        token that was revoked or ran out early), never more."""
        renewed = False
        while True:
            headers = await self._auth_headers()
            answer = await self._http.send(
                operation, method, path, headers, body, params, self._secrets()
            )
            if 200 <= answer.status < 300 or (accept is not None and accept(answer)):
                return answer
            if answer.status == 401 and not renewed and await self._renew():
                renewed = True
                continue
            raise self._http.fail(operation, answer, self._secrets())

    def parse(self, operation: str, answer: Answer, read: Callable[[Answer], Any]) -> Any:
        """`read(answer)`, its ValueError (not JSON, not the shape) told as a HostError."""
        try:
            return read(answer)
        except ValueError as e:
            raise self._http.bad_answer(operation, answer, str(e)) from None

    async def upsert_comment(self, repository: str, number: int, marker: str, body: str) -> None:
        if len(body) > self.max_comment:
            raise HostError(
                f"provider {self._name!r}: comment on {repository}#{number}: the body has "
                f"{len(body)} characters, over the {self.max_comment} this host takes"
            )
        found = await self._find(repository, number, marker)
        if found is None:
            await self._create_comment(repository, number, body)
        elif found.body != body:
            await self._edit_comment(repository, number, found.id, body)

    async def _find(self, repository: str, number: int, marker: str) -> Comment | None:
        """The first comment that holds `marker`, looked for in at most MAX_PAGES pages: past
        that (a pull request with over a thousand comments) a new comment is made."""
        for page in range(1, MAX_PAGES + 1):
            comments, more = await self._list_comments(repository, number, page)
            for comment in comments:
                if marker in comment.body:
                    return comment
            if not more:
                return None
        return None

    def describe(self, description: str) -> str:
        """A status's description, one line, cut to what the host takes."""
        line = " ".join(description.split())
        limit = self.MAX_DESCRIPTION
        return line if len(line) <= limit else line[: limit - 1] + "…"
