"""What a libgit2 failure means: transient (retry), authentication, TLS, not found, or other.

libgit2 reports most failures as a GitError with a message and no code, so the message is read.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pygit2

from syncd.core.errors import AuthError, GitError, TransientGitError

_TRANSIENT = (
    "failed to connect",
    "connection refused",
    "connection reset",
    "connection closed",
    "connection aborted",
    "broken pipe",
    "timed out",
    "timeout",
    "resource temporarily unavailable",
    "ssl error: syscall failure",
    "unexpected eof",
    "early eof",
    "failed to resolve address",
    "network is unreachable",
    "no route to host",
    "failed to receive",
    "failed to send",
    "could not read from remote repository",  # libgit2's network-read error
)

# libgit2's own check, and the reasons a server's receive-pack gives.
NOT_FAST_FORWARD = re.compile(
    r"non-fast-?forward|not present locally|fetch first|stale info|cannot lock ref", re.I
)


def classify(
    where: str,
    e: BaseException,
    message: str,
    diagnose_tls: Callable[[], str],
    timeout: float,
    elapsed: float = 0.0,
) -> GitError:
    """The syncd error for `e`, raised by one network attempt.

    `where` names the operation and the redacted URL, `message` is e's text with the password
    scrubbed, and `diagnose_tls` says why a certificate was rejected (it connects again)."""
    lowered = message.lower()
    if isinstance(e, pygit2.CertificateError) or "certificate" in lowered:
        return GitError(
            f"{where}: TLS certificate rejected ({diagnose_tls()}); trusted are the system bundle "
            "and each configured ca_file"
        )
    status = re.search(r"unexpected http status code: (\d{3})", lowered)
    code = int(status.group(1)) if status else None
    if code in (401, 403) or "authentication replays" in lowered:
        return AuthError(f"{where}: the remote refused access ({message})")
    if code == 404:
        return GitError(f"{where}: repository not found (HTTP 404)")
    if (code is not None and code >= 500) or code in (408, 429):
        return TransientGitError(f"{where}: server error (HTTP {code})")
    if lowered.startswith("ssl error: syscall failure") or "temporarily unavailable" in lowered:
        # libgit2 says the same words for a stall and for a dropped connection: the time the
        # attempt took tells them apart.
        if elapsed >= timeout * 0.9:
            return TransientGitError(f"{where}: timed out: no answer within {timeout:g}s")
        return TransientGitError(f"{where}: the remote closed the connection without an answer")
    if any(marker in lowered for marker in _TRANSIENT):
        return TransientGitError(f"{where}: {message or type(e).__name__}")
    return GitError(f"{where}: {message or type(e).__name__}")


# What libgit2 appends (strerror) when this host's files fail it: a mirror that cannot be written.
_LOCAL_OS = (
    "permission denied",
    "read-only file system",
    "no space left on device",
    "disk quota exceeded",
    "not a directory",
    "file exists",
    "too many open files",
)


def is_local_os_failure(message: str) -> bool:
    """A failure of the state directory or its disk (read-only, full, a file where a folder
    belongs), told apart by the OS error libgit2 quotes; never an HTTP status."""
    lowered = message.lower()
    return "http status" not in lowered and any(m in lowered for m in _LOCAL_OS)


def is_local(e: BaseException) -> bool:
    """An error from our own object store rather than from the remote."""
    lowered = str(e).lower()
    return isinstance(e, KeyError) or any(
        marker in lowered for marker in ("object not found", "corrupt")
    )
