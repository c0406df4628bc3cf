"""The `verify` key (per workspace, or in `defaults`): which keys may sign the commits applied.

A part of the section parsers, apart because it is a subject of its own. It checks that each
key file named is there and readable (the files are read again at each verification, by
syncd.git.verify, so an edit on disk counts without a reload); their contents are judged by
ssh-keygen and gpg when a commit is verified.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from syncd.config.checks import At, Checker
from syncd.config.types import VerifyConfig

__all__ = ["VERIFY_KEYS", "VerifyConfig", "verify_section"]

VERIFY_KEYS = ("allowed_signers_file", "gpg_keyring_file", "x509_roots_file")
# An allowed signers file lists a few keys per line; a keyring a few KiB per key.
MAX_KEY_FILE_BYTES = {"allowed_signers_file": 1024 * 1024, "gpg_keyring_file": 16 * 1024 * 1024}


def verify_section(checker: Checker, at: At, value: Any, base_dir: Path) -> VerifyConfig | None:
    """The `verify` mapping; None when it is absent (or null), or when it has problems (then
    recorded). Relative paths are read from `base_dir`, the folder of the file that says them."""
    if value is None:
        return None
    before = len(checker.problems)
    section = checker.mapping(at, value, VERIFY_KEYS)
    if section is None:
        return None
    if section.get("x509_roots_file") is not None:
        checker.error(
            at.key("x509_roots_file"),
            "X.509 (gpgsm) commit signatures are not supported yet; list SSH keys in "
            "allowed_signers_file or OpenPGP keys in gpg_keyring_file",
        )
    files = {key: _key_file(checker, at.key(key), section.get(key), base_dir, key) for key in
             ("allowed_signers_file", "gpg_keyring_file")}  # fmt: skip
    if all(section.get(key) is None for key in files) and len(checker.problems) == before:
        checker.error(at, "needs allowed_signers_file (SSH keys) or gpg_keyring_file (OpenPGP)")
    if len(checker.problems) != before:
        return None
    return VerifyConfig(
        allowed_signers_file=files["allowed_signers_file"],
        gpg_keyring_file=files["gpg_keyring_file"],
    )


def _key_file(checker: Checker, at: At, value: Any, base_dir: Path, key: str) -> Path | None:
    path = checker.path(at, value, base_dir)
    if path is None:
        return None
    try:
        if not path.exists():
            checker.error(at, f"{path} does not exist")
            return None
        if not path.is_file():  # a folder, or a FIFO that would block the read below
            checker.error(at, f"{path} is not a regular file")
            return None
        with path.open("rb") as f:  # opened, not only stat-ed: the daemon's user must read it
            size = len(f.read(MAX_KEY_FILE_BYTES[key] + 1))
    except OSError as e:
        checker.error(at, f"{path} cannot be read: {e.strerror or e}")
        return None
    if size > MAX_KEY_FILE_BYTES[key]:
        checker.error(at, f"{path} is over the limit of {MAX_KEY_FILE_BYTES[key]} bytes")
        return None
    return path
