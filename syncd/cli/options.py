"""The rules the commands share, each in one place: the exit codes (docs/cli.md lists them),
where the API token comes from (--token-file, $SYNCD_TOKEN, $ALOMA_KEY) and what a token may
hold, which server is meant (--server, $SYNCD_SERVER) and which URLs are accepted, and the
client's limits (--deadline, --max-answer).

The client mode's commands and `syncd pull` both read them from here.
"""

from __future__ import annotations

import argparse
import os
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from syncd.cli.apierrors import (
    ApiFailed,
    ApiNotFound,
    BadServer,
    ClientError,
    Forbidden,
    TokenRefused,
    Unauthorized,
    Unreachable,
    VersionMismatch,
)
from syncd.core.urls import is_loopback_host

# -- exit codes ---------------------------------------------------------------------------------

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 3
# Client mode: why the server could not be used, each with a code of its own.
EXIT_BAD_SERVER, EXIT_UNREACHABLE, EXIT_UNAUTHORIZED, EXIT_FORBIDDEN, EXIT_VERSION = 4, 5, 6, 7, 8
EXIT_INTERRUPTED = 130  # as a shell reports a command that SIGINT ended

_CLIENT_EXITS: tuple[tuple[type[ClientError], int], ...] = (
    (BadServer, EXIT_BAD_SERVER),
    (Unreachable, EXIT_UNREACHABLE),
    (Unauthorized, EXIT_UNAUTHORIZED),
    (Forbidden, EXIT_FORBIDDEN),
    (VersionMismatch, EXIT_VERSION),
    (ApiNotFound, EXIT_USAGE),  # no such workspace or run, as in local mode
    (ApiFailed, EXIT_FAILED),
)


def client_exit(e: ClientError) -> int:
    """The exit code of a client mode failure: the first kind it is of, in the order above."""
    return next((code for kind, code in _CLIENT_EXITS if isinstance(e, kind)), EXIT_FAILED)


# -- the token ----------------------------------------------------------------------------------

TOKEN_VARIABLES = ("SYNCD_TOKEN", "ALOMA_KEY")
_MAX_TOKEN_FILE = 4096  # bytes; a token is one short line


def token_problems(token: str) -> list[str]:
    """What keeps `token` out of an Authorization header, in words that quote none of it."""
    problems = []
    if "\n" in token:
        problems.append("has more than one line")
    if "\r" in token:
        problems.append("contains a carriage return (saved with Windows line ends?)")
    if token.startswith("\ufeff"):
        problems.append("starts with a byte order mark (saved as UTF-8 with BOM?)")
        token = token[1:]
    if " " in token or "\t" in token:
        problems.append("contains a space or a tab")
    rest = [c for c in token if c not in "\r\n\t "]
    if any(ord(c) < 32 or ord(c) == 127 for c in rest):
        problems.append("contains a control character")
    if any(not c.isascii() for c in rest):
        problems.append("contains a character that is not ASCII")
    return problems


def read_token(text: str, where: str) -> str:
    """The token in `text` (a file's content or a variable's value), without one line end (`\\n`
    or `\\r\\n`). Refused, naming `where` and never quoting the token, when it is empty or cannot
    go into a header."""
    token = text[:-2] if text.endswith("\r\n") else text.removesuffix("\n")
    if not token:
        raise TokenRefused(f"{where} is empty")
    problems = token_problems(token)
    if problems:
        raise TokenRefused(
            f"{where}: the token {' and '.join(problems)}; "
            "a token is one line of printable characters, without spaces"
        )
    return token


def token_from(file: Path | None, environ: Mapping[str, str]) -> str | None:
    """The API token: from `file`, else $SYNCD_TOKEN, else $ALOMA_KEY (the workspace SDK's name);
    None when none is given."""
    if file is not None:
        try:
            with file.open("rb") as f:  # bytes: a `\r` stays one, as the header would get it
                data = f.read(_MAX_TOKEN_FILE + 1)
        except OSError as e:
            raise TokenRefused(f"--token-file {file}: cannot be read: {e}") from None
        if len(data) > _MAX_TOKEN_FILE:
            raise TokenRefused(
                f"--token-file {file}: is larger than a token ({_MAX_TOKEN_FILE} bytes)"
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:  # its message would quote a byte of the token
            raise TokenRefused(f"--token-file {file}: is not UTF-8 text") from None
        return read_token(text, f"--token-file {file}")
    for name in TOKEN_VARIABLES:
        if environ.get(name):
            return read_token(environ[name], f"${name}")
    return None


def token_of(args: argparse.Namespace) -> str | None:
    """--token-file, else $SYNCD_TOKEN, else $ALOMA_KEY (the workspace SDK's name). A token that
    cannot go into a header (two lines, a carriage return, a space...) is refused, by where it
    came from, never quoted."""
    return token_from(getattr(args, "token_file", None), os.environ)


# -- the server ---------------------------------------------------------------------------------

DEFAULT_SERVER = "http://127.0.0.1:8080"  # `syncd pull`'s, when none is given
SERVER_VARIABLE = "SYNCD_SERVER"


def server_from(given: str | None, environ: Mapping[str, str]) -> str | None:
    """--server, else $SYNCD_SERVER; None when neither is given (local mode)."""
    return given or environ.get(SERVER_VARIABLE) or None


def server_of(args: argparse.Namespace) -> str | None:
    return server_from(getattr(args, "server", None), os.environ)


def server_url(text: str) -> str:
    """The server's base URL. Plain http only to this host: a token must not cross a network
    in clear."""
    parts = urllib.parse.urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadServer(f"server {text!r} is not an http(s) URL, e.g. {DEFAULT_SERVER}")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname or ""):
        raise BadServer(
            f"server {text!r}: plain http is only for this host (127.0.0.1, ::1, localhost); "
            "use https, so the token does not cross the network in clear"
        )
    return text.strip().rstrip("/")


def client_limits(args: argparse.Namespace) -> dict[str, Any]:
    """--deadline and --max-answer, as ApiClient's keywords (its defaults when not given)."""
    limits: dict[str, Any] = {}
    if getattr(args, "deadline", None) is not None:
        limits["deadline"] = args.deadline
    if getattr(args, "max_answer", None) is not None:
        limits["max_answer"] = args.max_answer
    return limits
