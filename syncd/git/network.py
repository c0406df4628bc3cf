"""One network operation on a remote (ls-remote, fetch, push): trust, credentials, timeouts,
and the few quick attempts of `retry.GIT_ATTEMPT`, each observed (metrics) and each failure
classified (transient, authentication, TLS, not found, a broken mirror).

Only https remotes; the password reaches libgit2 only through the credentials callback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import pygit2

from syncd.core import retry
from syncd.core.errors import AuthError, GitError, TransientGitError
from syncd.core.urls import redact_url
from syncd.git.failures import classify, is_local, is_local_os_failure
from syncd.git.mirrors import CorruptMirror, local_failure
from syncd.git.remote import Remote, credentials, scrub
from syncd.git.tls import Trust, diagnose_tls
from syncd.ops.logs import fields

# The git source's logger, as before this module was split from it.
log = logging.getLogger("syncd.git.source")

GitObserver = Callable[[str, str, float], None]
"""Called once per network attempt: (op: ls_remote|fetch|push, result: ok|error|local_error,
seconds); `local_error`: this host's state directory failed (see LocalFailure), not the remote."""

T = TypeVar("T")


class Network:
    def __init__(
        self,
        trust: Trust,
        observer: GitObserver | None,
        attempt_policy: retry.Policy,
        on_auth_failure: Callable[[], None] | None = None,
    ) -> None:
        self._trust = trust
        # Told before an AuthError is raised: a rotated credential file may be read again.
        self.on_auth_failure = on_auth_failure
        self._observer = observer
        self._policy = attempt_policy

    def run(
        self,
        op: str,
        remote: Remote,
        call: Callable[[pygit2.RemoteCallbacks], T],
        mirror: Path | None = None,
    ) -> T:
        """`call` with the remote's callbacks, attempted again on a transient failure."""
        if urlsplit(remote.url).scheme.lower() != "https":
            raise GitError(f"{op} {redact_url(remote.url)}: only https remotes are supported")

        def on_retry(attempt: int, error: BaseException | None) -> None:
            log.info(
                "git retry",
                extra=fields(op=op, url=redact_url(remote.url), attempt=attempt, error=error),
            )

        retrying = retry.attempts(
            self._policy, lambda e: isinstance(e, TransientGitError), on_retry
        )
        try:
            result: T = retrying(self._attempt, op, remote, call, mirror)
        except AuthError:
            if self.on_auth_failure is not None:
                try:
                    self.on_auth_failure()
                except Exception:
                    log.exception("auth failure hook failed", extra=fields(op=op))
            raise
        except TransientGitError as e:
            tries = max(1, self._policy.attempts)
            raise TransientGitError(f"{e} (gave up after {tries} attempts)") from e
        return result

    def _attempt(
        self,
        op: str,
        remote: Remote,
        call: Callable[[pygit2.RemoteCallbacks], T],
        mirror: Path | None,
    ) -> T:
        bundle = self._trust.prepare(remote.ca_file)
        callbacks = _Callbacks(op, remote)
        started = time.monotonic()
        try:
            result = call(callbacks)
        except AuthError:
            self._observe(op, "error", started)
            raise
        except (pygit2.GitError, ValueError) as e:
            elapsed = time.monotonic() - started
            if mirror is not None and is_local_os_failure(str(e)):
                # The mirror could not be written (read-only, full): this host's failure.
                self._observe(op, "local_error", started)
                raise local_failure(mirror, scrub(str(e), remote)) from e
            self._observe(op, "error", started)
            if op == "fetch" and is_local(e):
                raise CorruptMirror(str(e)) from e
            timeout = self._trust.timeout
            raise classify(
                f"{op} {redact_url(remote.url)}",
                e,
                scrub(str(e).strip().strip("'\""), remote),
                lambda: diagnose_tls(remote.url, bundle, timeout),
                timeout,
                elapsed,
            ) from e
        self._observe(op, "ok", started)
        return result

    def local_failure(self, op: str) -> None:
        """An operation that failed on this host before reaching the network (its mirror could
        not be opened): counted as `local_error`, never as the remote's error."""
        self._observe(op, "local_error", time.monotonic())

    def _observe(self, op: str, result: str, started: float) -> None:
        if self._observer is None:
            return
        try:
            self._observer(op, result, time.monotonic() - started)
        except Exception:
            log.exception("git observer failed", extra=fields(op=op))


class _Callbacks(pygit2.RemoteCallbacks):
    def __init__(self, op: str, remote: Remote) -> None:
        super().__init__()
        self._op = op
        self._remote = remote
        self._calls = 0
        self.refused: dict[str, str] = {}  # ref -> the remote's reason, from a push

    def credentials(
        self, url: str, username_from_url: str | None, allowed_types: pygit2.enums.CredentialType
    ) -> pygit2.UserPass:
        # libgit2 asks again, for ever, each time the server answers 401: a second call within
        # one operation means the remote rejected what we sent.
        self._calls += 1
        where = f"{self._op} {redact_url(self._remote.url)}"
        user, password = credentials(self._remote)
        if user is None or password is None:
            raise AuthError(f"{where}: the remote requires credentials and none are configured")
        if self._calls > 1:
            raise AuthError(f"{where}: the remote rejected the credentials of user {user!r}")
        return pygit2.UserPass(user, password)

    def push_update_reference(self, refname: str, message: str | None) -> None:
        # libgit2 reports success only through a missing message: keep the refusals.
        if message:
            self.refused[refname] = scrub(message, self._remote)
