"""SSH commit signatures, verified by OpenSSH's own `ssh-keygen -Y` against an allowed-signers file.

As `git verify-commit` does with gpg.format=ssh: `find-principals` names who may have made the
signature (its key listed, valid at the commit's time: `-O verify-time`), then `verify` checks
the signature over the payload for that principal, in the "git" namespace. The armor is read
here only to refuse garbage early and to name the key (its SHA256 fingerprint) in messages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
import tempfile
import time
from pathlib import Path

from syncd.git.programs import Deadline, run
from syncd.git.signatures import CommitSignature, Unverified, Verified

BEGIN = b"-----BEGIN SSH SIGNATURE-----"
END = b"-----END SSH SIGNATURE-----"
NAMESPACE = "git"  # what `git commit -S` signs with under gpg.format=ssh
MAX_PRINCIPALS = 16  # lines of find-principals tried; a real file lists a key a few times at most


def verify_ssh(allowed_signers: Path, signed: CommitSignature, deadline: Deadline) -> Verified:
    assert signed.signature is not None
    key_name = fingerprint(signed.signature)  # Unverified "malformed" for garbage
    at = verify_time(signed.commit_time)
    with tempfile.TemporaryDirectory(prefix="syncd-sshsig-") as tmp:
        sig_file = Path(tmp) / "commit.sig"
        sig_file.write_bytes(signed.signature)
        found = run(
            [
                "ssh-keygen",
                "-Y",
                "find-principals",
                "-f",
                str(allowed_signers),
                "-s",
                str(sig_file),
                "-O",
                f"verify-time={at}",
            ],
            deadline,
        )
        principals = [
            line.strip()
            for line in found.stdout.decode("utf-8", "replace").splitlines()
            if line.strip()
        ][:MAX_PRINCIPALS]
        if found.returncode != 0 or not principals:
            raise _not_found(found.stderr.decode("utf-8", "replace"), key_name, signed)
        for principal in principals:
            checked = run(
                [
                    "ssh-keygen",
                    "-Y",
                    "verify",
                    "-f",
                    str(allowed_signers),
                    "-I",
                    principal,
                    "-n",
                    NAMESPACE,
                    "-s",
                    str(sig_file),
                    "-O",
                    f"verify-time={at}",
                ],
                deadline,
                stdin=signed.payload,
            )
            if checked.returncode == 0:
                return Verified(signed_by=principal, kind="ssh")
        raise Unverified(
            "bad_signature",
            f"bad signature: the SSH signature by {key_name} ({principals[0]}) does not match "
            f"the commit ({checked.said() or 'ssh-keygen refused it'})",
        )


def _not_found(said: str, key_name: str, signed: CommitSignature) -> Unverified:
    """Why find-principals named no one: ssh-keygen says when the key is listed but not valid
    at that time (`key is not yet valid`, `key has expired`); otherwise it is not listed."""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(signed.commit_time))
    if "not yet valid" in said:
        return Unverified(
            "not_yet_valid",
            f"key not valid at that time: the SSH key {key_name} is listed, but only from a "
            f"date after the commit's time ({when}; valid-after)",
        )
    if "has expired" in said:
        return Unverified(
            "expired_key",
            f"expired key: the SSH key {key_name} is listed, but only until a date before the "
            f"commit's time ({when}; valid-before)",
        )
    return Unverified(
        "unknown_key",
        f"unknown key: the SSH key {key_name} that signed the commit is not in the allowed "
        "signers file",
    )


def verify_time(epoch: int) -> str:
    """The commit's time as ssh-keygen's verify-time wants it, in UTC ("Z")."""
    return time.strftime("%Y%m%d%H%M%SZ", time.gmtime(max(epoch, 0)))


def fingerprint(armored: bytes) -> str:
    """The signing key's SHA256 fingerprint (as ssh-keygen shows it), read from the armored
    SSHSIG blob; Unverified "malformed" when the blob is not one."""
    text = armored.strip()
    if not (text.startswith(BEGIN) and text.endswith(END)):
        raise Unverified("malformed", "malformed signature: no SSH signature armor")
    body = b"".join(text[len(BEGIN) : -len(END)].split())
    try:
        blob = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise Unverified(
            "malformed", "malformed signature: the SSH signature is not base64"
        ) from None
    if not blob.startswith(b"SSHSIG"):
        raise Unverified("malformed", "malformed signature: no SSHSIG magic")
    fields = _strings(blob[10:], 5)
    version = struct.unpack(">I", blob[6:10])[0] if len(blob) >= 10 else 0
    if version != 1 or fields is None:
        raise Unverified("malformed", "malformed signature: not an SSHSIG version 1 blob")
    key, namespace = fields[0], fields[1]
    if namespace != NAMESPACE.encode():
        shown = namespace[:40].decode("utf-8", "replace")
        raise Unverified(
            "bad_signature",
            f"bad signature: made for the namespace {shown!r}, not {NAMESPACE!r}",
        )
    digest = base64.b64encode(hashlib.sha256(key).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def _strings(data: bytes, count: int) -> list[bytes] | None:
    """`count` SSH wire strings (uint32 length, bytes) from the start of data, or None."""
    out: list[bytes] = []
    pos = 0
    for _ in range(count):
        if pos + 4 > len(data):
            return None
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        pos += 4
        if pos + length > len(data):
            return None
        out.append(data[pos : pos + length])
        pos += length
    return out
