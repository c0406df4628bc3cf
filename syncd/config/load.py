"""Loading: the main file and its includes, read as YAML and put together into one Config.

`load_config` checks every key, collects every problem and raises one ConfigError that lists
them all (also as `.problems`), so that `check-config` reports everything at once.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn, cast

import yaml  # type: ignore[import-untyped,unused-ignore]

from syncd.config.checks import MISSING, At, describe, quote, suggest
from syncd.config.sections import SectionParser
from syncd.config.types import DEFAULT_CONFIG_PATH, DEFAULT_STATE_DIR, Config, WorkspaceConfig
from syncd.config.workspaces import Defaults
from syncd.core.access import unmatched
from syncd.core.errors import ConfigError

_TOP_KEYS = (
    "server",
    "state_dir",
    "store",
    "include",
    "tokens",
    "webhooks",
    "notifications",
    "defaults",
    "workspaces",
    "git",
    "console",
    "providers",
    "metrics",
)


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """$SYNCD_CONFIG, else /etc/syncd/syncd.yaml."""
    environ = os.environ if environ is None else environ
    return Path(environ["SYNCD_CONFIG"]) if environ.get("SYNCD_CONFIG") else DEFAULT_CONFIG_PATH


def load_config(
    path: Path | str, environ: Mapping[str, str] | None = None, lazy_secrets: bool = False
) -> Config:
    """Read and check the configuration; raise ConfigError listing every problem.

    `lazy_secrets`: a secret this process cannot read fails only when revealed (see
    SecretReader.lazy), for commands that may need none of them."""
    parser = _Loader(os.environ if environ is None else environ, lazy_secrets)
    config = parser.config(Path(os.path.abspath(path)))
    if parser.problems or config is None:
        more = [f"... and {parser.dropped} more problems"] if parser.dropped else []
        _raise(parser.problems + more)
    return dataclasses.replace(config, warnings=tuple(parser.warnings))


class _Loader(SectionParser):
    """Reads the files; the sections check what is in them."""

    # The whole file.

    def config(self, path: Path) -> Config | None:
        at = At(path)
        top = self.mapping(at, self.whole_file(path), _TOP_KEYS)
        if top is None:
            return None
        base_dir = path.parent
        state_dir = self.path(at.key("state_dir"), top.get("state_dir"), base_dir)
        state_dir = state_dir or DEFAULT_STATE_DIR
        # In the order of the contract's example, so that problems come in file order.
        server = self.server(at.key("server"), top.get("server"), base_dir)
        store = self.store(at.key("store"), top.get("store"), base_dir, state_dir)
        includes = self.includes(at.key("include"), top.get("include"), path)
        tokens = self.tokens(at.key("tokens"), top.get("tokens"), base_dir)
        webhooks = self.webhooks(at.key("webhooks"), top.get("webhooks"), base_dir)
        notifications = self.notifications(
            at.key("notifications"), top.get("notifications"), base_dir
        )
        providers = self.providers(at.key("providers"), top.get("providers"), base_dir)
        self.known_providers = providers
        defaults = self.defaults(at.key("defaults"), top.get("defaults"))
        seen: dict[str, At] = {}
        workspaces = self.workspaces(at.key("workspaces"), top.get("workspaces"), defaults, seen)
        for file in includes:
            workspaces += self.included(file, defaults, seen)
        config = Config(
            path=path,
            files=(path, *includes),
            server=server,
            state_dir=state_dir,
            store=store,
            tokens=tokens,
            webhooks=webhooks,
            notifications=notifications,
            git=self.git(at.key("git"), top.get("git")),
            workspaces=tuple(workspaces),
            console=self.console(
                at.key("console"), top.get("console"), base_dir, server.public_url
            ),
            providers=providers,
            metrics=self.metrics(at.key("metrics"), top.get("metrics")),
        )
        if config.notifications.smtp is None:
            for ws in config.workspaces:
                if ws.notify:
                    self.error(
                        seen[ws.id].key("notify"),
                        "sending e-mail needs notifications.smtp, which is not configured",
                    )
        self.unmatched_patterns(at, config)
        self.promotions(config, seen)
        ids = {ws.id for ws in config.workspaces}
        for i, target in enumerate(config.notifications.targets):
            for j, ws_id in enumerate(target.workspaces):
                if ws_id not in ids:
                    where = (
                        at.key("notifications")
                        .key("targets")
                        .item(i, f" (name {quote(target.name)})")
                    )
                    self.error(
                        where.key("workspaces").item(j),
                        f"no workspace {quote(ws_id)}{suggest(ws_id, sorted(ids))}",
                    )
        return config

    def unmatched_patterns(self, at: At, config: Config) -> None:
        """A token's or a console role's workspace pattern that matches no workspace: a
        warning (a typo, or a workspace still to come), not an error."""
        known = [(ws.id, ws.tags) for ws in config.workspaces]
        for i, token in enumerate(config.tokens):
            for pattern in unmatched(token.workspaces, known):
                where = at.key("tokens").item(i, f" (name {quote(token.name)})").key("workspaces")
                self.warn(where, f"{quote(pattern)} matches no workspace")
        for i, role in enumerate(config.console.roles):
            for pattern in unmatched(role.workspaces, known):
                where = at.key("console").key("roles").item(i, f" (group {quote(role.group)})")
                self.warn(where.key("workspaces"), f"{quote(pattern)} matches no workspace")

    def promotions(self, config: Config, seen: dict[str, At]) -> None:
        """Each `promotion.after` names another workspace, and following them never comes
        back round (a cycle would hold every workspace in it back for good)."""
        after = {ws.id: ws.promotion.after for ws in config.workspaces if ws.promotion}
        for ws_id, upstream in after.items():
            where = seen[ws_id].key("promotion").key("after")
            if upstream == ws_id:
                self.error(where, "a workspace cannot be promoted after itself")
            elif upstream not in seen:
                self.error(
                    where, f"no workspace {quote(upstream)}{suggest(upstream, sorted(seen))}"
                )
        reported: set[str] = set()
        for start in after:
            chain = [start]
            while (nxt := after.get(chain[-1])) is not None and nxt not in chain:
                chain.append(nxt)  # at most one step per workspace: bounded
            if nxt is None or nxt == chain[-1] or reported & set(chain):
                continue
            cycle = chain[chain.index(nxt) :]
            reported.update(cycle)
            self.error(
                seen[cycle[0]].key("promotion").key("after"),
                "promotions form a cycle: " + " -> ".join(quote(c) for c in [*cycle, cycle[0]]),
            )

    def read(self, path: Path) -> Any:
        try:
            text = path.read_bytes()
        except OSError as e:
            self.error(At(path), f"cannot read the file: {e.strerror or e}")
            return None
        try:
            doc = yaml.load(text, Loader=_YamlLoader)  # a SafeLoader: no arbitrary objects
        except yaml.MarkedYAMLError as e:
            # Only the parser's own words: the quoted source line could hold anything.
            mark = e.problem_mark or e.context_mark
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            what = " ".join(p for p in (e.context, e.problem) if p)
            self.error(At(path), f"{where}invalid YAML: {what}")
            return None
        except yaml.YAMLError as e:
            self.error(At(path), f"invalid YAML: {e}")
            return None
        except RecursionError:
            self.error(At(path), "invalid YAML: nested too deeply")
            return None
        except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError) as e:
            # PyYAML's constructors raise these for tagged nonsense and over-long integers.
            self.error(At(path), f"invalid YAML: a value cannot be read ({type(e).__name__})")
            return None
        if doc is None:
            self.error(At(path), "the file is empty")
        return doc

    def includes(self, at: At, value: Any, main: Path) -> tuple[Path, ...]:
        files: list[Path] = []
        for i, pattern in enumerate(self.str_list(at, value, single=True)):
            if not pattern:
                continue
            where = at.item(i) if isinstance(value, list) else at
            full = pattern if os.path.isabs(pattern) else os.path.join(main.parent, pattern)
            matches = sorted(glob.glob(full, recursive=True))
            if not matches and not any(c in pattern for c in "*?["):
                # A glob may match nothing; a plain name that is missing drops workspaces.
                self.error(where, f"{full} does not exist")
            for match in matches:
                file = Path(os.path.abspath(match))
                if file == main:
                    self.error(where, f"includes the main config file itself ({file})")
                elif not file.is_file():
                    self.error(where, f"{file} is not a readable file")
                elif file not in files:
                    files.append(file)
        return tuple(files)

    def whole_file(self, path: Path) -> Any:
        """A config file's document, which must be a mapping. Anything else is not shown:
        a secret file passed by mistake must not be printed."""
        doc = self.read(path)
        if doc is not None and not isinstance(doc, dict):
            what = describe(doc) if isinstance(doc, list) else f"{type(doc).__name__} (not shown)"
            self.error(At(path), f"expected a mapping, got {what}")
            return MISSING
        return doc

    def included(
        self, file: Path, defaults: Defaults, seen: dict[str, At]
    ) -> list[WorkspaceConfig]:
        at = At(file)
        doc = self.whole_file(file)
        if isinstance(doc, dict) and "include" in doc:
            self.error(at.key("include"), "an included file may not include other files")
            doc = {k: v for k, v in doc.items() if k != "include"}
        top = self.mapping(at, doc, ("workspaces",))
        if top is None:
            return []
        return self.workspaces(at.key("workspaces"), top.get("workspaces"), defaults, seen)


# libyaml's parser where PyYAML was built with it: a 1,000-workspace config loads in a sixth
# of the time. The constructor (what may be built from the text) is SafeLoader's either way.
_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _YamlLoader(_SafeLoader):  # type: ignore[misc,unused-ignore]
    """SafeLoader that refuses a key given twice in one mapping (safe_load keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base`; keys given next to it override the base's, as intended
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: construct_mapping reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {describe(key)}", key_node.start_mark
                )
        return cast(dict[Any, Any], super().construct_mapping(node, deep=deep))


def _raise(problems: list[str]) -> NoReturn:
    error = ConfigError("\n".join(problems))
    error.problems = problems  # type: ignore[attr-defined]
    raise error
