"""Every error syncd raises on purpose derives from SyncdError.

Only the CLI turns these into exit codes, and only the API into status codes.
Messages name the thing and the value, never a secret.
"""


class SyncdError(Exception):
    """Base of syncd's own errors."""


class ConfigError(SyncdError):
    """The configuration is invalid: the message names the file, the key and the value."""


class StateUnusable(SyncdError):
    """The state directory (or the store's folder) cannot be written: a setup error."""


LOCAL_FAILURE = "local failure: "  # how a LocalFailure's message begins (runs keep only text)


class LocalFailure(StateUnusable):
    """This host failed, not the remote: the state directory or its disk (read-only, full,
    not a directory) could not take a mirror's files. Never a GitError: health, metrics
    (`result="local_error"`) and alerts tell it apart from a remote that fails."""

    def __init__(self, message: str) -> None:
        super().__init__(message if message.startswith(LOCAL_FAILURE) else LOCAL_FAILURE + message)


def is_local_failure(error: str | None) -> bool:
    """Whether a run's recorded error was this host's, not the remote's (see LocalFailure)."""
    return bool(error) and str(error).startswith(LOCAL_FAILURE)


class StepFileError(SyncdError):
    """A step file in the repository is invalid: the message names the file(s).

    Permanent for a given commit: retrying the same commit cannot help.
    """


class PlanRefused(SyncdError):
    """A guard refused the plan (for example, it would delete every step)."""


class GitError(SyncdError):
    """A git operation failed."""


class TransientGitError(GitError):
    """Connection refused, timeout, 5xx: worth retrying with backoff."""


class AuthError(GitError):
    """The remote refused the credentials: never retried."""


class RevisionNotFound(GitError):
    """A branch or commit does not exist on the remote."""


class NotFound(SyncdError):
    """A workspace, run or step that does not exist."""


class Forbidden(SyncdError):
    """The caller may see the workspace but not act on it as asked (a scope it lacks there)."""


class Conflict(SyncdError):
    """The request conflicts with the current state (for example a non-fast-forward push)."""


class PathNotFound(StepFileError):
    """The workspace's path does not exist at the commit."""


class RevisionNotOnBranch(RevisionNotFound):
    """A pinned commit exists, but not on the workspace's branch (only on another branch that
    shares the mirror): refused, as a commit no one reviewed for this workspace."""
