"""What an error means to whoever asked: the HTTP status the API and the console answer with,
and whether the audit calls it a refusal or a failure. The one table of it. Pure.

The API's routes, its webhook endpoint, the console's pages and the audit lines all read it,
so the same error gets the same answer wherever it is met.
"""

from __future__ import annotations

from typing import Literal

from syncd.core.errors import (
    Conflict,
    Forbidden,
    GitError,
    NotFound,
    RevisionNotFound,
    StateUnusable,
    SyncdError,
)
from syncd.core.retry import RETRY_AFTER_SECONDS
from syncd.runs.requests import QueueFull, ShuttingDown
from syncd.service.intake import Overloaded
from syncd.service.remote_reads import Busy
from syncd.store.protocol import StoreError
from syncd.webhooks.errors import BadSignature, MalformedPayload, UnknownProvider

__all__ = ["RETRY_AFTER_SECONDS", "Verdict", "retry_later", "status_of", "verdict"]

Verdict = Literal["ok", "refused", "error"]


def status_of(exc: BaseException) -> int:
    """The HTTP status an error of syncd's becomes; 500 for anything else (a bug)."""
    if isinstance(exc, Busy):
        return 429
    if isinstance(exc, QueueFull | ShuttingDown | StoreError | Overloaded | StateUnusable):
        # locked, full; or this host's state directory cannot be written
        return 503
    if isinstance(exc, NotFound | UnknownProvider):
        return 404
    if isinstance(exc, BadSignature):
        return 401
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, MalformedPayload):
        return 400
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, GitError) and not isinstance(exc, RevisionNotFound):
        return 502  # the git remote failed us, not the caller
    if isinstance(exc, SyncdError):
        return 422
    return 500


def retry_later(status: int) -> bool:
    """Whether an answer with this status says when to try again (Retry-After)."""
    return status in (429, 503)


def verdict(status: int) -> Verdict:
    """An audit line's `result`: a caller's mistake is `refused`; syncd's or a remote's is an
    `error`."""
    return "ok" if status < 400 else "refused" if status < 500 else "error"
