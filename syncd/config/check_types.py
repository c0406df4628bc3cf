"""The types of `checks:` (what must hold after an apply), apart from `syncd.config.types`
(which names them again) to keep that module short. Data only."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HttpCheck:
    """An HTTP check: a GET of `url` that must answer `expect_status` (and, when set, a body
    in which the regular expression `expect_body` finds a match)."""

    url: str  # http or https
    expect_status: int = 200
    expect_body: str | None = None


@dataclass(frozen=True)
class CommandCheck:
    """A command check: `argv` run without a shell, that must exit 0."""

    argv: tuple[str, ...]


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
