"""A workspace's `checks` (what must hold after an apply) and `on_check_failure` (what syncd
does when one still fails), per workspace or in `defaults`.

A part of `SectionParser` (which inherits them), as `windows` is. A workspace's own `checks`
replace the default list whole (`checks: []` turns a default off). `on_check_failure` defaults
to `rollback` for an automatic workspace and `keep` for a manual one (whose applies a person
asked for, and watches).
"""

from __future__ import annotations

import os
import re
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from syncd.config.checks import MISSING, At, describe, quote
from syncd.config.credentials import SecretReader
from syncd.config.types import CheckConfig, CommandCheck, HttpCheck, Secret

CHECK_KEYS = ("name", "http", "command", "timeout", "retries", "interval")
HTTP_KEYS = ("url", "expect_status", "expect_body", "ca_file")
COMMAND_KEYS = ("argv", "env")
MAX_ENV = 32  # variables a command check is given
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
ON_FAILURE = ("rollback", "keep")
MAX_CHECKS = 16  # each runs after every apply: a bounded few
MAX_RETRIES = 100
MAX_ARGS = 256
MAX_TIMEOUT = 3600.0  # a check that may take longer holds the workspace's worker that long


class CheckSections(SecretReader):
    """Parsers of `checks` and `on_check_failure`."""

    def checks(self, at: At, value: Any) -> tuple[CheckConfig, ...]:
        items = self.items(at, value)
        if len(items) > MAX_CHECKS:
            self.error(at, f"at most {MAX_CHECKS} checks, got {len(items)}")
            return ()
        found: list[CheckConfig] = []
        names: set[str] = set()
        for i, item in enumerate(items):
            before = len(self.problems)
            check = self.check(at.item(i), item)
            if check is not None and check.name in names:
                self.error(at.item(i).key("name"), f"duplicate check name {quote(check.name)}")
            elif check is not None and len(self.problems) == before:
                names.add(check.name)
                found.append(check)
        return tuple(found)

    def check(self, at: At, value: Any) -> CheckConfig | None:
        section = self.mapping(at, value, CHECK_KEYS, required=("name",))
        if section is None:
            return None
        name = self.string(at.key("name"), section["name"])
        http = command = None
        if section.get("http") is not None:
            http = self.http_check(at.key("http"), section["http"])
        if section.get("command") is not None:
            command = self.command_check(at.key("command"), section["command"])
        given = [k for k in ("http", "command") if section.get(k) is not None]
        if len(given) != 1:
            self.error(
                at, f"needs exactly one of http and command, got {' and '.join(given) or 'none'}"
            )
        timeout = self.positive_duration(at.key("timeout"), section.get("timeout"), 30.0)
        if timeout > MAX_TIMEOUT:
            self.error(at.key("timeout"), f"must be at most 1h, got {describe(section['timeout'])}")
        retries = self.integer(at.key("retries"), section.get("retries"), 3, 0, MAX_RETRIES)
        interval = self.duration(at.key("interval"), section.get("interval"), 5.0)
        if interval > MAX_TIMEOUT:
            self.error(at.key("interval"), "must be at most 1h")
        if not name or (http is None) == (command is None):
            return None
        return CheckConfig(name, http, command, timeout, retries, interval)

    def http_check(self, at: At, value: Any) -> HttpCheck | None:
        section = self.mapping(at, value, HTTP_KEYS, required=("url",))
        if section is None:
            return None
        url = self.string(at.key("url"), section["url"])
        if url:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                self.error(at.key("url"), f"must be an http(s) URL with a host, got {quote(url)}")
                url = ""
            elif parts.username is not None or parts.password is not None:
                self.error(at.key("url"), "must not hold credentials")  # never echoed
                url = ""
        status = self.integer(at.key("expect_status"), section.get("expect_status"), 200, 100, 599)
        body = self.optional_string(at.key("expect_body"), section.get("expect_body"))
        if body:
            try:
                re.compile(body)
            except re.error as e:
                self.error(at.key("expect_body"), f"is not a regular expression: {e}")
                body = None
        ca_file = None
        if section.get("ca_file") is not None:
            ca_file = self.path(at.key("ca_file"), section["ca_file"], at.file.parent)
            if ca_file is not None and not (ca_file.is_file() and os.access(ca_file, os.R_OK)):
                self.error(at.key("ca_file"), f"{ca_file} is not a readable file")
                ca_file = None
        return HttpCheck(url, status, body or None, ca_file) if url else None

    def command_check(self, at: At, value: Any) -> CommandCheck | None:
        section = self.mapping(at, value, COMMAND_KEYS, required=("argv",))
        if section is None or section["argv"] is MISSING:
            return None
        raw = section["argv"]
        if not isinstance(raw, list) or not raw:
            self.error(
                at.key("argv"), f"expected a list of at least one string, got {describe(raw)}"
            )
            return None
        if len(raw) > MAX_ARGS:
            self.error(at.key("argv"), f"at most {MAX_ARGS} arguments, got {len(raw)}")
            return None
        argv = self.str_list(at.key("argv"), raw)
        env = self.check_env(at.key("env"), section.get("env"))
        return CommandCheck(tuple(argv), env) if all(argv) else None

    def check_env(self, at: At, value: Any) -> tuple[tuple[str, str | Secret], ...]:
        """`env`: `NAME: value` as written, or `NAME_env: VAR` from the daemon's environment
        (a secret: never shown, scrubbed from logs)."""
        if value is None:
            return ()
        if not isinstance(value, dict) or len(value) > MAX_ENV:
            self.error(at, f"expected a mapping of at most {MAX_ENV} variables")
            return ()
        found: list[tuple[str, str | Secret]] = []
        for key, item in value.items():
            key = str(key)
            name = key.removesuffix("_env") if key.endswith("_env") else key
            if not _ENV_NAME.fullmatch(name):
                self.error(at.key(key), "is not an environment variable's name")
                continue
            if key.endswith("_env"):
                secret = self.env_secret(at.key(key), item)
                if secret is not None:
                    found.append((name, secret))
            else:
                found.append((name, self.string(at.key(key), item)))
        return tuple(found)

    def on_check_failure(
        self, at: At, value: Any, default: Literal["rollback", "keep"]
    ) -> Literal["rollback", "keep"]:
        if value is None:
            return default
        return cast(Literal["rollback", "keep"], self.choice(at, value, ON_FAILURE, default))
