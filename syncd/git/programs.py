"""Running a verifying program (ssh-keygen, gpg) under a deadline.

Each runs in a session of its own, so that on timeout the whole process group is killed (gpg
may start helpers), and its output is bounded. Failures become Unverified; nothing else is
raised.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from syncd.git.signatures import Unverified

MAX_OUTPUT_BYTES = 256 * 1024  # what a verifier says about one signature is a few lines


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: bytes
    stderr: bytes

    def said(self) -> str:
        """The program's last line on stderr, for a message (bounded, printable)."""
        lines = [line.strip() for line in self.stderr.decode("utf-8", "replace").splitlines()]
        last = next((line for line in reversed(lines) if line), "")
        return "".join(c if c.isprintable() else "?" for c in last[:200])


class Deadline:
    """One time budget shared by every program one verification runs."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def left(self) -> float:
        return self._end - time.monotonic()


def program(name: str) -> str:
    """The program's path on PATH (looked up at each call: PATH may change)."""
    found = shutil.which(name)
    if found is None:
        raise Unverified("unavailable", f"{name} is not installed (not found on PATH)")
    return found


def plain_env() -> dict[str, str]:
    """What a verifier needs of the daemon's environment, and nothing else: no secret the
    daemon was given reaches it, and the C locale keeps its messages the ones read here."""
    env = {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C"}
    if "TZ" in os.environ:  # allowed-signers dates without "Z" are in local time
        env["TZ"] = os.environ["TZ"]
    return env


def run(
    argv: Sequence[str],
    deadline: Deadline,
    stdin: bytes = b"",
    env: Mapping[str, str] | None = None,
) -> Finished:
    """Run argv[0] (a name looked up on PATH) to its end, or kill its process group when the
    deadline passes (Unverified "timeout")."""
    name = argv[0]
    if deadline.left() <= 0:
        raise Unverified("timeout", f"{name} did not start: {deadline.seconds:g}s passed")
    try:
        proc = subprocess.Popen(  # a fixed program; arguments, no shell
            [program(name), *argv[1:]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env) if env is not None else plain_env(),
            start_new_session=True,
            close_fds=True,
        )
    except OSError as e:
        raise Unverified("unavailable", f"{name} could not start: {e.strerror or e}") from e
    try:
        out, err = proc.communicate(stdin, timeout=max(deadline.left(), 0.001))
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise Unverified(
            "timeout", f"{name} took longer than {deadline.seconds:g}s and was stopped"
        ) from None
    except BaseException:
        _kill(proc)
        raise
    return Finished(proc.returncode, out[:MAX_OUTPUT_BYTES], err[:MAX_OUTPUT_BYTES])


def _kill(proc: subprocess.Popen[bytes]) -> None:
    # The group: gpg's helpers (or a wrapper's children) would otherwise outlive it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    # Reaped with a bound of its own: SIGKILL cannot be caught, so this returns promptly.
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.communicate(timeout=5.0)
