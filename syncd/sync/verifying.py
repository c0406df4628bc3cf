"""The verify phase of a sync (between fetch and read): with `verify`, the commit about to be
applied must carry a good signature by a listed key, or the run fails and applies nothing.

Not pure: it reads the commit's signature from the mirror (through the `GitReader`) and
`syncd.git.verify.verify_commit` runs one verifying process (ssh-keygen or gpg), reading the
key files at each call, so a key file edited on disk counts at the next check. It writes
nothing to the store.

Only the commit itself is checked, never its parents: a merge commit signed by a listed key is
applied whatever the commits it merges carry (docs/operations.md, "Require signed commits").
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from syncd.config import WorkspaceConfig
from syncd.config.types import VerifyConfig
from syncd.git.signatures import CommitSignature, Unverified, Verified
from syncd.git.verify import verify_commit
from syncd.ops.logs import fields
from syncd.sync.resolving import GitReader, remote_for

log = logging.getLogger("syncd.engine")

# Reasons a refusal is worth another try at the same commit: the verifying process took too
# long (a loaded machine), or could not run or read a key file; nothing the commit carries.
TRANSIENT_REASONS = frozenset({"timeout", "unavailable"})

Verify = Callable[[VerifyConfig, CommitSignature], Verified]


def permanent(error: Unverified) -> bool:
    """Whether another attempt at the same commit is refused again (the commit waits for a new
    one, as a bad step file does)."""
    return error.reason not in TRANSIENT_REASONS


class Verifier:
    """Checks commits for workspaces with `verify`; tells `on_failure(workspace, reason)` of
    each refusal (the metric `syncd_verify_failures_total`)."""

    def __init__(
        self,
        verify: Verify = verify_commit,
        on_failure: Callable[[str, str], None] | None = None,
    ) -> None:
        self.verify = verify
        self.on_failure = on_failure

    def check(
        self, git: GitReader, ws: WorkspaceConfig, commit: str, quiet: bool = False
    ) -> str | None:
        """Who signed `commit` (it is in the mirror), or None when the workspace verifies
        nothing. Raises `Unverified` when the signature is missing, bad or not trusted.
        `quiet`: a preview's check (a stranger's pull request), neither a warning nor counted
        as the workspace's refusal."""
        if ws.verify is None:
            return None
        try:
            signed = git.commit_signature(remote_for(ws), commit)  # Unverified when too large
            return self.verify(ws.verify, signed).signed_by
        except Unverified as e:
            log.log(
                logging.INFO if quiet else logging.WARNING,
                "commit not verified",
                extra=fields(workspace=ws.id, revision=commit[:12], reason=e.reason, error=str(e)),
            )
            if self.on_failure is not None and not quiet:
                self.on_failure(ws.id, e.reason)
            raise
