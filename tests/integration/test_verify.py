"""Commit signatures (issue #23), verified for real: keys made by ssh-keygen and gpg, commits signed
by `git commit -S` in a local repository, read with pygit2, judged by `ssh-keygen -Y` and GnuPG.

Every refusal is an Unverified whose message starts "unverified:" and whose reason says why;
nothing else is ever raised, whatever the signature blob holds."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pygit2
import pytest

from syncd.config.types import VerifyConfig
from syncd.git import GitSource, Remote
from syncd.git.signatures import MAX_COMMIT_BYTES, CommitSignature, commit_signature
from syncd.git.verify import REASONS, Unverified, Verified, verify_commit
from tests.support import GitServer, WorkTree
from tests.support.signing import (
    EXPIRED_SIGNED_EPOCH,
    GpgSigner,
    SshSigner,
    forge_commit,
    git_commit,
    init_workdir,
    raw_commit,
    write_allowed_signers,
    write_file,
)

pytestmark = pytest.mark.timeout(120)


@dataclass
class Keys:
    ed25519: SshSigner
    rsa: SshSigner
    stranger: SshSigner  # not in the allowed signers file
    retired: SshSigner  # listed only until 2020 (valid-before)
    future: SshSigner  # listed only from 2100 (valid-after)
    gpg: GpgSigner
    gpg_stranger: GpgSigner  # not in the keyring
    gpg_expired: GpgSigner  # expired in 2020
    allowed: Path
    keyring: Path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    tmp = tmp_path_factory.mktemp("keys")
    ed, rsa = SshSigner(tmp, "ed25519"), SshSigner(tmp, "rsa")
    retired, future = SshSigner(tmp), SshSigner(tmp)
    allowed = write_allowed_signers(
        tmp / "allowed_signers",
        ed.allowed_signers("dev@example.com"),
        rsa.allowed_signers("rsa@example.com"),
        retired.allowed_signers("old@example.com", valid_before="20200101Z"),
        future.allowed_signers("new@example.com", valid_after="21000101Z"),
    )
    gpg, expired = GpgSigner(tmp), GpgSigner.expired(tmp)
    keyring = tmp / "trusted.asc"
    keyring.write_bytes(gpg.public_key() + expired.public_key())
    return Keys(
        ed, rsa, SshSigner(tmp), retired, future, gpg, GpgSigner(tmp), expired, allowed, keyring
    )


@pytest.fixture
def work(tmp_path: Path) -> Path:
    work = init_workdir(tmp_path / "work")
    write_file(work, "export/steps/a.step.json", "{}")
    git_commit(work, "initial")
    return work


def _read(work: Path, sha: str) -> CommitSignature:
    return commit_signature(pygit2.Repository(str(work)), sha)


def _verify(keys: Keys, work: Path, sha: str, timeout: float = 30.0) -> Verified:
    return verify_commit(VerifyConfig(keys.allowed, keys.keyring), _read(work, sha), timeout)


def _refused(keys: Keys, work: Path, sha: str, reason: str) -> str:
    with pytest.raises(Unverified) as refused:
        _verify(keys, work, sha)
    assert refused.value.reason == reason, str(refused.value)
    assert str(refused.value).startswith("unverified: ")
    return str(refused.value)


# -- reading the signature -----------------------------------------------------------------


def test_the_signature_and_payload_are_what_git_signed(keys: Keys, work: Path) -> None:
    sha = keys.ed25519.sign_commit(work, "signed", date=1700000000)
    signed = _read(work, sha)
    assert signed.signature is not None
    assert signed.signature.startswith(b"-----BEGIN SSH SIGNATURE-----")
    assert b"gpgsig" not in signed.payload and signed.payload.endswith(b"\n\nsigned\n")
    assert signed.commit_time == 1700000000


def test_an_unsigned_commit_has_no_signature_and_is_refused(keys: Keys, work: Path) -> None:
    sha = git_commit(work, "not signed")
    assert _read(work, sha).signature is None
    assert "no signature" in _refused(keys, work, sha, "unsigned")


def test_a_commit_object_over_the_limit_is_refused_unread(work: Path) -> None:
    sha = raw_commit(work, None, "x" * (MAX_COMMIT_BYTES + 1))
    with pytest.raises(Unverified) as refused:
        _read(work, sha)
    assert refused.value.reason == "too_large"


# -- SSH -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "principal"), [("ed25519", "dev"), ("rsa", "rsa")])
def test_a_listed_ssh_key_is_verified(keys: Keys, work: Path, key: str, principal: str) -> None:
    signer: SshSigner = getattr(keys, key)
    sha = signer.sign_commit(work, f"signed with {key}")
    assert _verify(keys, work, sha) == Verified(f"{principal}@example.com", "ssh")


def test_an_unlisted_ssh_key_is_an_unknown_key(keys: Keys, work: Path) -> None:
    message = _refused(keys, work, keys.stranger.sign_commit(work), "unknown_key")
    assert "SHA256:" in message and "not in the allowed signers file" in message


def test_a_key_past_its_valid_before_is_expired_at_the_commits_time(keys: Keys, work: Path) -> None:
    message = _refused(keys, work, keys.retired.sign_commit(work), "expired_key")
    assert "valid-before" in message
    # The same key, for a commit dated while it was valid: good.
    sha = keys.retired.sign_commit(work, "old", date=1500000000)
    assert _verify(keys, work, sha).signed_by == "old@example.com"


def test_a_key_before_its_valid_after_is_not_yet_valid(keys: Keys, work: Path) -> None:
    assert "valid-after" in _refused(keys, work, keys.future.sign_commit(work), "not_yet_valid")


def test_a_tampered_ssh_commit_is_a_bad_signature(keys: Keys, work: Path) -> None:
    forged = forge_commit(work, keys.ed25519.sign_commit(work, "reviewed"), "not reviewed")
    assert "does not match the commit" in _refused(keys, work, forged, "bad_signature")


def test_an_ssh_signature_with_no_allowed_signers_file_names_the_key_missing(
    keys: Keys, work: Path
) -> None:
    signed = _read(work, keys.ed25519.sign_commit(work))
    with pytest.raises(Unverified, match="names no allowed_signers_file") as refused:
        verify_commit(VerifyConfig(None, keys.keyring), signed)
    assert refused.value.reason == "unknown_key"


def test_an_allowed_signers_file_edited_on_disk_counts_at_once(
    keys: Keys, work: Path, tmp_path: Path
) -> None:
    allowed = write_allowed_signers(tmp_path / "allowed", keys.rsa.allowed_signers())
    signed = _read(work, keys.ed25519.sign_commit(work))
    with pytest.raises(Unverified, match="unknown key"):
        verify_commit(VerifyConfig(allowed, None), signed)
    write_allowed_signers(allowed, keys.ed25519.allowed_signers("later@example.com"))
    assert verify_commit(VerifyConfig(allowed, None), signed).signed_by == "later@example.com"


def test_a_removed_key_file_is_refused_not_raised(keys: Keys, work: Path, tmp_path: Path) -> None:
    signed = _read(work, keys.ed25519.sign_commit(work))
    with pytest.raises(Unverified, match="cannot be read") as refused:
        verify_commit(VerifyConfig(tmp_path / "gone", None), signed)
    assert refused.value.reason == "unavailable"


# -- OpenPGP ---------------------------------------------------------------------------------


def test_a_listed_openpgp_key_is_verified(keys: Keys, work: Path) -> None:
    verified = _verify(keys, work, keys.gpg.sign_commit(work))
    assert verified == Verified(f"{keys.gpg.fingerprint} {keys.gpg.uid}", "openpgp")


def test_a_binary_keyring_works_as_an_armored_one(keys: Keys, work: Path, tmp_path: Path) -> None:
    keyring = keys.gpg.write_keyring(tmp_path / "trusted.gpg", armor=False)
    signed = _read(work, keys.gpg.sign_commit(work))
    assert verify_commit(VerifyConfig(None, keyring), signed).kind == "openpgp"


def test_an_openpgp_key_not_in_the_keyring_is_unknown(keys: Keys, work: Path) -> None:
    message = _refused(keys, work, keys.gpg_stranger.sign_commit(work), "unknown_key")
    assert keys.gpg_stranger.fingerprint in message


def test_a_tampered_openpgp_commit_is_a_bad_signature(keys: Keys, work: Path) -> None:
    forged = forge_commit(work, keys.gpg.sign_commit(work, "reviewed"), "not reviewed")
    _refused(keys, work, forged, "bad_signature")


def test_an_expired_key_is_refused_for_a_commit_after_its_expiry(keys: Keys, work: Path) -> None:
    message = _refused(keys, work, keys.gpg_expired.sign_commit(work), "expired_key")
    assert keys.gpg_expired.fingerprint in message
    # Dated while the key was valid: good, as git's SSH valid-before works.
    sha = keys.gpg_expired.sign_commit(work, "in time", date=EXPIRED_SIGNED_EPOCH)
    assert _verify(keys, work, sha).signed_by.startswith(keys.gpg_expired.fingerprint)


def test_a_commit_dated_before_its_key_was_made_is_not_yet_valid(keys: Keys, work: Path) -> None:
    _refused(keys, work, keys.gpg.sign_commit(work, "backdated", date=1500000000), "not_yet_valid")


def test_a_revoked_key_is_refused_whatever_the_date(work: Path, tmp_path: Path) -> None:
    signer = GpgSigner(tmp_path)
    signed = _read(work, signer.sign_commit(work))
    keyring = signer.write_keyring(tmp_path / "before.asc")
    assert verify_commit(VerifyConfig(None, keyring), signed).kind == "openpgp"
    signer.revoke()
    signer.write_keyring(keyring)  # the same file, edited on disk: read again
    with pytest.raises(Unverified, match="has been revoked") as refused:
        verify_commit(VerifyConfig(None, keyring), signed)
    assert refused.value.reason == "revoked_key"


def test_an_openpgp_signature_with_no_keyring_is_an_unknown_key(keys: Keys, work: Path) -> None:
    signed = _read(work, keys.gpg.sign_commit(work))
    with pytest.raises(Unverified, match="names no gpg_keyring_file"):
        verify_commit(VerifyConfig(keys.allowed, None), signed)


def test_a_keyring_file_with_no_key_is_refused(keys: Keys, work: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.asc"
    junk.write_text("not a key\n")
    signed = _read(work, keys.gpg.sign_commit(work))
    with pytest.raises(Unverified, match="holds no OpenPGP public key") as refused:
        verify_commit(VerifyConfig(None, junk), signed)
    assert refused.value.reason == "unavailable"


def test_a_signed_message_is_not_a_signature_of_the_commit(keys: Keys, work: Path) -> None:
    """A trusted key's signed message (it carries its own data) put in a commit's gpgsig."""
    message = keys.gpg.sign_commit(work, "anything")
    signed = _read(work, message)
    assert signed.signature is not None
    sha = raw_commit(work, signed.signature + signed.signature)  # two signatures: refused
    with pytest.raises(Unverified):
        _verify(keys, work, sha)


# -- bad input -------------------------------------------------------------------------------

ARMOR_GARBAGE = {
    "no armor": (b"garbage \xff\xfe not a signature", "malformed"),
    "openpgp armor, garbage": (
        b"-----BEGIN PGP SIGNATURE-----\n\nZ2FyYmFnZQ==\n-----END PGP SIGNATURE-----",
        "malformed",
    ),
    "ssh armor, not base64": (
        b"-----BEGIN SSH SIGNATURE-----\n!!!\n-----END SSH SIGNATURE-----",
        "malformed",
    ),
    "ssh armor, not sshsig": (
        b"-----BEGIN SSH SIGNATURE-----\nZ2FyYmFnZQ==\n-----END SSH SIGNATURE-----",
        "malformed",
    ),
    "x509": (b"-----BEGIN SIGNED MESSAGE-----\nMIIB\n-----END SIGNED MESSAGE-----", "malformed"),
    "huge": (b"-----BEGIN PGP SIGNATURE-----\n\n" + b"A" * 70_000, "too_large"),
}


@pytest.mark.parametrize("case", list(ARMOR_GARBAGE))
def test_bad_signature_blobs_are_refused_with_the_reason(keys: Keys, work: Path, case: str) -> None:
    blob, reason = ARMOR_GARBAGE[case]
    _refused(keys, work, raw_commit(work, blob), reason)


def test_every_reason_is_a_known_label() -> None:
    assert set(REASONS) >= {
        *("unsigned", "bad_signature", "unknown_key", "not_yet_valid", "expired_key"),
        *("revoked_key", "malformed", "too_large", "timeout"),
    }


# -- a verifier that hangs ---------------------------------------------------------------------


@pytest.fixture
def hang(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], Path]:
    """Once called: ssh-keygen and gpg on PATH that start a child, note its pid in the file it
    returns, and never end."""

    def install() -> Path:
        folder = tmp_path / "bin"
        folder.mkdir()
        pidfile = tmp_path / "child.pid"
        for name in ("ssh-keygen", "gpg"):
            tool = folder / name
            tool.write_text(f"#!/bin/sh\nsleep 600 &\necho $! > {pidfile}\nwait\n")
            tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
        return pidfile

    return install


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"  # killed, waiting for a parent that is not ours to reap it


@pytest.mark.parametrize("signer", ["ssh", "gpg"])
def test_a_hanging_verifier_is_killed_with_its_children(
    keys: Keys, work: Path, hang: Callable[[], Path], signer: str
) -> None:
    chosen = keys.ed25519 if signer == "ssh" else keys.gpg
    signed = _read(work, chosen.sign_commit(work))
    pidfile = hang()
    with pytest.raises(Unverified, match="was stopped") as refused:
        verify_commit(VerifyConfig(keys.allowed, keys.keyring), signed, timeout=1.0)
    assert refused.value.reason == "timeout"
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child)


def test_a_spent_budget_starts_no_verifier(keys: Keys, work: Path) -> None:
    signed = _read(work, keys.gpg.sign_commit(work))
    with pytest.raises(Unverified) as refused:
        verify_commit(VerifyConfig(keys.allowed, keys.keyring), signed, timeout=1e-6)
    assert refused.value.reason == "timeout"


# -- through GitSource: the workspace's mirror -----------------------------------------------


def test_gitsource_reads_a_signature_from_the_mirror(
    git_server: GitServer, repo: tuple[str, WorkTree], keys: Keys, tmp_path: Path
) -> None:
    url, tree = repo
    write_file(tree.path, "export/steps/b.step.json", "{}")
    sha = keys.ed25519.sign_commit(tree.path, "signed b")
    tree.push()
    source = GitSource(tmp_path / "state", timeout=5)
    remote = Remote(url, git_server.username, git_server.password, git_server.ca_file)
    source.fetch(remote, "main", want=sha)
    signed = source.commit_signature(remote, sha[:12])
    assert signed == _read(tree.path, sha)
    assert verify_commit(VerifyConfig(keys.allowed, None), signed).signed_by == "dev@example.com"
