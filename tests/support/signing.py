"""Real signing keys and real signed commits, for the tests of `verify` (issue #23).

Keys are made by the tools themselves (`ssh-keygen`, `gpg` in a GNUPGHOME of their own under the
test's tmp_path) and commits are signed by `git commit -S`, exactly as a developer's would be.

    repo = init_workdir(tmp_path / "work")            # or a WorkTree's .path
    write_file(repo, "export/steps/a.step.json", "{}")
    ssh = SshSigner(tmp_path)                         # ed25519; SshSigner(tmp_path, "rsa")
    sha = ssh.sign_commit(repo, "add a")              # `git add -A` + a signed commit; its sha
    allowed = write_allowed_signers(tmp_path / "allowed_signers", ssh.allowed_signers("dev@x"))
    gpg = GpgSigner(tmp_path)                         # a key valid now, no expiry
    sha = gpg.sign_commit(repo, "add b")
    keyring = gpg.write_keyring(tmp_path / "trusted.asc")
    old = GpgSigner.expired(tmp_path)                 # a key that expired in 2020
    old.sign_commit(repo, "c")                        # signed while valid; committed now
    gpg.revoke()                                      # then write_keyring: carries the revocation
    forge_commit(repo, sha, "other message")          # the same signature over another payload

Every command has a timeout; a failure raises with the tool's stderr.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import pygit2

TIMEOUT = 60.0
PRINCIPAL = "dev@example.com"
# An expired key's life: made on 2020-01-01, valid for one day; its commits are signed during it.
EXPIRED_CREATED = "20200101T000000"
EXPIRED_SIGNED = "20200101T010000"
EXPIRED_SIGNED_EPOCH = 1577840400  # 2020-01-01T01:00:00Z


def _run(argv: Sequence[str], cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    proc = subprocess.run(
        list(argv),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(argv)} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}"
        )
    return proc.stdout.decode("utf-8", "replace")


def _git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """No user or system git config: only what the -c options say."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    env.update(extra or {})
    return env


_IDENTITY = ("-c", "user.name=syncd test", "-c", "user.email=syncd-test@example.invalid")


def init_workdir(path: Path) -> Path:
    """A fresh non-bare repository on branch main."""
    path.mkdir(parents=True, exist_ok=True)
    _run(["git", "init", "--quiet", "-b", "main", str(path)], env=_git_env())
    return path


def write_file(workdir: Path, relpath: str, data: str | bytes) -> None:
    target = workdir / relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def git_commit(
    workdir: Path,
    message: str = "change",
    sign: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    date: int | None = None,
) -> str:
    """`git add -A` and a commit, signed (`commit -S`) when `sign` holds the signing -c options
    (a signer's sign_args()); its sha.
    `date`: the author and committer time (seconds since the epoch), else now."""
    extra = dict(env or {})
    if date is not None:
        extra |= {"GIT_AUTHOR_DATE": f"@{date} +0000", "GIT_COMMITTER_DATE": f"@{date} +0000"}
    full_env = _git_env(extra)
    _run(["git", *_IDENTITY, "add", "-A"], cwd=workdir, env=full_env)
    _run(
        ["git", *_IDENTITY, "-c", "commit.gpgSign=false", *sign, "commit", "--quiet",
         *(["-S"] if sign else []), "--allow-empty", "-m", message],
        cwd=workdir,
        env=full_env,
    )  # fmt: skip
    return _run(["git", "rev-parse", "HEAD"], cwd=workdir, env=full_env).strip()


def write_allowed_signers(path: Path, *lines: str) -> Path:
    """An allowed signers file holding these lines (SshSigner.allowed_signers)."""
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


class SshSigner:
    """An SSH key (ed25519 or rsa) made by ssh-keygen, with no passphrase."""

    def __init__(
        self, tmp_path: Path, key_type: Literal["ed25519", "rsa"] = "ed25519", name: str = ""
    ) -> None:
        folder = tmp_path / f"ssh-{key_type}-{name or os.urandom(4).hex()}"
        folder.mkdir(parents=True)
        self.key_file = folder / "id"
        size = ["-b", "3072"] if key_type == "rsa" else []
        _run(["ssh-keygen", "-q", "-t", key_type, *size, "-N", "", "-C", "test key",
              "-f", str(self.key_file)])  # fmt: skip
        # "ssh-ed25519 AAAA...", without the comment
        self.public_key = " ".join(self.key_file.with_suffix(".pub").read_text().split()[:2])

    def allowed_signers(
        self,
        principal: str = PRINCIPAL,
        valid_after: str | None = None,
        valid_before: str | None = None,
    ) -> str:
        """One allowed-signers line for this key; valid_after/valid_before as ssh-keygen reads
        them: YYYYMMDD[HHMM[SS]][Z]."""
        options = [f'valid-after="{valid_after}"'] if valid_after else []
        options += [f'valid-before="{valid_before}"'] if valid_before else []
        return " ".join([principal, *([",".join(options)] if options else []), self.public_key])

    def sign_args(self) -> list[str]:
        return ["-c", "gpg.format=ssh", "-c", f"user.signingkey={self.key_file}"]

    def sign_commit(self, workdir: Path, message: str = "change", date: int | None = None) -> str:
        return git_commit(workdir, message, self.sign_args(), date=date)


def _kill_agent(home: Path) -> None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
            capture_output=True,
            timeout=10,
        )


class GpgSigner:
    """An OpenPGP key (ed25519, sign only, no passphrase) in a GNUPGHOME of its own."""

    def __init__(
        self,
        tmp_path: Path,
        name: str = "Dev Example",
        email: str = PRINCIPAL,
        expires: str = "never",
        created: str | None = None,
    ) -> None:
        # Short: gpg's socket paths must fit in 108 bytes, and pytest's tmp_path can be long.
        self.home = Path(os.path.realpath(_short_dir(tmp_path)))
        # gpg starts an agent per home to sign with; it would outlive the tests.
        atexit.register(_kill_agent, self.home)
        self.uid = f"{name} <{email}>"
        self._faked = ["--faked-system-time", created] if created else []
        self._gpg("--passphrase", "", "--pinentry-mode", "loopback",
                  "--quick-gen-key", self.uid, "ed25519", "sign", expires)  # fmt: skip
        listing = self._gpg("--with-colons", "--list-keys", self.uid)
        self.fingerprint = next(
            line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")
        )
        self._sign_time: str | None = None

    @classmethod
    def expired(
        cls, tmp_path: Path, name: str = "Old Example", email: str = PRINCIPAL
    ) -> GpgSigner:
        """A key made on 2020-01-01 that expired a day later; sign_commit signs as of that day
        (gpg signs with no expired key), while the commit's own date is whatever is given."""
        signer = cls(tmp_path, name, email, expires="1d", created=EXPIRED_CREATED)
        signer._sign_time = EXPIRED_SIGNED
        return signer

    def env(self) -> dict[str, str]:
        return {**os.environ, "GNUPGHOME": str(self.home)}

    def _gpg(self, *args: str) -> str:
        return _run(["gpg", "--batch", "--no-tty", *self._faked, *args], env=self.env())

    def public_key(self, armor: bool = True) -> bytes:
        args = ["--armor"] if armor else []
        proc = subprocess.run(
            ["gpg", "--batch", *args, "--export", self.fingerprint],
            env=self.env(),
            capture_output=True,
            timeout=TIMEOUT,
            check=True,
        )
        return proc.stdout

    def write_keyring(self, path: Path, armor: bool = True) -> Path:
        """This key's public part (with its revocation, once revoked) as a keyring file."""
        path.write_bytes(self.public_key(armor))
        return path

    def revoke(self) -> None:
        """Import the revocation certificate gpg made with the key."""
        cert = self.home / "openpgp-revocs.d" / f"{self.fingerprint}.rev"
        # gpg stores it with a ':' before the armor, so that it is not imported by mistake.
        text = cert.read_text().replace(
            ":-----BEGIN PGP PUBLIC KEY BLOCK", "-----BEGIN PGP PUBLIC KEY BLOCK"
        )
        armored = self.home / "revocation.asc"
        armored.write_text(text)
        self._gpg("--import", str(armored))

    def sign_args(self) -> list[str]:
        program = self.home / "gpg-for-git"
        faked = f"--faked-system-time {self._sign_time}! " if self._sign_time else ""
        gpg = shutil.which("gpg") or "gpg"  # as found now, not on a PATH a test changes later
        program.write_text(f'#!/bin/sh\nexec {gpg} {faked}"$@"\n')
        program.chmod(0o755)
        return ["-c", "gpg.format=openpgp", "-c", f"gpg.program={program}",
                "-c", f"user.signingkey={self.fingerprint}"]  # fmt: skip

    def sign_commit(self, workdir: Path, message: str = "change", date: int | None = None) -> str:
        return git_commit(
            workdir, message, self.sign_args(), env={"GNUPGHOME": str(self.home)}, date=date
        )


def _short_dir(tmp_path: Path) -> Path:
    folder = tmp_path / f"g{os.urandom(3).hex()}"
    folder.mkdir(mode=0o700, parents=True)
    return folder


def forge_commit(workdir: Path, signed_sha: str, message: str) -> str:
    """A commit like `signed_sha` (same tree, parents, signature) with another message: its
    signature no longer matches its payload. HEAD's branch moves to it; returns its sha."""
    repo = pygit2.Repository(str(workdir))
    raw = repo.odb.read(pygit2.Oid(hex=signed_sha))[1]
    head, _, _old = raw.partition(b"\n\n")
    oid = repo.odb.write(pygit2.enums.ObjectType.COMMIT, head + b"\n\n" + message.encode() + b"\n")
    branch = repo.head.name
    repo.references.create(branch, oid, force=True)
    return str(oid)


def raw_commit(workdir: Path, signature: bytes | None, message: str = "raw") -> str:
    """A commit on HEAD whose gpgsig header is `signature` as given (garbage, huge, any kind):
    what a hostile remote could serve. HEAD's branch moves to it; returns its sha."""
    repo = pygit2.Repository(str(workdir))
    parent = repo.head.target
    tree = repo[parent].peel(pygit2.Tree).id
    now = int(time.time())
    lines = [f"tree {tree}", f"parent {parent}",
             f"author syncd test <syncd-test@example.invalid> {now} +0000",
             f"committer syncd test <syncd-test@example.invalid> {now} +0000"]  # fmt: skip
    head = "\n".join(lines).encode()
    if signature is not None:
        # A header's continuation lines start with a space (as git writes gpgsig).
        folded = signature.rstrip(b"\n").replace(b"\n", b"\n ")
        head += b"\ngpgsig " + folded
    oid = repo.odb.write(pygit2.enums.ObjectType.COMMIT, head + b"\n\n" + message.encode() + b"\n")
    repo.references.create(repo.head.name, oid, force=True)
    return str(oid)
