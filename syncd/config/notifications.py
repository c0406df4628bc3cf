"""The `notifications` section's parsers: the digest interval, `smtp` and `targets`.

A part of `SectionParser` (which inherits them), apart because SMTP and chat targets are a
subject of their own; the same rules as every section: each problem is recorded, and a section
or list item that added problems is left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

from syncd.config.checks import At, quote
from syncd.config.credentials import SecretReader
from syncd.config.types import (
    NotificationsConfig,
    SmtpConfig,
    TargetConfig,
    TlsMode,
    UnresolvedSecret,
)
from syncd.core import urls
from syncd.notify.chat import url_problem

_TARGET_KEYS = ("name", "url_env", "url_file", "workspaces", "tags")
_SMTP_KEYS = ("host", "port", "tls", "from", "username", "password_env", "password_file", "timeout")
_TLS_PORTS: Mapping[str, int] = MappingProxyType({"none": 25, "starttls": 587, "tls": 465})


class NotificationSections(SecretReader):
    """Parsers of `notifications` and what it holds."""

    def notifications(self, at: At, value: Any, base_dir: Path) -> NotificationsConfig:
        section = self.mapping(at, value, ("interval", "smtp", "targets")) or {}
        interval = self.duration(at.key("interval"), section.get("interval"), 900.0)
        if interval == 0:
            self.error(at.key("interval"), "must be more than 0")
        smtp = None
        if section.get("smtp") is not None:
            smtp = self.smtp(at.key("smtp"), section["smtp"], base_dir)
        targets = self.targets(at.key("targets"), section.get("targets"), base_dir)
        return NotificationsConfig(interval=interval, smtp=smtp, targets=targets)

    def targets(self, at: At, value: Any, base_dir: Path) -> tuple[TargetConfig, ...]:
        targets: list[TargetConfig] = []
        names: set[str] = set()
        for i, item in enumerate(self.items(at, value)):
            before = len(self.problems)
            name_value = item.get("name") if isinstance(item, dict) else None
            label = f" (name {quote(name_value)})" if isinstance(name_value, str) else ""
            item_at = at.item(i, label)
            section = self.mapping(item_at, item, _TARGET_KEYS, required=("name",))
            if section is None:
                continue
            name = self.string(item_at.key("name"), section.get("name"))
            if name in names:
                self.error(item_at.key("name"), f"duplicate target name {quote(name)}")
            names.add(name)
            url = self.secret(item_at, section, "url", base_dir, required=True)
            # A secret this process cannot read (a CLI without the daemon's secrets) is not
            # checked here; the daemon, which reads it, checks it.
            if url is not None and not isinstance(url, UnresolvedSecret):
                problem = url_problem(url.reveal())
                if problem is not None:
                    # Named by the key that holds it: the URL itself is a secret.
                    key = "url_env" if section.get("url_env") is not None else "url_file"
                    self.error(item_at.key(key), f"{problem} (URL not shown)")
            workspaces = self.str_list(item_at.key("workspaces"), section.get("workspaces"))
            tags = self.str_list(item_at.key("tags"), section.get("tags"))
            if len(self.problems) == before and url is not None:
                targets.append(TargetConfig(name, url, tuple(workspaces), tuple(tags)))
        return tuple(targets)

    def smtp(self, at: At, value: Any, base_dir: Path) -> SmtpConfig | None:
        section = self.mapping(at, value, _SMTP_KEYS, required=("host", "from"))
        if section is None:
            return None
        tls = "none"
        if section.get("tls") is not None:
            tls = self.choice(at.key("tls"), section["tls"], tuple(_TLS_PORTS), "none")
        username = self.optional_string(at.key("username"), section.get("username"))
        password = self.secret(at, section, "password", base_dir)
        if (username is None) != (password is None):
            self.error(at, "username and password_env/password_file go together")
        host = self.string(at.key("host"), section.get("host"))
        if password is not None and tls == "none" and not urls.is_loopback_host(host):
            # smtplib would send the login in clear across the network.
            self.error(
                at.key("tls"),
                f"a password is sent to {host!r} only over TLS: set tls: starttls or tls "
                "(tls: none with a password is only for a relay on this host)",
            )
        return SmtpConfig(
            host=host,
            port=self.integer(at.key("port"), section.get("port"), _TLS_PORTS[tls], 1, 65535),
            tls=cast(TlsMode, tls),
            from_addr=self.email(at.key("from"), section.get("from")),
            username=username,
            password=password,
            timeout=self.positive_duration(at.key("timeout"), section.get("timeout"), 30.0),
        )
