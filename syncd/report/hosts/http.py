"""What the three host clients share: one https client per host, its trust, bounded answers, and
the mapping of every failure to one `HostError` that names the provider, the operation, the
HTTP status and the host's own words (cut short, control characters removed), never a secret.

A client does not retry: the reporter retries with back-off, so a failure here is reported once,
with `transient` telling whether trying again can help and `retry_after` what the host asked.
"""

from __future__ import annotations

import json
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from syncd.core.errors import GitError
from syncd.git.tls import default_cafile, read_ca_file
from syncd.report.host import HostError

MAX_ANSWER = 4 * 1024 * 1024  # an answer longer than this is refused, not read on
MAX_MESSAGE = 200  # characters of the host's own message an error carries
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def trust(ca_file: Path | None) -> ssl.SSLContext:
    """The system's CAs (or SSL_CERT_FILE, as git sources trust them) plus `ca_file` when set."""
    default = default_cafile()
    ctx = ssl.create_default_context(cafile=str(default) if default else None)
    if ca_file is not None:
        try:
            pem = read_ca_file(ca_file)
        except GitError as e:  # the same check sources make, told as a host's error
            raise HostError(str(e)) from e
        ctx.load_verify_locations(cadata=pem.decode("ascii"))
    return ctx


def clean(text: str, secrets: tuple[str, ...] = (), limit: int = MAX_MESSAGE) -> str:
    """A stranger's text fit for an error message: no secret, no control character, short."""
    for secret in secrets:
        # As it is, and as a repr or an escaped string would show it (`\\n` for a newline).
        for form in {secret, secret.strip(), repr(secret)[1:-1]}:
            if form:
                text = text.replace(form, "[secret]")
    text = _CONTROL.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def segment(value: str) -> str:
    """One path segment, encoded so that a `/` or `?` in a value cannot change the path."""
    return quote(value, safe="")


def owner_repo(repository: str) -> tuple[str, str]:
    """`owner/name` as GitHub and Gitea take it, each part encoded."""
    parts = repository.split("/")
    if len(parts) != 2 or not all(parts):
        raise HostError(f"repository {repository!r} is not of the form owner/name")
    return segment(parts[0]), segment(parts[1])


@dataclass(frozen=True)
class Answer:
    status: int
    headers: httpx.Headers
    body: bytes

    def json(self, what: str) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise ValueError(f"{what}: the answer is not JSON ({e})") from e


class HostHttp:
    """One host's https client: created on first use, closed by `aclose`."""

    def __init__(
        self,
        provider: str,
        api_url: str,
        timeout: float,
        ca_file: Path | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if urlsplit(api_url).scheme != "https":
            raise HostError(f"provider {provider!r}: api_url must be https://, not {api_url!r}")
        self.provider = provider
        self.base = api_url.rstrip("/")
        self.timeout = timeout
        self.ca_file = ca_file
        self.clock = clock
        self._client: httpx.AsyncClient | None = None
        self._trust: ssl.SSLContext | None = None  # loading the system CAs takes ~50 ms: once

    def _get_client(self) -> httpx.AsyncClient:
        if self._client is None:
            if self._trust is None:
                self._trust = trust(self.ca_file)
            self._client = httpx.AsyncClient(
                verify=self._trust,
                timeout=self.timeout,
                follow_redirects=False,
                headers={"User-Agent": "syncd"},
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(
        self,
        operation: str,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: object = None,
        params: Mapping[str, str | int] | None = None,
        secrets: tuple[str, ...] = (),
    ) -> Answer:
        """One request; the answer whatever its status (see `fail` for turning one into an
        error), read up to MAX_ANSWER. A network failure or timeout is a transient HostError."""
        client = self._get_client()
        content = None if body is None else json.dumps(body).encode()
        sent = dict(headers)
        if content is not None:
            sent["Content-Type"] = "application/json"
        try:
            async with client.stream(
                method, self.base + path, headers=sent, content=content, params=params
            ) as response:
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > MAX_ANSWER:
                    raise self._too_large(operation, response.status_code)
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_ANSWER:
                        raise self._too_large(operation, response.status_code)
                    chunks.append(chunk)
                return Answer(response.status_code, response.headers, b"".join(chunks))
        except httpx.TimeoutException as e:
            raise HostError(
                f"provider {self.provider!r}: {operation}: no answer within {self.timeout:g} s "
                f"({type(e).__name__})",
                transient=True,
            ) from None
        except httpx.LocalProtocolError as e:
            # Its message may quote a header as sent, credentials included: the type only.
            raise HostError(
                f"provider {self.provider!r}: {operation}: the request could not be sent"
                f" ({type(e).__name__}: a header or URL syncd made is not valid HTTP)"
            ) from None
        except httpx.HTTPError as e:
            raise HostError(
                f"provider {self.provider!r}: {operation}: "
                f"{clean(f'{type(e).__name__}: {e}', secrets)}",
                transient=True,
            ) from None

    def _too_large(self, operation: str, status: int) -> HostError:
        return HostError(
            f"provider {self.provider!r}: {operation}: HTTP {status}: the answer is over "
            f"{MAX_ANSWER // (1024 * 1024)} MiB, not read"
        )

    def fail(self, operation: str, answer: Answer, secrets: tuple[str, ...] = ()) -> HostError:
        """The HostError an answer that is not a success makes."""
        status = answer.status
        message = clean(host_message(answer.body), secrets)
        retry_after = self.retry_after(answer)
        rate_limited = status == 403 and (
            answer.headers.get("x-ratelimit-remaining") == "0" or retry_after is not None
        )
        transient = status in (408, 409, 429) or status >= 500 or rate_limited
        text = f"provider {self.provider!r}: {operation}: HTTP {status}"
        if message:
            text += f": {message}"
        return HostError(text, transient=transient, retry_after=retry_after if transient else None)

    def retry_after(self, answer: Answer) -> float | None:
        """Seconds the host asked to wait: Retry-After (seconds or an HTTP date), else GitHub's
        x-ratelimit-reset (epoch seconds) when the rate limit is spent."""
        value = answer.headers.get("retry-after", "").strip()
        if value.isdigit():
            return float(value)
        if value:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - self.clock())
            except (TypeError, ValueError):
                pass
        reset = answer.headers.get("x-ratelimit-reset", "").strip()
        if answer.headers.get("x-ratelimit-remaining") == "0" and reset.isdigit():
            return max(0.0, float(reset) - self.clock())
        return None

    def bad_answer(self, operation: str, answer: Answer, why: str) -> HostError:
        """An answer of success whose body is not what the API describes."""
        return HostError(
            f"provider {self.provider!r}: {operation}: HTTP {answer.status}: unexpected answer: "
            f"{clean(why)}"
        )


def host_message(body: bytes) -> str:
    """The host's own words: `message` (GitHub, Gitea, GitLab) or `error` (GitLab) of a JSON
    answer, else the start of the text."""
    text = body[: MAX_MESSAGE * 8].decode("utf-8", "replace")
    try:
        doc = json.loads(body)
    except ValueError:
        return text
    if isinstance(doc, dict):
        for key in ("message", "error", "error_description"):
            value = doc.get(key)
            if isinstance(value, str | dict | list) and value:
                return value if isinstance(value, str) else json.dumps(value)[: MAX_MESSAGE * 2]
    return text


def expect_object(answer: Answer, what: str) -> dict[str, Any]:
    """The answer's JSON object, or ValueError naming what was wrong."""
    doc = answer.json(what)
    if not isinstance(doc, dict):
        raise ValueError(f"{what}: expected a JSON object, got {type(doc).__name__}")
    return doc


def expect_list(answer: Answer, what: str) -> list[dict[str, Any]]:
    doc = answer.json(what)
    if not isinstance(doc, list) or not all(isinstance(item, dict) for item in doc):
        raise ValueError(f"{what}: expected a JSON list of objects")
    return doc


def expect_str(doc: Mapping[str, Any], key: str, what: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what}: no {key!r} string in the answer")
    return value


def expect_int(doc: Mapping[str, Any], key: str, what: str) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{what}: no {key!r} integer in the answer")
    return value


MAX_PAGES = 10  # comment pages read to find the marker (100 a page): bounded on a busy pull
PER_PAGE = 100
