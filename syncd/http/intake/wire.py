"""The messages between the daemon and its intake processes, each a JSON object on one line,
with one `encode` and one `decode` each. Pure: no I/O, nothing kept.

- `Settings`, daemon to intake process (on its stdin, at start and after each reload): what
  screening needs of the config, as the daemon loaded and checked it.
- `Report`, intake process to daemon (on its stdout, once a second): what it counted.

A line is checked whole before use: `decode` takes only a line within its bound, of the right
shape, with every list and string bounded and every number in range, and refuses anything else
with a `WireError` naming the field and what was wrong in it (never an IndexError from a list
too short, never a half-applied message, never a secret's text).

Both sides come from one install, but not always at one time: an intake process started again
after an upgrade in place runs the newer code beside the older daemon. So members a decoder
does not know are ignored, and a new member must be one an older side can do without.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from syncd.webhooks import Target

if TYPE_CHECKING:
    from syncd.service.intake import Secrets

SETTINGS_MAX = 64 << 20  # one settings line at most: some 100 000 workspaces' targets
REPORT_MAX = 1 << 20  # one report line at most; more is not the intake process talking
TARGETS_MAX = 1_000_000
PROVIDERS_MAX = 64  # providers with secrets; seven exist
SECRETS_MAX = 1024  # secrets of one provider (or signing secrets), old and new together
TEXT_MAX = 1 << 16  # a URL, a branch, a folder, a secret
NAME_MAX = 64  # a provider's name, a result: label values of the daemon's metrics
ENTRIES_MAX = 4096  # (provider, result) counts or (provider, secret) times in one report
NUMBER_MAX = 1 << 62  # bigger than any count, size or limit here


class WireError(ValueError):
    """A message that is not what it must be: the text names the field and what was wrong."""


class Count(NamedTuple):
    """Webhook requests of a provider with a result (the daemon's `syncd_webhook_requests`)."""

    provider: str
    result: str
    n: int


class Signed(NamedTuple):
    """When the provider's secret number `signed_by` (in its list) last signed a request, in
    epoch seconds."""

    provider: str
    signed_by: int
    at: float


@dataclass(frozen=True)
class Settings:
    """What an intake process needs of the config: targets, secrets and the server's bounds."""

    targets: tuple[Target, ...]
    secrets: Mapping[str, Secrets]  # each provider's secrets and signing secrets, revealed
    max_body_bytes: int
    max_connections: int
    header_timeout: float

    def encode(self) -> bytes:
        return _line(
            {
                "targets": [[t.workspace_id, t.url_key, t.branch, t.path] for t in self.targets],
                "secrets": {p: [list(a), list(b)] for p, (a, b) in self.secrets.items()},
                "max_body_bytes": self.max_body_bytes,
                "max_connections": self.max_connections,
                "header_timeout": self.header_timeout,
            }
        )

    @classmethod
    def decode(cls, line: bytes | str) -> Settings:
        """Raises WireError."""
        doc = _Reader("settings", _parse("settings", line, SETTINGS_MAX))
        return cls(
            targets=tuple(_target(t) for t in doc.key("targets").items(TARGETS_MAX)),
            secrets={
                provider: _secrets(pair)
                for provider, pair in doc.key("secrets").members(PROVIDERS_MAX, NAME_MAX)
            },
            max_body_bytes=doc.key("max_body_bytes").number(least=1),
            max_connections=doc.key("max_connections").number(least=0),
            header_timeout=doc.key("header_timeout").seconds(positive=True),
        )


@dataclass(frozen=True)
class Report:
    """What an intake process counted since its last report, and when each secret last signed
    a request it answered."""

    counts: tuple[Count, ...] = ()
    signed: tuple[Signed, ...] = ()

    def encode(self) -> bytes:
        return _line(
            {"counts": [list(c) for c in self.counts], "signed": [list(s) for s in self.signed]}
        )

    @classmethod
    def decode(cls, line: bytes | str) -> Report:
        """Raises WireError. A report without counts or times has none."""
        doc = _Reader("report", _parse("report", line, REPORT_MAX))
        return cls(
            counts=tuple(_count(c) for c in doc.optional("counts", []).items(ENTRIES_MAX)),
            signed=tuple(_signed(s) for s in doc.optional("signed", []).items(ENTRIES_MAX)),
        )


def _target(value: _Reader) -> Target:
    workspace_id, url_key, branch, path = (v.text(TEXT_MAX) for v in value.items(4, exactly=True))
    return Target(workspace_id, url_key, branch, path)


def _secrets(value: _Reader) -> Secrets:
    secrets, signing = value.items(2, exactly=True)
    return (
        tuple(s.text(TEXT_MAX) for s in secrets.items(SECRETS_MAX)),
        tuple(s.text(TEXT_MAX) for s in signing.items(SECRETS_MAX)),
    )


def _count(value: _Reader) -> Count:
    provider, result, n = value.items(3, exactly=True)
    return Count(provider.text(NAME_MAX), result.text(NAME_MAX), n.number(least=0))


def _signed(value: _Reader) -> Signed:
    provider, signed_by, at = value.items(3, exactly=True)
    return Signed(provider.text(NAME_MAX), signed_by.number(least=0), at.seconds(positive=False))


def _line(doc: dict[str, object]) -> bytes:
    return json.dumps(doc).encode() + b"\n"


def _parse(what: str, line: bytes | str, most: int) -> object:
    # Bytes, or characters of a line read as text; its newline aside.
    size = len(line.removesuffix(b"\n") if isinstance(line, bytes) else line.removesuffix("\n"))
    if size > most:
        raise WireError(f"{what}: a line of {size}, over the {most} it may have")
    # The parser's own words at most, never the line's text: a settings line holds secrets.
    try:
        text = line.decode() if isinstance(line, bytes) else line
    except UnicodeDecodeError as e:
        raise WireError(f"{what}: not UTF-8 (at byte {e.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise WireError(f"{what}: not JSON ({e.msg} at character {e.pos})") from None
    except (ValueError, RecursionError) as e:  # a number of thousands of digits, nested deep
        raise WireError(f"{what}: not JSON ({type(e).__name__})") from None


class _Reader:
    """A decoded JSON value and where it is in the message (`report.counts[2][0]`), for the
    error when it is not what it must be."""

    def __init__(self, at: str, value: object) -> None:
        self.at, self.value = at, value

    def _refuse(self, what: str) -> WireError:
        return WireError(f"{self.at}: {what}, got {_kind(self.value)}")

    def key(self, name: str) -> _Reader:
        """The member `name` of an object, which must have it."""
        if not isinstance(self.value, dict):
            raise self._refuse("expected an object")
        if name not in self.value:
            raise WireError(f"{self.at}: no {name!r}")
        return _Reader(f"{self.at}.{name}", self.value[name])

    def optional(self, name: str, default: object) -> _Reader:
        """The member `name` of an object, `default` where it has none."""
        if not isinstance(self.value, dict):
            raise self._refuse("expected an object")
        return _Reader(f"{self.at}.{name}", self.value.get(name, default))

    def members(self, most: int, name_most: int) -> list[tuple[str, _Reader]]:
        """An object's members, at most `most`, each name at most `name_most` characters."""
        if not isinstance(self.value, dict):
            raise self._refuse("expected an object")
        if len(self.value) > most:
            raise self._refuse(f"expected at most {most} members")
        for name in self.value:
            if len(name) > name_most:
                raise WireError(f"{self.at}: a name over {name_most} characters")
        return [(k, _Reader(f"{self.at}.{k}", v)) for k, v in self.value.items()]

    def items(self, most: int, exactly: bool = False) -> list[_Reader]:
        """A list's items: `most` at most, or (`exactly`) `most` of them."""
        if not isinstance(self.value, list):
            raise self._refuse("expected a list")
        if len(self.value) > most or (exactly and len(self.value) != most):
            raise self._refuse(f"expected {'' if exactly else 'at most '}{most} items")
        return [_Reader(f"{self.at}[{i}]", v) for i, v in enumerate(self.value)]

    def text(self, most: int) -> str:
        if not isinstance(self.value, str):
            raise self._refuse("expected a string")
        if len(self.value) > most:
            raise self._refuse(f"expected at most {most} characters")
        return self.value

    def number(self, least: int) -> int:
        """A whole number from `least` to NUMBER_MAX (not a boolean, not 1.0)."""
        value = self.value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._refuse("expected a whole number")
        if not least <= value <= NUMBER_MAX:
            raise self._refuse(f"expected a number from {least} to {NUMBER_MAX}")
        return value

    def seconds(self, positive: bool) -> float:
        """A finite number of seconds (or epoch time), not negative; `positive`: over 0."""
        value = self.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._refuse("expected a number")
        # (A whole number past a float's range would raise OverflowError in float().)
        seconds = math.inf if isinstance(value, int) and abs(value) > NUMBER_MAX else float(value)
        if not math.isfinite(seconds) or seconds < 0 or (positive and seconds == 0):
            raise self._refuse(f"expected a finite number {'over' if positive else 'from'} 0")
        return seconds


def _kind(value: object) -> str:
    """What a refused value was, briefly (never a string's text: it may be a secret)."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return f"an object of {len(value)} members"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    return repr(value)[:40]  # a boolean or a number
