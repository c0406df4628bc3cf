"""A commit's own signature, read with pygit2, and what verifying it may answer.

`commit_signature` reads the `gpgsig` header and the signed payload (the commit object without
that header) as git itself verifies them; `verify.verify_commit` judges them. The types here
(CommitSignature, Verified, Unverified) are pure; only `commit_signature` reads a repository.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import pygit2

from syncd.core.errors import GitError, SyncdError

# A signature is a few hundred bytes (SSH, OpenPGP) to a few KiB (a long certificate chain): one
# over this is refused before any verifying program reads it.
MAX_SIGNATURE_BYTES = 64 * 1024
# A commit object (headers, signature, message) over this is refused from its object header,
# before it is inflated: the payload is handed whole to the verifying program.
MAX_COMMIT_BYTES = 1024 * 1024

Reason = Literal[
    "unsigned",
    "bad_signature",
    "unknown_key",
    "not_yet_valid",
    "expired_key",
    "revoked_key",
    "malformed",
    "too_large",
    "timeout",
    # An addition to the interface: the verifying program (ssh-keygen, gpg) is missing or failed
    # in a way that says nothing about the signature, or a key file could not be read.
    "unavailable",
]
REASONS: tuple[Reason, ...] = get_args(Reason)
Kind = Literal["ssh", "openpgp"]


class Unverified(SyncdError):
    """The commit is not applied: its signature is missing, bad, or not by a trusted key.

    str(e) starts with "unverified: " and says why; `reason` is one of REASONS (a metric label)."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"unverified: {detail}")
        self.reason: Reason = reason


@dataclass(frozen=True)
class Verified:
    signed_by: str  # SSH: the principal; OpenPGP: "FINGERPRINT <user id>"
    kind: Kind


@dataclass(frozen=True)
class CommitSignature:
    signature: bytes | None  # None: the commit is not signed
    payload: bytes  # the signed data (the commit object without its gpgsig header)
    commit_time: int  # committer time, seconds since the epoch


def commit_signature(repo: pygit2.Repository, sha: str) -> CommitSignature:
    """The signature and signed payload of commit `sha` (a full sha) in `repo`.

    Raises Unverified ("too_large") for a commit object over MAX_COMMIT_BYTES, GitError when
    `sha` names no commit there."""
    try:
        oid = pygit2.Oid(hex=sha)
        size = repo.odb.read_header(oid)[1]
    except (ValueError, KeyError, pygit2.GitError) as e:
        raise GitError(f"commit {sha!r} not found: {e}") from e
    if size > MAX_COMMIT_BYTES:
        raise Unverified(
            "too_large",
            f"commit {sha[:12]} is {size} bytes, over the limit of {MAX_COMMIT_BYTES} for a "
            "signed commit",
        )
    commit = repo[oid]
    if not isinstance(commit, pygit2.Commit):
        raise GitError(f"object {sha!r} is not a commit")
    signature, payload = commit.gpg_signature
    return CommitSignature(
        signature=signature if signature else None,
        payload=payload if payload is not None else commit.read_raw(),
        commit_time=int(commit.commit_time),
    )
