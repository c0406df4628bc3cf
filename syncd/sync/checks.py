"""Checks after an apply (`checks:`): an HTTP GET that must answer a status (and maybe a body),
or a command that must exit 0. Each is tried until it passes, at most `retries` more times,
`interval` seconds apart; every try is bounded by `timeout`, so a workspace's checks end within
the sum over its checks of (retries + 1) * (timeout + interval).

What a host answers is a stranger's input: at most MAX_BODY bytes are read, and a detail says
the status or the first bytes of a command's output, never more than MAX_DETAIL characters.
No shell: a command's argv is run as written. Blocking: called on the worker thread of the run
that applied (`syncd.sync.after_apply`), never on the event loop.
"""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from syncd.config.types import CheckConfig, CommandCheck, HttpCheck
from syncd.core.errors import SyncdError
from syncd.core.model import CheckOutcome
from syncd.git.tls import read_ca_file
from syncd.ops.logs import scrub

MAX_BODY = 64 * 1024  # bytes of an answer read for `expect_body`
MAX_DETAIL = 200  # characters of a detail (a status, an error, the start of an output)
SCRUBBED_TAIL = 64 * 1024  # bytes of a command's output read (and scrubbed) for its detail


# A check's outcome is what the run keeps of it: one shape (syncd.core.model).
CheckResult = CheckOutcome


class _Failed(Exception):
    """One try failed; its message is the detail."""


def run_checks(
    checks: tuple[CheckConfig, ...],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[CheckResult]:
    """Each check, in order, with its retries; all of them, even after one fails (each
    result is reported and counted)."""
    return [run_check(check, clock, sleep) for check in checks]


def run_check(
    check: CheckConfig,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> CheckResult:
    started = clock()
    detail = ""
    for attempt in range(check.retries + 1):
        if attempt:
            sleep(check.interval)
        try:
            detail = _try(check)
        except _Failed as e:
            detail = _short(str(e))
            continue
        return CheckResult(check.name, "ok", detail, clock() - started)
    tries = check.retries + 1
    said = f"{detail} (after {tries} tries)" if tries > 1 else detail
    return CheckResult(check.name, "failed", said, clock() - started)


def _try(check: CheckConfig) -> str:
    if check.http is not None:
        return _http(check.http, check.timeout)
    assert check.command is not None  # the parser sees to one of the two
    return _command(check.command, check.timeout)


def _trust(ca_file: Path | None) -> ssl.SSLContext | bool:
    """The system's CAs, and `ca_file`'s too when the check names one (as a source's)."""
    if ca_file is None:
        return True
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cadata=read_ca_file(ca_file).decode("ascii"))
    except (SyncdError, ValueError) as e:
        raise _Failed(str(e)) from None
    return context


def _http(spec: HttpCheck, timeout: float) -> str:
    """A GET with the system's trust (and `ca_file`'s); redirects are not followed (a check
    names the address it means)."""
    try:
        with (
            httpx.Client(
                timeout=timeout, follow_redirects=False, verify=_trust(spec.ca_file)
            ) as client,
            client.stream("GET", spec.url, headers={"User-Agent": "syncd-check"}) as answer,
        ):
            body = b""
            deadline = time.monotonic() + timeout  # httpx bounds each read, not their sum
            if spec.expect_body is not None:
                for chunk in answer.iter_bytes():
                    body += chunk
                    if len(body) >= MAX_BODY or time.monotonic() > deadline:
                        body = body[:MAX_BODY]
                        break
    except httpx.TimeoutException:
        raise _Failed(f"GET {_where(spec.url)}: no answer within {timeout:g}s") from None
    except httpx.HTTPError as e:
        raise _Failed(f"GET {_where(spec.url)}: {type(e).__name__}: {e}") from None
    if answer.status_code != spec.expect_status:
        raise _Failed(
            f"GET {_where(spec.url)}: status {answer.status_code}, expected {spec.expect_status}"
        )
    if spec.expect_body is not None:
        text = body.decode("utf-8", errors="replace")
        if re.search(spec.expect_body, text) is None:
            raise _Failed(
                f"GET {_where(spec.url)}: the body (first {len(body)} bytes) does not match "
                f"{spec.expect_body!r}"
            )
    return f"status {answer.status_code}"


def _command(spec: CommandCheck, timeout: float) -> str:
    """The argv without a shell, stdin closed; its output (stdout and stderr) goes to a
    temporary file, not to memory, and only its last bytes are kept in a detail."""
    name = spec.argv[0]
    with tempfile.TemporaryFile() as output:
        try:
            done = subprocess.run(
                list(spec.argv),
                env=_environment(spec),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise _Failed(f"{name}: did not exit within {timeout:g}s") from None
        except OSError as e:
            raise _Failed(f"{name}: {e.strerror or e}") from None
        if done.returncode == 0:
            return "exit status 0"
        # A larger tail is read and scrubbed before it is cut: a secret that straddles the
        # cut would not be recognised in a part of it.
        output.seek(max(0, output.seek(0, 2) - SCRUBBED_TAIL))
        text = scrub(output.read(SCRUBBED_TAIL).decode("utf-8", errors="replace"))
        tail = " ".join(text.split())[-MAX_DETAIL:]
    raise _Failed(f"{name}: exit status {done.returncode}" + (f": {tail}" if tail else ""))


def _environment(spec: CommandCheck) -> dict[str, str]:
    """PATH and HOME, and the check's `env`: never the daemon's own environment, which holds
    syncd's secrets (tokens, passwords) that a check has no business with."""
    base = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    given = {name: v if isinstance(v, str) else v.reveal() for name, v in spec.env}
    return base | given


def _where(url: str) -> str:
    """The URL without its query (where tokens hide)."""
    return url.split("?", 1)[0].split("#", 1)[0]


def _short(text: str) -> str:
    text = scrub(text)
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 3] + "..."
