"""The `console` section: its sessions, OpenID Connect sign-in (`oidc`), the roles that map a
provider's groups to scopes over workspaces (`roles`), and whether API tokens may still sign in
(`token_sign_in`).

A part of `SectionParser` (which inherits it), as `reporting` is. Every problem names its key;
the client secret is a Secret, never shown.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from syncd.config.checks import At, describe, quote, suggest
from syncd.config.console_types import ConsoleConfig, OidcConfig, RoleConfig
from syncd.config.credentials import SecretReader
from syncd.config.types import SCOPES, UnresolvedSecret

CONSOLE_KEYS = (
    "session_key_env",
    "session_key_file",
    "session_lifetime",
    "oidc",
    "roles",
    "token_sign_in",
)
OIDC_KEYS = (
    "issuer",
    "client_id",
    "client_secret_env",
    "client_secret_file",
    "scopes",
    "groups_claim",
    "name_claim",
    "redirect_url",
)
ROLE_KEYS = ("group", "scopes", "workspaces")
CALLBACK_PATH = "/ui/oidc/callback"
# Plain http is for a provider (or a console) on this host only: the tests' provider, a laptop.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ConsoleSections(SecretReader):
    """The parser of `console`."""

    def console(
        self, at: At, value: Any, base_dir: Path, public_url: str | None = None
    ) -> ConsoleConfig:
        section = self.mapping(at, value, CONSOLE_KEYS) or {}
        key = self.secret(at, section, "session_key", base_dir)
        # An UnresolvedSecret (lazy loading) is judged when revealed, by the process that uses it.
        if key is not None and not isinstance(key, UnresolvedSecret) and len(key.reveal()) < 32:
            # Named by where it comes from: the value itself is never shown.
            self.error(at, f"the session key from {key.source} must be at least 32 characters")
        lifetime = self.positive_duration(
            at.key("session_lifetime"), section.get("session_lifetime"), 8 * 3600.0
        )
        oidc = None
        if section.get("oidc") is not None:
            oidc = self.oidc(at.key("oidc"), section["oidc"], base_dir, public_url)
        roles = self.roles(at.key("roles"), section.get("roles"))
        if section.get("roles") and section.get("oidc") is None:
            self.error(at.key("roles"), "roles map OpenID Connect groups: they need console.oidc")
        token_sign_in = self.boolean(
            at.key("token_sign_in"), section.get("token_sign_in"), default=True
        )
        if not token_sign_in and section.get("oidc") is None:
            self.error(
                at.key("token_sign_in"),
                "false leaves no way to sign in to the console: it needs console.oidc",
            )
        return ConsoleConfig(key, lifetime, oidc, roles, token_sign_in)

    def oidc(self, at: At, value: Any, base_dir: Path, public_url: str | None) -> OidcConfig | None:
        section = self.mapping(at, value, OIDC_KEYS, required=("issuer", "client_id"))
        if section is None:
            return None
        before = len(self.problems)
        issuer = self.string(at.key("issuer"), section["issuer"])
        if issuer:
            self.web_url(at.key("issuer"), issuer, query=False)
        client_id = self.string(at.key("client_id"), section["client_id"])
        secret = self.secret(at, section, "client_secret", base_dir)
        scopes = tuple(OidcConfig.scopes)
        if section.get("scopes") is not None:
            scopes = tuple(self.str_list(at.key("scopes"), section["scopes"]))
            if "openid" not in scopes:
                self.error(at.key("scopes"), f"must hold openid, got {describe(list(scopes))}")
        groups_claim = OidcConfig.groups_claim
        if section.get("groups_claim") is not None:
            groups_claim = self.string(at.key("groups_claim"), section["groups_claim"])
        name_claim = self.optional_string(at.key("name_claim"), section.get("name_claim"))
        redirect = self.optional_string(at.key("redirect_url"), section.get("redirect_url"))
        if redirect:
            self.web_url(at.key("redirect_url"), redirect, query=True)
        elif public_url:
            redirect = public_url.rstrip("/") + CALLBACK_PATH
        elif "redirect_url" not in section:
            self.error(
                at.key("redirect_url"),
                "is required when server.public_url is not set: the console's "
                f"{CALLBACK_PATH} as browsers reach it",
            )
        if len(self.problems) > before or not redirect:
            return None
        return OidcConfig(
            issuer=issuer,
            client_id=client_id,
            redirect_url=redirect,
            client_secret=secret,
            scopes=scopes,
            groups_claim=groups_claim,
            name_claim=name_claim or None,
        )

    def web_url(self, at: At, url: str, query: bool) -> None:
        """An https URL (plain http for this host only), with no credentials or fragment."""
        try:
            parts = urlsplit(url)
            host = parts.hostname or ""
        except ValueError:
            self.error(at, f"expected an https URL, got {describe(url)}")
            return
        if parts.scheme not in ("https", "http") or not host:
            self.error(at, f"expected an https URL, got {describe(url)}")
        elif parts.scheme == "http" and not is_loopback(host):
            self.error(
                at,
                "must be https (plain http only for this host: "
                f"{', '.join(sorted(LOOPBACK_HOSTS))}), got {describe(url)}",
            )
        elif parts.username is not None or parts.password is not None:
            self.error(at, "must not hold credentials")
        elif parts.fragment or (parts.query and not query):
            self.error(at, f"must have no {'fragment' if query else 'query or fragment'}")

    def roles(self, at: At, value: Any) -> tuple[RoleConfig, ...]:
        roles: list[RoleConfig] = []
        for i, item in enumerate(self.items(at, value)):
            group_value = item.get("group") if isinstance(item, dict) else None
            label = f" (group {quote(group_value)})" if isinstance(group_value, str) else ""
            item_at = at.item(i, label)
            section = self.mapping(item_at, item, ROLE_KEYS, required=("group", "scopes"))
            if section is None:
                continue
            before = len(self.problems)
            group = self.string(item_at.key("group"), section["group"])
            scopes = self.str_list(item_at.key("scopes"), section["scopes"])
            for j, scope in enumerate(scopes):
                if scope not in SCOPES:
                    self.error(
                        item_at.key("scopes").item(j),
                        f"unknown scope {quote(scope)}{suggest(scope, SCOPES)}; "
                        f"valid scopes: {', '.join(sorted(SCOPES))}",
                    )
            if isinstance(section["scopes"], list) and not scopes:
                self.error(item_at.key("scopes"), "a role needs at least one scope")
            patterns = self.patterns(item_at.key("workspaces"), section.get("workspaces"))
            if len(self.problems) == before:
                roles.append(RoleConfig(group, frozenset(scopes), patterns))
        return tuple(roles)
