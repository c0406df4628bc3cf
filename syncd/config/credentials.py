"""Secrets: read from the environment (`X_env`) or from a file (`X_file`), never from the config.

Problems name the variable or the file, never the value: a value that is not a variable name
may be the secret itself, pasted in the wrong key, so it is not shown either.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from syncd.config.checks import At, Checker
from syncd.config.types import Config, Secret, UnresolvedSecret
from syncd.core.errors import ConfigError

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Names shown in messages: a lower-case "name" may be the secret itself, pasted in the wrong key.
_SHOWN_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
_MAX_SECRET_FILE = 1 << 20


class UnsafeSecretFile(Exception):
    """A secret file that is not a regular file, or that anyone may rewrite."""


def _read_secret_file(path: Path) -> bytes:
    """The first bytes of a secret file, past the limit by one. Opened without blocking, so a
    FIFO (with no writer it would block `check-config` and a reload for ever) is refused, like
    any file that is not a regular one; and so is a world-writable one, whose secret anyone on
    the machine could replace."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        if not stat.S_ISREG(mode):
            raise UnsafeSecretFile(f"{path} is not a regular file ({_kind(mode)})")
        if mode & stat.S_IWOTH:
            raise UnsafeSecretFile(
                f"{path} is writable by every user (mode {stat.S_IMODE(mode):04o}): anyone "
                "could replace the secret; remove that with chmod o-w"
            )
        with os.fdopen(fd, "rb") as f:
            fd = -1  # the file object closes it
            return f.read(_MAX_SECRET_FILE + 1)
    finally:
        if fd >= 0:
            os.close(fd)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


class SecretReader(Checker):
    """A Checker that also resolves secrets, from `environ` or from files.

    `lazy`: a secret that is not available (variable unset, file unreadable) is no problem
    yet; it becomes an UnresolvedSecret that fails when a command reveals it. The CLI's local
    commands read the config this way, so that `syncd status` needs none of the daemon's
    secrets; `serve` and `check-config` do not, and report every missing secret at once."""

    def __init__(self, environ: Mapping[str, str], lazy: bool = False) -> None:
        super().__init__()
        self.environ = environ
        self.lazy = lazy

    def unavailable(self, at: At, source: str, message: str) -> Secret | None:
        if not self.lazy:
            self.error(at, message)
            return None
        where = f"{at.file}: {at.path}: " if at.path else f"{at.file}: "
        return UnresolvedSecret("", source, problem=where + message)

    def secret(
        self, at: At, section: dict[str, Any], base: str, base_dir: Path, required: bool = False
    ) -> Secret | None:
        env_key, file_key = f"{base}_env", f"{base}_file"
        if env_key in section and file_key in section:
            self.error(at, f"give {env_key} or {file_key}, not both")
        elif section.get(env_key) is not None:
            return self.env_secret(at.key(env_key), section[env_key])
        elif section.get(file_key) is not None:
            return self.file_secret(at.key(file_key), section[file_key], base_dir)
        elif required:
            self.error(at, f"needs {env_key} or {file_key}")
        return None

    def secret_list(
        self, at: At, section: dict[str, Any], base: str, base_dir: Path
    ) -> tuple[Secret, ...]:
        secrets: list[Secret] = []
        for suffix in ("_env", "_file"):
            key = base + suffix
            value = section.get(key)
            for i, item in enumerate(self.str_list(at.key(key), value, single=True)):
                where = at.key(key).item(i) if isinstance(value, list) else at.key(key)
                if suffix == "_env":
                    secret = self.env_secret(where, item)
                else:
                    secret = self.file_secret(where, item, base_dir)
                if secret is not None:
                    secrets.append(secret)
        return tuple(secrets)

    def env_secret(self, at: At, value: Any) -> Secret | None:
        name = self.string(at, value)
        if not name:
            return None
        if not _ENV_NAME.fullmatch(name):
            # Not shown: a value that is no variable name may be the secret itself.
            self.error(at, "expected the name of an environment variable (value not shown)")
            return None
        shown = name if _SHOWN_ENV_NAME.fullmatch(name) else "(name not shown)"
        secret = self.environ.get(name)
        if secret is None:
            return self.unavailable(at, f"env {name}", f"environment variable {shown} is not set")
        if not secret:
            return self.unavailable(at, f"env {name}", f"environment variable {shown} is empty")
        return Secret(secret, f"env {name}")

    def file_secret(self, at: At, value: Any, base_dir: Path) -> Secret | None:
        path = self.path(at, value, base_dir)
        if path is None:
            return None
        try:
            data = _read_secret_file(path)
        except OSError as e:
            return self.unavailable(at, f"file {path}", f"cannot read {path}: {e.strerror or e}")
        except UnsafeSecretFile as e:
            self.error(at, str(e))
            return None
        if len(data) > _MAX_SECRET_FILE:
            self.error(at, f"{path} is larger than {_MAX_SECRET_FILE} bytes")
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self.error(at, f"{path} is not UTF-8 text")
            return None
        # Strip one trailing newline, as editors and `echo` add it; keep anything else.
        text = text[:-2] if text.endswith("\r\n") else text.removesuffix("\n")
        if not text:
            return self.unavailable(at, f"file {path}", f"{path} is empty")
        return Secret(text, f"file {path}")


def secret_files(secrets: list[Secret]) -> tuple[Path, ...]:
    """The files these secrets come from (`X_file`), read or not: the daemon watches them."""
    found = [Path(s.source.removeprefix("file ")) for s in secrets if s.source.startswith("file ")]
    return tuple(dict.fromkeys(found))


def fingerprint(files: tuple[Path, ...]) -> dict[Path, tuple[int, ...] | None]:
    """What tells a rotated secret file from the one read: inode, size, times; None when it is
    gone. Only stat: no secret is read to compare."""
    prints: dict[Path, tuple[int, ...] | None] = {}
    for path in files:
        try:
            st = os.stat(path)
        except OSError:
            prints[path] = None
            continue
        prints[path] = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return prints


def unreadable_secrets(config: Config) -> list[UnresolvedSecret]:
    """The secrets a reload (lazy) could not read: what needs one fails, naming it. The
    store's password and the console's session key, read once at start, refuse the reload."""
    unread = config.unresolved_secrets()
    for secret in unread:
        if secret in (config.console.session_key, config.store.password):
            raise ConfigError(secret.problem)
    return unread


# Stands for a secret that cannot be read where one is compared: random, so nothing matches it.
_UNREADABLE = os.urandom(32).hex()


def checking_value(secret: Secret) -> str:
    """The value a signature or password is checked against; for a secret that cannot be
    read (its file went away), one that nothing matches."""
    return _UNREADABLE if isinstance(secret, UnresolvedSecret) else secret.reveal()
