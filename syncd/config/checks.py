"""Checking values: every problem names the file, the key path and the value, never a secret.

`Checker` collects problems instead of raising at the first one, so that `check-config` reports
everything at once. Each check records a problem and returns a harmless fallback. Pure: no file
is read here.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncd.config.types import DeleteLimit
from syncd.core.access import ALL, TAG
from syncd.core.model import Mode
from syncd.core.refs import branch_problem, short_branch

MAX_STRING = 4096  # longer strings where a name, URL or path is expected are refused
MAX_PROBLEMS = 100  # a runaway file (a list of a million bad tags) still gives a readable report

_PLAIN_SECRET_KEYS = frozenset(
    {"password", "token", "secret", "secrets", "signing_secret", "signing_secrets"}
)
_PERCENT = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*%\s*")
_WORKSPACE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_EMAIL = re.compile(r"[^@\s<>()\[\],;:\"]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class _Missing:
    """A required key that is absent: reported once, then passed over by the value checks."""


MISSING: Any = _Missing()


@dataclass(frozen=True)
class At:
    """Where a value sits: its file and key path, e.g. `workspaces[2] (id "12345").source.url`."""

    file: Path
    path: str = ""

    def key(self, name: str) -> At:
        return At(self.file, f"{self.path}.{name}" if self.path else name)

    def item(self, index: int, label: str = "") -> At:
        return At(self.file, f"{self.path}[{index}]{label}")


# --- Durations ---------------------------------------------------------------------------------

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
_DURATION = re.compile(rf"(?:{_NUMBER}(?:ms|s|m|h|d))+")
_DURATION_PART = re.compile(rf"({_NUMBER})(ms|s|m|h|d)")


def parse_duration(text: str | int | float) -> float:
    """Seconds in `30s`, `5m`, `1h`, `1h30m`, `500ms`, `2d` or a bare number of seconds."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"expected a duration such as 30s, 5m or 1h, got {describe(text)}")
    if isinstance(text, str):
        spec = text.strip()
        if spec.startswith("-"):
            raise ValueError(f"a duration may not be negative, got {describe(text)}")
        if len(spec) <= 64 and re.fullmatch(_NUMBER, spec):
            seconds = float(spec)
        elif len(spec) <= 64 and _DURATION.fullmatch(spec):
            parts = _DURATION_PART.findall(spec)
            seconds = sum(float(n) * _UNITS[unit] for n, unit in parts)
        else:
            raise ValueError(
                f"expected a duration such as 30s, 5m, 1h30m or 500ms, got {describe(text)}"
            )
    else:
        try:
            seconds = float(text)
        except OverflowError:
            raise ValueError(f"a duration must be finite, got {describe(text)}") from None
    if not math.isfinite(seconds):
        raise ValueError(f"a duration must be finite, got {describe(text)}")
    if seconds < 0:
        raise ValueError(f"a duration may not be negative, got {describe(text)}")
    return seconds


# --- The checks --------------------------------------------------------------------------------


class Checker:
    """Collects problems. A section whose checks added problems is dropped by its caller, and
    load_config raises at the end."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.dropped = 0
        # What is allowed but likely a mistake (a workspace pattern that matches nothing):
        # said by check-config and logged at every load, never refused.
        self.warnings: list[str] = []

    def warn(self, at: At, message: str) -> None:
        if len(self.warnings) < MAX_PROBLEMS:
            self.warnings.append(f"{at.file}: {at.path}: {message}")

    def patterns(self, at: At, value: Any) -> tuple[str, ...]:
        """`workspaces:` of a token or a role: id globs and `tag:NAME`; all when absent."""
        if value is None:
            return ALL
        found: list[str] = []
        for i, item in enumerate(self.str_list(at, value, single=True)):
            if item.startswith(TAG) and not item[len(TAG) :].strip():
                self.error(at.item(i), "a `tag:` pattern needs a tag name after the colon")
            else:
                found.append(item)
        if isinstance(value, list) and not value:
            self.error(at, "an empty list gives access to no workspace; leave the key out for all")
        return tuple(found)

    def error(self, at: At, message: str) -> None:
        if len(self.problems) >= MAX_PROBLEMS:
            self.dropped += 1
            return
        where = f"{at.file}: {at.path}: " if at.path else f"{at.file}: "
        self.problems.append(where + message)

    # The whole file.

    def mapping(
        self,
        at: At,
        value: Any,
        keys: Collection[str],
        required: Collection[str] = (),
    ) -> dict[str, Any] | None:
        if value is MISSING:
            return None
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            self.error(at, f"expected a mapping, got {describe(value)}")
            return None
        section: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.error(at, f"keys must be strings, got {describe(key)}")
            elif key not in keys:
                self.error(at.key(short(key)), unknown_key(key, keys))
            else:
                section[key] = item
        for key in required:
            if section.get(key) is None:
                got = ", got null" if key in section else ""
                self.error(at.key(key), f"is required{got}")
                section[key] = MISSING  # reported: the value checks stay quiet about it
        return section

    def items(self, at: At, value: Any) -> list[Any]:
        if value is None or value is MISSING:
            return []
        if not isinstance(value, list):
            self.error(at, f"expected a list, got {describe(value)}")
            return []
        return value

    def str_list(self, at: At, value: Any, single: bool = False) -> list[str]:
        if single and isinstance(value, str):
            return [self.string(at, value)]
        return [self.string(at.item(i), item) for i, item in enumerate(self.items(at, value))]

    def string(self, at: At, value: Any) -> str:
        if value is MISSING:
            return ""
        if not isinstance(value, str):
            self.error(at, f"expected a string, got {describe(value)}")
            return ""
        if len(value) > MAX_STRING:
            self.error(at, f"is too long: {len(value)} characters, at most {MAX_STRING}")
            return ""
        if not value.strip():
            self.error(at, "must not be empty")
            return ""
        if _CONTROL.search(value):
            self.error(at, f"must not contain control characters, got {describe(value)}")
            return ""
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            self.error(at, "must be text: it holds a lone surrogate escape (\\ud800-\\udfff)")
            return ""
        return value

    def optional_string(self, at: At, value: Any) -> str | None:
        return None if value is None else self.string(at, value)

    def path(self, at: At, value: Any, base_dir: Path) -> Path | None:
        if value is None:
            return None
        text = self.string(at, value)
        if not text:
            return None
        return Path(os.path.normpath(base_dir / text))  # an absolute `text` replaces base_dir

    def integer(self, at: At, value: Any, default: int, lo: int, hi: int | None = None) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(at, f"expected an integer, got {describe(value)}")
            return default
        if value < lo or (hi is not None and value > hi):
            bounds = f"{lo} to {hi}" if hi is not None else f"at least {lo}"
            self.error(at, f"must be {bounds}, got {value}")
            return default
        return value

    def boolean(self, at: At, value: Any, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(at, f"expected true or false, got {describe(value)}")
            return default
        return value

    def choice(self, at: At, value: Any, choices: tuple[str, ...], default: str) -> str:
        if value not in choices or not isinstance(value, str):
            hint = suggest(value, choices) if isinstance(value, str) else ""
            self.error(at, f"expected one of {', '.join(choices)}, got {describe(value)}{hint}")
            return default
        return value

    def mode(self, at: At, value: Any, default: Mode) -> Mode:
        if value is None:
            return default
        return Mode(self.choice(at, value, tuple(m.value for m in Mode), default.value))

    def duration(self, at: At, value: Any, default: float) -> float:
        if value is None:
            return default
        try:
            return parse_duration(value)
        except ValueError as e:
            self.error(at, str(e))
            return default

    def positive_duration(self, at: At, value: Any, default: float) -> float:
        seconds = self.duration(at, value, default)
        if seconds == 0:
            self.error(at, "must be more than 0")
            return default
        return seconds

    def poll_interval(self, at: At, value: Any, default: float) -> float:
        seconds = self.duration(at, value, default)
        if 0 < seconds < 1:
            self.error(at, f"must be 0 (webhooks only) or at least 1s, got {describe(value)}")
            return default
        return seconds

    def delete_limit(self, at: At, value: Any, default: DeleteLimit | None) -> DeleteLimit | None:
        """`max_deletes`: a count of steps (`50`) or a share of the live steps (`"20%"`)."""
        if value is None:
            return default
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                self.error(at, f"must be a count of at least 0 or a percentage, got {value}")
                return default
            return DeleteLimit(count=value)
        match = _PERCENT.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            self.error(
                at, f'expected a count like 50 or a percentage like "20%", got {describe(value)}'
            )
            return default
        percent = float(match.group(1))
        if not 0 < percent <= 100:
            self.error(
                at, f"a percentage must be more than 0% and at most 100%, got {describe(value)}"
            )
            return default
        return DeleteLimit(percent=percent)

    def workspace_id(self, at: At, value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # `id: 12345`, as users write it
        ws_id = self.string(at, value)
        if ws_id and not _WORKSPACE_ID.fullmatch(ws_id):
            self.error(
                at,
                "expected letters, digits, '.', '_' or '-' (at most 128, starting with a letter "
                f"or digit), got {describe(ws_id)}",
            )
        return ws_id

    def branch(self, at: At, value: Any, default: str) -> str:
        if value is None:
            return default
        branch = short_branch(self.string(at, value))
        if not branch:
            if isinstance(value, str) and value.strip():
                self.error(at, "must name a branch after refs/heads/")
            return default
        problem = branch_problem(branch)  # git's own rule, shared with webhooks and export
        if problem:
            self.error(at, f"is not a valid branch name ({problem}): {describe(value)}")
            return default
        return branch

    def repo_path(self, at: At, value: Any, default: str) -> str:
        if value is None:
            return default
        text = self.string(at, value)
        if not text:
            return default
        if text.startswith("/"):
            self.error(at, f"must be relative to the repository root, got {describe(text)}")
            return default
        parts = [p for p in text.split("/") if p not in ("", ".")]
        if ".." in parts:
            self.error(at, f"must not contain '..', got {describe(text)}")
            return default
        return "/".join(parts)

    def notify(self, at: At, value: Any) -> tuple[str, ...]:
        addresses = self.str_list(at, value, single=True)
        for j, address in enumerate(addresses):
            if address and not _EMAIL.fullmatch(address):
                where = at.item(j) if isinstance(value, list) else at
                self.error(where, f"expected an e-mail address, got {describe(address)}")
        return tuple(addresses)

    def email(self, at: At, value: Any) -> str:
        address = self.string(at, value)
        if address and not _EMAIL.fullmatch(address):
            self.error(at, f"expected an e-mail address, got {describe(address)}")
        return address


# --- Messages ----------------------------------------------------------------------------------


def describe(value: Any) -> str:
    """A value for a message: its type and, when short, the value itself."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"bool {str(value).lower()}"
    if isinstance(value, str):
        return f"str {quote(value)}" if len(value) <= 80 else f"str of {len(value)} characters"
    if isinstance(value, int | float):
        return f"{type(value).__name__} {value}"
    if isinstance(value, list):
        return f"list of {len(value)} items"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def quote(value: Any) -> str:
    return json.dumps(short(str(value)), ensure_ascii=False)


def short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def suggest(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {quote(close[0])}?)" if close else ""


def unknown_key(key: str, keys: Collection[str]) -> str:
    if f"{key}_env" in keys:
        # Never echo the value: it is the secret.
        return (
            f"secrets never sit in the file: use {key}_env (an environment variable) "
            f"or {key}_file (a file, e.g. a systemd credential) instead of {key}"
        )
    if key in _PLAIN_SECRET_KEYS:
        forms = sorted(k for k in keys if k.endswith("_env"))
        use = " or ".join(f"{k} / {k.removesuffix('_env')}_file" for k in forms)
        return (
            f"secrets never sit in the file: use {use}"
            if use
            else (
                f"secrets never sit in the file, and {key} is not a key here; "
                f"valid keys: {', '.join(keys)}"
            )
        )
    return f"unknown key {quote(key)}{suggest(key, keys)}; valid keys: {', '.join(keys)}"
