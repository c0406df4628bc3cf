"""The configuration's sections, one method each, in the order of the contract's example.

Each turns its part of the YAML document into a frozen object from `types`, recording every
problem on the way; `load` reads the files and puts the sections together. The parsers of
`notifications` (smtp, targets) are inherited from `notifications.NotificationSections`, and
that of `console` from `console_section.ConsoleSections`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from syncd.config import listener
from syncd.config.checks import At, describe, quote, suggest
from syncd.config.console_section import ConsoleSections
from syncd.config.notifications import NotificationSections
from syncd.config.types import (
    POSTGRES_SCHEMES,
    SCOPES,
    GitConfig,
    MetricsConfig,
    ServerConfig,
    StoreConfig,
    TokenConfig,
    UnresolvedSecret,
    WebhookConfig,
)
from syncd.config.workspaces import WorkspaceSections
from syncd.core import urls
from syncd.core.model import WEBHOOK_PROVIDERS

_LISTEN = re.compile(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([^:\[\]\s]+):([0-9]{1,5})")


# An API token shorter than this is refused: one that can be guessed is no token.
MIN_TOKEN_LENGTH = 16


class SectionParser(NotificationSections, WorkspaceSections, ConsoleSections):
    """Checks each section; a section (or list item) that added problems is left out."""

    def server(self, at: At, value: Any, base_dir: Path) -> ServerConfig:
        section = (
            self.mapping(
                at,
                value,
                (
                    "listen",
                    "max_body_bytes",
                    "self_heal_delay",
                    "max_parallel_syncs",
                    "max_connections",
                    "header_timeout",
                    "max_remote_reads",
                    "intake_workers",
                    "tls",
                    "trusted_proxies",
                    "public_url",
                ),
            )
            or {}
        )
        host, port = ServerConfig.host, ServerConfig.port
        if section.get("listen") is not None:
            listen = self.string(at.key("listen"), section["listen"])
            match = _LISTEN.fullmatch(listen)
            if match is None:
                if listen:
                    self.error(
                        at.key("listen"),
                        f'expected "host:port" or "[ipv6]:port", got {describe(listen)}',
                    )
            else:
                host = match.group(1) or match.group(3)
                port = int(match.group(2) or match.group(4))
                if not 1 <= port <= 65535:
                    self.error(at.key("listen"), f"port must be 1 to 65535, got {port}")
        max_body = self.integer(
            at.key("max_body_bytes"), section.get("max_body_bytes"), ServerConfig.max_body_bytes, 1
        )
        delay = self.duration(
            at.key("self_heal_delay"), section.get("self_heal_delay"), ServerConfig.self_heal_delay
        )
        parallel = self.integer(
            at.key("max_parallel_syncs"),
            section.get("max_parallel_syncs"),
            ServerConfig.max_parallel_syncs,
            1,
            64,
        )
        connections = self.integer(
            at.key("max_connections"),
            section.get("max_connections"),
            ServerConfig.max_connections,
            16,
            65536,
        )
        header_timeout = self.positive_duration(
            at.key("header_timeout"), section.get("header_timeout"), ServerConfig.header_timeout
        )
        remote_reads = self.integer(
            at.key("max_remote_reads"),
            section.get("max_remote_reads"),
            ServerConfig.max_remote_reads,
            1,
            64,
        )
        intake_workers = self.integer(
            at.key("intake_workers"),
            section.get("intake_workers"),
            ServerConfig.intake_workers,
            0,
            64,
        )
        return ServerConfig(
            host=host,
            port=port,
            max_body_bytes=max_body,
            self_heal_delay=delay,
            max_parallel_syncs=parallel,
            max_connections=connections,
            header_timeout=header_timeout,
            max_remote_reads=remote_reads,
            intake_workers=intake_workers,
            **listener.listener_keys(self, at, section, base_dir, intake_workers),
        )

    def store(self, at: At, value: Any, base_dir: Path, state_dir: Path) -> StoreConfig:
        keys = ("url", "password_env", "password_file")
        section = self.mapping(at, value, keys) or {}
        if section.get("url") is None:
            for key in ("password_env", "password_file"):
                if key in section:
                    self.error(at.key(key), "a password needs a postgresql:// url")
            return StoreConfig(url=f"sqlite:///{state_dir / 'syncd.db'}")
        url = self.string(at.key("url"), section["url"])
        if url.startswith(POSTGRES_SCHEMES):
            self.postgres_url(at.key("url"), url)
            return StoreConfig(url=url, password=self.secret(at, section, "password", base_dir))
        for key in ("password_env", "password_file"):
            if key in section:
                self.error(at.key(key), "a password needs a postgresql:// url")
        if url.startswith("sqlite:///"):
            path = Path(StoreConfig(url).sqlite_path)
            if path == Path("/"):
                self.error(at.key("url"), f"names no database file: {describe(url)}")
        elif url.startswith("sqlite:") and not url.startswith("sqlite:/") and url != "sqlite:":
            path = base_dir / url.removeprefix("sqlite:")
        else:
            if url:
                self.error(
                    at.key("url"),
                    "expected sqlite:///ABSOLUTE/PATH, sqlite:RELATIVE/PATH or postgresql://"
                    f"[USER@]HOST[:PORT]/DATABASE, got {describe(urls.redact_url(url))}",
                )
            path = state_dir / "syncd.db"
        return StoreConfig(url=f"sqlite:///{Path(os.path.normpath(path))}")

    def postgres_url(self, at: At, url: str) -> None:
        """A PostgreSQL URL names a host and a database, and holds no password."""
        # Without user info and query: either may hold the password.
        shown = describe(urls.redact_url(url).split("?", 1)[0])
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
        except ValueError:
            self.error(at, f"expected postgresql://[USER@]HOST[:PORT]/DATABASE, got {shown}")
            return
        query = parse_qs(parts.query)
        if parts.password is not None or "password" in query:
            # The value is not shown: it is the secret.
            self.error(
                at,
                f"holds a password: give it with store.password_env or store.password_file"
                f" instead, got {shown}",
            )
        elif not parts.hostname or not parts.path.strip("/"):
            self.error(at, f"expected postgresql://[USER@]HOST[:PORT]/DATABASE, got {shown}")

    def tokens(self, at: At, value: Any, base_dir: Path) -> tuple[TokenConfig, ...]:
        tokens: list[TokenConfig] = []
        names: set[str] = set()
        for i, item in enumerate(self.items(at, value)):
            before = len(self.problems)
            name_value = item.get("name") if isinstance(item, dict) else None
            label = f" (name {quote(name_value)})" if isinstance(name_value, str) else ""
            item_at = at.item(i, label)
            keys = ("name", "token_env", "token_file", "scopes", "workspaces")
            section = self.mapping(item_at, item, keys, required=("name", "scopes"))
            if section is None:
                continue
            name = self.string(item_at.key("name"), section.get("name"))
            if name in names:
                self.error(item_at.key("name"), f"duplicate token name {quote(name)}")
            names.add(name)
            token = self.secret(item_at, section, "token", base_dir, required=True)
            # An UnresolvedSecret (lazy loading) is judged when revealed, by the one using it.
            short = token is not None and not isinstance(token, UnresolvedSecret)
            if short and token is not None and len(token.reveal()) < MIN_TOKEN_LENGTH:
                where = "token_file" if "token_file" in section else "token_env"
                self.error(
                    item_at.key(where),
                    f"the token from {token.source} is {len(token.reveal())} characters long;"
                    f" an API token needs at least {MIN_TOKEN_LENGTH}, so that it cannot be"
                    " guessed (e.g. `openssl rand -hex 32`)",
                )
            scopes = self.str_list(item_at.key("scopes"), section.get("scopes"))
            for j, scope in enumerate(scopes):
                if scope not in SCOPES:
                    self.error(
                        item_at.key("scopes").item(j),
                        f"unknown scope {quote(scope)}{suggest(scope, SCOPES)}; "
                        f"valid scopes: {', '.join(sorted(SCOPES))}",
                    )
            if "scopes" in section and not scopes and isinstance(section["scopes"], list):
                self.error(item_at.key("scopes"), "a token needs at least one scope")
            if len(self.problems) == before and token is not None:
                patterns = self.patterns(item_at.key("workspaces"), section.get("workspaces"))
                tokens.append(TokenConfig(name, token, frozenset(scopes), patterns))
        return tuple(tokens)

    def webhooks(self, at: At, value: Any, base_dir: Path) -> Mapping[str, WebhookConfig]:
        section = self.mapping(at, value, WEBHOOK_PROVIDERS) or {}
        hooks: dict[str, WebhookConfig] = {}
        for provider, raw in section.items():
            hook_at = at.key(provider)
            keys = ["secrets_env", "secrets_file"]
            if provider == "gitlab":
                keys += ["signing_secrets_env", "signing_secrets_file"]
            if provider == "azure-devops":
                keys += ["username"]
            before = len(self.problems)
            hook = self.mapping(hook_at, {} if raw is None else raw, keys)
            if hook is None:
                continue
            secrets = self.secret_list(hook_at, hook, "secrets", base_dir)
            signing = self.secret_list(hook_at, hook, "signing_secrets", base_dir)
            username = self.optional_string(hook_at.key("username"), hook.get("username"))
            if not secrets and not signing and len(self.problems) == before:
                also = (
                    " or signing_secrets_env/signing_secrets_file" if provider == "gitlab" else ""
                )
                self.error(hook_at, f"needs at least one secret: secrets_env or secrets_file{also}")
            if len(self.problems) == before:
                hooks[provider] = WebhookConfig(secrets, signing, username)
        return MappingProxyType(hooks)

    def git(self, at: At, value: Any) -> GitConfig:
        section = self.mapping(at, value, ("timeout", "author")) or {}
        author = self.mapping(at.key("author"), section.get("author"), ("name", "email")) or {}
        name = GitConfig.author_name
        if author.get("name") is not None:
            name = self.string(at.key("author").key("name"), author["name"])
        email = GitConfig.author_email
        if author.get("email") is not None:
            email = self.email(at.key("author").key("email"), author["email"])
        timeout = self.positive_duration(at.key("timeout"), section.get("timeout"), 30.0)
        return GitConfig(timeout=timeout, author_name=name, author_email=email)

    def metrics(self, at: At, value: Any) -> MetricsConfig:
        section = self.mapping(at, value, ("per_workspace_histograms",)) or {}
        key = "per_workspace_histograms"
        return MetricsConfig(
            per_workspace_histograms=self.boolean(at.key(key), section.get(key), False)
        )
