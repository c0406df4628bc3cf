"""The `providers` section (a git host's API, for statuses and pull request comments) and a
workspace's `report` key, which says what syncd tells that host.

A part of `SectionParser` (which inherits them), as `notifications` is. A workspace's provider is
the entry its `source.provider` names, else the entry whose API is on the source's host
(`api.github.com` serves `github.com`), else none: then nothing is reported. With a provider,
commit statuses are on unless `report.commit_status: false`; pull request plans only with
`report.pull_requests: true` (they show live steps to whoever opens a pull request).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast
from urllib.parse import urlsplit

from syncd.config.checks import At, quote, suggest
from syncd.config.credentials import SecretReader
from syncd.config.types import (
    PROVIDER_KINDS,
    GitHubAppConfig,
    ProviderConfig,
    ProviderKind,
    ReportConfig,
    Secret,
    SourceConfig,
    UnresolvedSecret,
)
from syncd.core import urls

_PROVIDER_KEYS = ("kind", "api_url", "token_env", "token_file", "app", "ca_file", "timeout")
_APP_KEYS = ("id", "installation_id", "private_key_env", "private_key_file")
REPORT_KEYS = ("commit_status", "pull_requests")
# A pull request's plan shows the live steps it would change, to whoever can open one: asked
# for by name (`report.pull_requests: true`), never implied by a provider alone.
REPORT_DEFAULTS: Mapping[str, bool] = MappingProxyType(
    {"commit_status": True, "pull_requests": False}
)
# The web host a hosted service's API serves, when the API has a host of its own.
_API_SERVES: Mapping[str, str] = MappingProxyType({"api.github.com": "github.com"})


class ReportingSections(SecretReader):
    """Parsers of `providers` and of a workspace's `report`."""

    def providers(self, at: At, value: Any, base_dir: Path) -> Mapping[str, ProviderConfig]:
        section = self.mapping(at, value, ()) if not isinstance(value, dict) else value
        found: dict[str, ProviderConfig] = {}
        for name, item in (section or {}).items():
            if not isinstance(name, str) or not name or len(name) > 64:
                self.error(at, f"provider names must be short strings, got {quote(name)}")
                continue
            before = len(self.problems)
            provider = self.provider(at.key(name), name, item, base_dir)
            if provider is not None and len(self.problems) == before:
                found[name] = provider
        return MappingProxyType(found)

    def provider(self, at: At, name: str, value: Any, base_dir: Path) -> ProviderConfig | None:
        section = self.mapping(at, value, _PROVIDER_KEYS, required=("api_url",))
        if section is None:
            return None
        kind = section.get("kind", name if name in PROVIDER_KINDS else None)
        if kind not in PROVIDER_KINDS:
            said = f"got {quote(kind)}" if kind is not None else "the entry's name is none of them"
            self.error(at.key("kind"), f"must be one of {', '.join(PROVIDER_KINDS)} ({said})")
            return None
        api_url = self.string(at.key("api_url"), section.get("api_url")).rstrip("/")
        if api_url:
            try:
                urls.check_source_url(api_url)  # https, a host, no credentials in it
            except ValueError as e:
                self.error(at.key("api_url"), str(e).replace("URL", "API URL", 1))
        token = self.token(at, self.secret(at, section, "token", base_dir))
        app = self.app(at.key("app"), section.get("app"), base_dir)
        if (token is None) == (app is None):
            self.error(at, "needs token_env or token_file, or app (GitHub only), and not both")
        if app is not None and kind != "github":
            self.error(at.key("app"), f"an App is GitHub's; a {kind} provider takes a token")
        ca_file = None
        if section.get("ca_file") is not None:
            ca_file = self.path(at.key("ca_file"), section["ca_file"], base_dir)
            if ca_file is not None and not (ca_file.is_file() and os.access(ca_file, os.R_OK)):
                self.error(at.key("ca_file"), f"{ca_file} is not a readable file")
        timeout = self.positive_duration(at.key("timeout"), section.get("timeout"), 10.0)
        return ProviderConfig(
            name, cast(ProviderKind, kind), api_url, token, app, ca_file, min(timeout, 120.0)
        )

    def token(self, at: At, token: Secret | None) -> Secret | None:
        """A token as an HTTP header can carry it: the line end a secret file or a Kubernetes
        secret often adds is dropped; whitespace or control characters inside are refused
        (named by where the token comes from, never shown)."""
        if token is None or isinstance(token, UnresolvedSecret):
            return token
        value = token.reveal().strip()
        if not value or any(c.isspace() or not c.isprintable() for c in value):
            self.error(
                at,
                f"the token from {token.source} is empty or holds whitespace or control characters",
            )
            return None
        return Secret(value, token.source)

    def app(self, at: At, value: Any, base_dir: Path) -> GitHubAppConfig | None:
        if value is None:
            return None
        section = self.mapping(at, value, _APP_KEYS, required=("id", "installation_id"))
        if section is None:
            return None
        app_id = self.integer(at.key("id"), section.get("id"), 0, 1, 2**53)
        installation = self.integer(
            at.key("installation_id"), section.get("installation_id"), 0, 1, 2**53
        )
        key = self.secret(at, section, "private_key", base_dir, required=True)
        if key is None:
            return None
        if not isinstance(key, UnresolvedSecret) and "-----BEGIN" not in key.reveal():
            # Named by where it comes from: the key itself is never shown.
            self.error(at, f"the private key from {key.source} is not a PEM key")
        return GitHubAppConfig(app_id, installation, key)

    def report(
        self,
        at: At,
        value: Any,
        source: SourceConfig,
        providers: Mapping[str, ProviderConfig],
    ) -> ReportConfig | None:
        """What the workspace reports, to which entry of `providers`; None: nothing."""
        section = self.mapping(at.key("report"), value, REPORT_KEYS) or {}
        wanted = {k: self.boolean(at.key("report").key(k), section.get(k), REPORT_DEFAULTS[k])
                  for k in REPORT_KEYS}  # fmt: skip
        provider = self.source_provider(at.key("source").key("provider"), source, providers)
        if provider is None:
            if value is not None and any(wanted.values()):
                self.error(
                    at.key("report"),
                    "needs a provider: name an entry of `providers` in source.provider"
                    f" (configured: {', '.join(sorted(providers)) or 'none'})",
                )
            return None
        if not any(wanted.values()):
            return None  # a provider, and both reports turned off
        repository = repository_path(source.url)
        parts = [p for p in repository.split("/") if p]
        if len(parts) < 2 or (provider.kind != "gitlab" and len(parts) != 2):
            shape = "group/project" if provider.kind == "gitlab" else "owner/name"
            self.error(
                at.key("source").key("url"),
                f"reports to {provider.kind} need the repository as {shape} in the URL's path,"
                f" got {quote(repository)}",
            )
            return None
        return ReportConfig(provider.name, repository, **wanted)

    def source_provider(
        self, at: At, source: SourceConfig, providers: Mapping[str, ProviderConfig]
    ) -> ProviderConfig | None:
        if source.provider is not None:
            found = providers.get(source.provider)
            if found is None:
                self.error(
                    at,
                    f"no provider {quote(source.provider)} in `providers`"
                    f"{suggest(source.provider, sorted(providers))}",
                )
            return found
        return provider_for(source.url, providers)


def provider_for(url: str, providers: Mapping[str, ProviderConfig]) -> ProviderConfig | None:
    """The entry whose API is on the source URL's host (the first, in the file's order)."""
    host = (urlsplit(url).hostname or "").lower()
    for provider in providers.values():
        api_host = (urlsplit(provider.api_url).hostname or "").lower()
        if host and _API_SERVES.get(api_host, api_host) == host:
            return provider
    return None


def repository_path(url: str) -> str:
    """`owner/name` (GitLab: `group/sub/project`) from a source URL."""
    path = urlsplit(url).path.strip("/")
    return path.removesuffix(".git")
