"""Is a commit signed by a trusted key? `verify_commit` answers Verified or raises Unverified.

The signature's armor says its kind: SSH signatures go to `ssh-keygen -Y` (ssh_verify.py),
OpenPGP ones to GnuPG (gpg_verify.py), each against the key file `verify` names; the verdict is
the program's, never a reimplementation of the cryptography. Every program run shares one time
budget (`timeout`) and is killed when it passes. Nothing but Unverified is raised: bad input
(garbage, a huge blob, an unknown kind) is an answer, not a crash.
"""

from __future__ import annotations

import os
from pathlib import Path

from syncd.config.types import VerifyConfig
from syncd.git.gpg_verify import verify_openpgp
from syncd.git.programs import Deadline
from syncd.git.signatures import (
    MAX_SIGNATURE_BYTES,
    REASONS,
    CommitSignature,
    Reason,
    Unverified,
    Verified,
)
from syncd.git.ssh_verify import verify_ssh

__all__ = [
    "MAX_SIGNATURE_BYTES",
    "REASONS",
    "CommitSignature",
    "Reason",
    "Unverified",
    "Verified",
    "signature_kind",
    "verify_commit",
]

# What each kind of signature starts with, as `git` itself tells them apart (gpg-interface.c).
_SSH = b"-----BEGIN SSH SIGNATURE-----"
_OPENPGP = (b"-----BEGIN PGP SIGNATURE-----", b"-----BEGIN PGP MESSAGE-----")
_X509 = (b"-----BEGIN SIGNED MESSAGE-----", b"-----BEGIN PKCS7-----", b"-----BEGIN CMS-----")


def signature_kind(signature: bytes) -> str:
    """ "ssh", "openpgp" or "x509" from the armor's first line; Unverified "malformed" else."""
    head = signature.lstrip()[:64]
    if head.startswith(_SSH):
        return "ssh"
    if head.startswith(_OPENPGP):
        return "openpgp"
    if head.startswith(_X509):
        return "x509"
    raise Unverified(
        "malformed",
        "malformed signature: neither an SSH nor an OpenPGP signature (unknown format)",
    )


def verify_commit(config: VerifyConfig, signed: CommitSignature, timeout: float = 10.0) -> Verified:
    """Verified when the commit's own signature is good and made by a key `config` lists,
    valid at the commit's time; else Unverified saying why."""
    if signed.signature is None:
        raise Unverified("unsigned", "no signature: the commit is not signed")
    if len(signed.signature) > MAX_SIGNATURE_BYTES:
        raise Unverified(
            "too_large",
            f"signature too large: {len(signed.signature)} bytes, over the limit of "
            f"{MAX_SIGNATURE_BYTES}",
        )
    kind = signature_kind(signed.signature)
    deadline = Deadline(timeout)
    if kind == "ssh":
        if config.allowed_signers_file is None:
            raise Unverified(
                "unknown_key",
                "unknown key: the commit has an SSH signature, and verify names no "
                "allowed_signers_file",
            )
        _readable(config.allowed_signers_file, "allowed signers file")
        return verify_ssh(config.allowed_signers_file, signed, deadline)
    if kind == "openpgp":
        if config.gpg_keyring_file is None:
            raise Unverified(
                "unknown_key",
                "unknown key: the commit has an OpenPGP signature, and verify names no "
                "gpg_keyring_file",
            )
        _readable(config.gpg_keyring_file, "OpenPGP keyring file")
        return verify_openpgp(config.gpg_keyring_file, signed, deadline)
    raise Unverified(
        "malformed",
        "malformed signature: an X.509 (gpgsm) signature, which syncd does not verify yet",
    )


def _readable(path: Path, what: str) -> None:
    # Checked when the config loads; this is for a file removed or made unreadable since.
    if not (path.is_file() and os.access(path, os.R_OK)):
        raise Unverified("unavailable", f"the {what} {path} cannot be read")
