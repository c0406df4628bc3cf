"""OpenPGP commit signatures, verified by GnuPG against the keys of one keyring file.

Each verification gets a private, temporary GnuPG home: the keyring file is imported there (so
an edit on disk counts at once, and no other key, trust database or agent is ever consulted),
then `gpg --verify --status-fd` checks the detached signature over the payload. The verdict is
read from gpg's machine-readable status lines (doc/DETAILS in GnuPG), never from its prose.
Every key in the file is trusted (`--trust-model always`): listing it is the trust decision.

Validity at the commit's time: the signing key (and its primary key) must have been created by
then and not expired by then. A key that has expired since is still good for commits dated
before its expiry (as git's SSH `valid-before` works); a revoked key is refused whatever the
date, since revocation says the key is not to be trusted.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from pathlib import Path

from syncd.git.programs import Deadline, Finished, run
from syncd.git.signatures import CommitSignature, Unverified, Verified

MAX_KEYRING_BYTES = 16 * 1024 * 1024
# Not from the user's environment: no options file, no agent or dirmngr started, no prompts.
_GPG = ("gpg", "--batch", "--no-tty", "--no-autostart", "--no-options")
_NO_PUBKEY = "9"  # ERRSIG's return code for a key that is not in the keyring
_UNSUPPORTED = "4"  # an unknown algorithm
_DETACHED_CLASSES = ("00", "01")  # a signature over binary or canonical text data
_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")


def verify_openpgp(keyring: Path, signed: CommitSignature, deadline: Deadline) -> Verified:
    assert signed.signature is not None
    try:
        size = keyring.stat().st_size
    except OSError as e:
        raise Unverified("unavailable", f"the OpenPGP keyring file {keyring} cannot be read") from e
    if size > MAX_KEYRING_BYTES:
        raise Unverified(
            "unavailable", f"the OpenPGP keyring file {keyring} is over {MAX_KEYRING_BYTES} bytes"
        )
    home = Path(tempfile.mkdtemp(prefix="syncd-gpg-"))  # mode 0700, as gpg wants its home
    try:
        base = [*_GPG, "--homedir", str(home)]
        imported = run([*base, "--status-fd", "1", "--import", str(keyring)], deadline)
        if not _count_imported(imported):
            raise Unverified(
                "unavailable",
                f"the OpenPGP keyring file {keyring} holds no OpenPGP public key "
                f"({imported.said() or 'gpg imported nothing'})",
            )
        sig_file = home / "commit.sig"
        sig_file.write_bytes(signed.signature)
        checked = run(
            [*base, "--trust-model", "always", "--status-fd", "1", "--verify", str(sig_file), "-"],
            deadline,
            stdin=signed.payload,
        )
        status = _status(checked)
        good = _judge(status, checked)
        signing_fpr, primary_fpr = good.validsig[0], good.validsig[-1]
        listed = run(
            [*base, "--with-colons", "--fixed-list-mode", "--list-keys", primary_fpr], deadline
        )
        _check_time(listed, signing_fpr, primary_fpr, signed.commit_time)
        return Verified(signed_by=signer_name(primary_fpr, good.user_id), kind="openpgp")
    finally:
        shutil.rmtree(home, ignore_errors=True)


def signer_name(fingerprint: str, user_id: str) -> str:
    """ "FINGERPRINT <user id>"; a user id that holds its own <e-mail> is not wrapped again."""
    if "<" in user_id and user_id.endswith(">"):
        return f"{fingerprint} {user_id}"
    return f"{fingerprint} <{user_id}>"


class _Good:
    def __init__(self, validsig: list[str], user_id: str) -> None:
        self.validsig = validsig
        self.user_id = user_id


def _status(finished: Finished) -> list[tuple[str, list[str]]]:
    out = []
    for line in finished.stdout.decode("utf-8", "replace").splitlines():
        if line.startswith("[GNUPG:] "):
            keyword, *args = line.removeprefix("[GNUPG:] ").split(" ")
            out.append((keyword, args))
    return out


def _judge(status: list[tuple[str, list[str]]], finished: Finished) -> _Good:
    """The signature's verdict from gpg's status lines; Unverified unless it is good."""
    keywords = [keyword for keyword, _ in status]
    first = {keyword: args for keyword, args in reversed(status)}
    if keywords.count("NEWSIG") != 1:
        what = "more than one signature" if "NEWSIG" in keywords else "no OpenPGP signature"
        raise Unverified("malformed", f"malformed signature: {what} in the armor")
    if "PLAINTEXT" in keywords:
        # A signed message carries its own data: it says nothing about this commit.
        raise Unverified("malformed", "malformed signature: not a detached OpenPGP signature")
    if "ERRSIG" in first:
        args = first["ERRSIG"]
        key = args[6] if len(args) > 6 and args[6] != "-" else args[0]
        if len(args) > 5 and args[5] == _NO_PUBKEY:
            raise Unverified(
                "unknown_key",
                f"unknown key: the OpenPGP key {key} that signed the commit is not in the "
                "keyring file",
            )
        if len(args) > 5 and args[5] == _UNSUPPORTED:
            raise Unverified("malformed", "malformed signature: an algorithm gpg does not support")
        raise Unverified("bad_signature", f"bad signature: gpg cannot check it (key {key})")
    if "BADSIG" in first:
        key = first["BADSIG"][0] if first["BADSIG"] else "?"
        raise Unverified(
            "bad_signature",
            f"bad signature: the OpenPGP signature by key {key} does not match the commit",
        )
    valid = first.get("VALIDSIG")
    if valid is None or len(valid) < 9:
        raise Unverified("bad_signature", "bad signature: gpg did not find it valid")
    if valid[8] not in _DETACHED_CLASSES:
        raise Unverified(
            "bad_signature", f"bad signature: signature class {valid[8]}, not a data signature"
        )
    if "REVKEYSIG" in first:
        raise Unverified(
            "revoked_key",
            f"revoked key: the OpenPGP key {valid[-1]} that signed the commit has been revoked",
        )
    if "EXPSIG" in first:
        raise Unverified("bad_signature", "bad signature: the signature itself has expired")
    # GOODSIG, or EXPKEYSIG: good, by a key expired now (judged at the commit's time below).
    named = first.get("GOODSIG") or first.get("EXPKEYSIG")
    if named is None:
        raise Unverified("bad_signature", "bad signature: gpg did not find it good")
    return _Good(valid, _unescape(" ".join(named[1:])))


def _check_time(listed: Finished, signing: str, primary: str, commit_time: int) -> None:
    """The signing key and its primary key were created by the commit's time and had not
    expired by then (from `--list-keys --with-colons`: fields 6 and 7 of pub/sub records)."""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(commit_time))
    records = [line.split(":") for line in listed.stdout.decode("utf-8", "replace").splitlines()]
    wanted = {signing, primary}
    for i, fields in enumerate(records):
        if fields[0] not in ("pub", "sub") or i + 1 >= len(records):
            continue
        fpr = records[i + 1][9] if records[i + 1][0] == "fpr" and len(records[i + 1]) > 9 else ""
        if fpr not in wanted or len(fields) < 7:
            continue
        created, expires = _epoch(fields[5]), _epoch(fields[6])
        if created is not None and commit_time < created:
            raise Unverified(
                "not_yet_valid",
                f"key not valid at that time: the OpenPGP key {fpr} was made after the commit's "
                f"time ({when})",
            )
        if expires is not None and commit_time >= expires:
            raise Unverified(
                "expired_key",
                f"expired key: the OpenPGP key {fpr} had expired by the commit's time ({when})",
            )
        wanted.discard(fpr)
    if wanted:
        raise Unverified("bad_signature", "bad signature: gpg did not list the signing key")


def _count_imported(finished: Finished) -> int:
    for keyword, args in _status(finished):
        if keyword == "IMPORT_RES" and args and args[0].isdigit():
            return int(args[0])
    return 0


def _epoch(field: str) -> int | None:
    return int(field) if field.isdigit() else None


def _unescape(text: str) -> str:
    """A status line's %XX escapes undone, and nothing unprintable in what is shown."""
    raw = _ESCAPE.sub(lambda m: bytes([int(m[1], 16)]), text.encode("utf-8"))
    shown = raw.decode("utf-8", "replace")
    return "".join(c if c.isprintable() else "?" for c in shown)[:200]
