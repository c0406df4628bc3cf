"""The types of `checks:` (what must hold after an apply), apart from `syncd.config.types`
(which names them again) to keep that module short. Data only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # types.py re-exports this module: no import of it at run time
    from syncd.config.types import Secret


@dataclass(frozen=True)
class HttpCheck:
    """An HTTP check: a GET of `url` that must answer `expect_status` (and, when set, a body
    in which the regular expression `expect_body` finds a match)."""

    url: str  # http or https
    expect_status: int = 200
    expect_body: str | None = None
    ca_file: Path | None = None  # trusted besides the system's CAs, as a source's ca_file


@dataclass(frozen=True)
class CommandCheck:
    """A command check: `argv` run without a shell, that must exit 0, with an environment of
    PATH and HOME and `env` only (never the daemon's own: it holds syncd's secrets). `env`'s
    values are given in the file, or come from the daemon's environment (`NAME_env: VAR`)."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str | Secret], ...] = ()  # a Secret: from the environment


@dataclass(frozen=True)
class CheckConfig:
    """A check after an apply (`checks:`): exactly one of `http` and `command`, tried
    `retries` more times `interval` seconds apart, each try bounded by `timeout`."""

    name: str
    http: HttpCheck | None = None
    command: CommandCheck | None = None
    timeout: float = 30.0
    retries: int = 3
    interval: float = 5.0
