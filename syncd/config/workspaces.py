"""The `defaults` and `workspaces` sections: each workspace, its source, and what it reports.

A part of `SectionParser` (which inherits them), apart because a workspace is a subject of its
own. `known_providers` is the `providers` section, parsed before the workspaces that name it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from syncd.config.checks import At, quote
from syncd.config.checks_section import CheckSections
from syncd.config.delivery import DeliverySections
from syncd.config.history import HistorySections
from syncd.config.reporting import ReportingSections
from syncd.config.types import (
    CheckConfig,
    DeleteLimit,
    HistoryConfig,
    PromotionConfig,
    ProviderConfig,
    SourceConfig,
    WindowConfig,
    WorkspaceConfig,
)
from syncd.config.verify import VerifyConfig, verify_section
from syncd.core import urls
from syncd.core.model import Mode

_WORKSPACE_KEYS = (
    "id",
    "name",
    "tags",
    "mode",
    "source",
    "poll_interval",
    "allow_empty",
    "max_deletes",
    "notify",
    "badge",
    "verify",
    "report",
    "history",
    "windows",
    "promotion",
    "checks",
    "on_check_failure",
)
_SOURCE_KEYS = (
    "url",
    "branch",
    "path",
    "username",
    "password_env",
    "password_file",
    "ca_file",
    "provider",
)
_DEFAULTS_KEYS = (
    "mode",
    "branch",
    "path",
    "poll_interval",
    "max_deletes",
    "verify",
    "history",
    "windows",
    "promotion",
    "checks",
    "on_check_failure",
)


@dataclass(frozen=True)
class Defaults:
    mode: Mode = Mode.MANUAL
    branch: str = "main"
    path: str = "export/steps"
    poll_interval: float = 60.0
    max_deletes: DeleteLimit | None = None
    verify: VerifyConfig | None = None
    history: HistoryConfig = field(default_factory=HistoryConfig)
    windows: tuple[WindowConfig, ...] = ()
    promotion: PromotionConfig | None = None
    checks: tuple[CheckConfig, ...] = ()
    on_check_failure: Literal["rollback", "keep"] | None = None  # None: by the mode


class WorkspaceSections(ReportingSections, HistorySections, DeliverySections, CheckSections):
    """Parsers of `defaults`, `workspaces` and what a workspace holds."""

    known_providers: Mapping[str, ProviderConfig] = MappingProxyType({})

    def defaults(self, at: At, value: Any) -> Defaults:
        section = self.mapping(at, value, _DEFAULTS_KEYS) or {}
        before = len(self.problems)
        builtin = Defaults()
        defaults = Defaults(
            mode=self.mode(at.key("mode"), section.get("mode"), builtin.mode),
            branch=self.branch(at.key("branch"), section.get("branch"), builtin.branch),
            path=self.repo_path(at.key("path"), section.get("path"), builtin.path),
            poll_interval=self.poll_interval(
                at.key("poll_interval"), section.get("poll_interval"), builtin.poll_interval
            ),
            max_deletes=self.delete_limit(
                at.key("max_deletes"), section.get("max_deletes"), builtin.max_deletes
            ),
            verify=verify_section(self, at.key("verify"), section.get("verify"), at.file.parent),
            history=self.history(at.key("history"), section.get("history"), builtin.history),
            windows=self.windows(at.key("windows"), section.get("windows")),
            promotion=self.promotion(at.key("promotion"), section.get("promotion")),
            checks=self.checks(at.key("checks"), section.get("checks")),
            on_check_failure=None
            if section.get("on_check_failure") is None
            else self.on_check_failure(
                at.key("on_check_failure"), section["on_check_failure"], "rollback"
            ),
        )
        # A broken default is reported once, here; the workspaces carry on with the built-in one.
        return defaults if len(self.problems) == before else builtin

    def workspaces(
        self, at: At, value: Any, defaults: Defaults, seen: dict[str, At]
    ) -> list[WorkspaceConfig]:
        workspaces: list[WorkspaceConfig] = []
        for i, item in enumerate(self.items(at, value)):
            raw_id = item.get("id") if isinstance(item, dict) else None
            ws_id = None
            if isinstance(raw_id, str | int) and not isinstance(raw_id, bool):
                ws_id = str(raw_id)
            ws_at = at.item(i, f" (id {quote(ws_id)})" if ws_id is not None else "")
            before = len(self.problems)
            ws = self.workspace(ws_at, item, defaults)
            valid = ws is not None and len(self.problems) == before
            if ws_id is not None and ws_id in seen:
                first = seen[ws_id]
                self.error(
                    ws_at.key("id"),
                    f"duplicate workspace id {quote(ws_id)}: also defined in {first.file} "
                    f"at {first.path}",
                )
                valid = False
            elif ws_id is not None:
                seen[ws_id] = ws_at
            if ws is not None and valid:
                workspaces.append(ws)
        return workspaces

    def workspace(self, at: At, value: Any, defaults: Defaults) -> WorkspaceConfig | None:
        section = self.mapping(at, value, _WORKSPACE_KEYS, required=("id", "name", "source"))
        if section is None:
            return None
        source = self.source(at.key("source"), section.get("source"), defaults)
        mode = self.mode(at.key("mode"), section.get("mode"), defaults.mode)
        by_mode: Literal["rollback", "keep"] = "rollback" if mode is Mode.AUTOMATIC else "keep"
        return WorkspaceConfig(
            id=self.workspace_id(at.key("id"), section.get("id")),
            name=self.string(at.key("name"), section.get("name")),
            tags=tuple(self.str_list(at.key("tags"), section.get("tags"))),
            mode=mode,
            source=source,
            poll_interval=self.poll_interval(
                at.key("poll_interval"), section.get("poll_interval"), defaults.poll_interval
            ),
            allow_empty=self.boolean(at.key("allow_empty"), section.get("allow_empty"), False),
            notify=self.notify(at.key("notify"), section.get("notify")),
            file=at.file,
            max_deletes=self.delete_limit(
                at.key("max_deletes"), section.get("max_deletes"), defaults.max_deletes
            ),
            badge=self.boolean(at.key("badge"), section.get("badge"), False),
            verify=verify_section(self, at.key("verify"), section.get("verify"), at.file.parent)
            or defaults.verify,
            report=self.report(at, section.get("report"), source, self.known_providers),
            history=self.history(at.key("history"), section.get("history"), defaults.history),
            # A workspace's own `windows` and `promotion` replace the defaults' (null: none).
            windows=self.windows(at.key("windows"), section["windows"])
            if "windows" in section
            else defaults.windows,
            promotion=self.promotion(at.key("promotion"), section["promotion"])
            if "promotion" in section
            else _default_promotion(defaults, section.get("id")),
            # Own `checks` replace the defaults' whole (`checks: []`: none).
            checks=self.checks(at.key("checks"), section["checks"])
            if "checks" in section
            else defaults.checks,
            on_check_failure=self.on_check_failure(
                at.key("on_check_failure"),
                section.get("on_check_failure"),
                defaults.on_check_failure or by_mode,
            ),
        )

    def source(self, at: At, value: Any, defaults: Defaults) -> SourceConfig:
        section = self.mapping(at, value, _SOURCE_KEYS, required=("url",)) or {}
        url = ""
        if section.get("url") is not None:
            url = self.string(at.key("url"), section["url"])
        if url:
            try:
                urls.check_source_url(url)
            except ValueError as e:
                self.error(at.key("url"), str(e))
        ca_file = None
        if section.get("ca_file") is not None:
            ca_file = self.path(at.key("ca_file"), section["ca_file"], at.file.parent)
            if ca_file is not None and not (ca_file.is_file() and os.access(ca_file, os.R_OK)):
                self.error(at.key("ca_file"), f"{ca_file} is not a readable file")
        return SourceConfig(
            url=url,
            branch=self.branch(at.key("branch"), section.get("branch"), defaults.branch),
            path=self.repo_path(at.key("path"), section.get("path"), defaults.path),
            username=self.optional_string(at.key("username"), section.get("username")),
            password=self.secret(at, section, "password", at.file.parent),
            ca_file=ca_file,
            provider=self.optional_string(at.key("provider"), section.get("provider")),
        )


def _default_promotion(defaults: Defaults, ws_id: Any) -> PromotionConfig | None:
    """The default `promotion`, but not for the workspace it names (it would follow itself)."""
    promotion = defaults.promotion
    return None if promotion is None or promotion.after == str(ws_id) else promotion
