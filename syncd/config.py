"""Configuration: YAML into validated, frozen objects.

`load_config` reads the main file and its includes, checks every key, collects every problem
and raises one ConfigError that lists them all (also as `.problems`), so that `check-config`
reports everything at once. Each problem names the file, the key path and the bad value, never
a secret: secrets come from the environment (`X_env`) or from a file (`X_file`), and are held
in `Secret`, whose repr shows where the value came from, not the value.

Workspace ids may be written as YAML integers (`id: 12345`); they are read as strings.
"""

from __future__ import annotations

import difflib
import glob
import json
import math
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, NoReturn, cast

import yaml  # type: ignore[import-untyped,unused-ignore]

from syncd import urls
from syncd.errors import ConfigError, NotFound
from syncd.model import WEBHOOK_PROVIDERS, Mode

DEFAULT_CONFIG_PATH = Path("/etc/syncd/syncd.yaml")
DEFAULT_STATE_DIR = Path("/var/lib/syncd")
TOKEN_SCOPES = frozenset({"read", "sync", "write", "export"})
TlsMode = Literal["none", "starttls", "tls"]
MAX_STRING = 4096  # longer strings where a name, URL or path is expected are refused
MAX_PROBLEMS = 100  # a runaway file (a list of a million bad tags) still gives a readable report


# --- The configuration -------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Secret:
    """A secret value; repr and str show only where it came from."""

    value: str = field(repr=False)
    source: str  # "env GIT_TOKEN" or "file /run/credentials/syncd.service/git"

    def reveal(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return f"Secret({self.source})"

    __str__ = __repr__


@dataclass(frozen=True)
class SourceConfig:
    url: str  # https, without credentials
    branch: str = "main"
    path: str = "export/steps"  # relative, no trailing slash; "" is the repository root
    username: str | None = None
    password: Secret | None = None
    ca_file: Path | None = None


@dataclass(frozen=True)
class WorkspaceConfig:
    id: str
    name: str
    tags: tuple[str, ...]
    mode: Mode
    source: SourceConfig
    poll_interval: float  # seconds; 0 = webhooks only
    allow_empty: bool
    notify: tuple[str, ...]
    file: Path  # the file that defined it


@dataclass(frozen=True)
class TokenConfig:
    name: str
    token: Secret
    scopes: frozenset[str]  # a subset of TOKEN_SCOPES


@dataclass(frozen=True)
class WebhookConfig:
    secrets: tuple[Secret, ...]
    # GitLab's signing tokens (whsec_...) for Standard Webhooks signatures.
    signing_secrets: tuple[Secret, ...] = ()
    # Azure DevOps sends basic auth: the secrets are the password, this is the user name.
    username: str | None = None


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    tls: TlsMode
    from_addr: str
    username: str | None = None
    password: Secret | None = None
    timeout: float = 30.0


@dataclass(frozen=True)
class NotificationsConfig:
    interval: float = 900.0
    smtp: SmtpConfig | None = None


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"  # an IPv6 address without brackets
    port: int = 8080
    max_body_bytes: int = 1048576
    # An addition to the contract: how long an automatic workspace waits after an edit
    # outside git before overwriting it (a burst of edits is reconciled once), and how many
    # workspaces sync at once.
    self_heal_delay: float = 2.0
    max_parallel_syncs: int = 4


@dataclass(frozen=True)
class StoreConfig:
    # load_config writes `sqlite:///` + an absolute path, i.e. `sqlite:////var/lib/syncd/syncd.db`,
    # which SQLAlchemy and store.open_store read alike.
    url: str

    @property
    def sqlite_path(self) -> Path:
        # As in file URLs, `sqlite:///var/x.db` is /var/x.db (the contract's example means that),
        # and so is SQLAlchemy's `sqlite:////var/x.db`; `sqlite:x.db`, with no slashes, is relative.
        rest = self.url.removeprefix("sqlite:")
        if rest.startswith("//"):
            return Path("/" + rest[2:].lstrip("/"))
        return Path(rest)


@dataclass(frozen=True)
class GitConfig:
    timeout: float = 30.0
    author_name: str = "syncd"
    author_email: str = "syncd@localhost"


@dataclass(frozen=True)
class Config:
    path: Path
    files: tuple[Path, ...]  # every file read (main + includes), for the file watcher
    server: ServerConfig
    state_dir: Path
    store: StoreConfig
    tokens: tuple[TokenConfig, ...]
    webhooks: Mapping[str, WebhookConfig]  # provider -> config
    notifications: NotificationsConfig
    git: GitConfig
    workspaces: tuple[WorkspaceConfig, ...]

    def workspace(self, ws_id: str) -> WorkspaceConfig:
        for ws in self.workspaces:
            if ws.id == ws_id:
                return ws
        raise NotFound(f"workspace {ws_id!r} is not configured")


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """$SYNCD_CONFIG, else /etc/syncd/syncd.yaml."""
    environ = os.environ if environ is None else environ
    return Path(environ["SYNCD_CONFIG"]) if environ.get("SYNCD_CONFIG") else DEFAULT_CONFIG_PATH


def load_config(path: Path | str, environ: Mapping[str, str] | None = None) -> Config:
    """Read and check the configuration; raise ConfigError listing every problem."""
    parser = _Parser(os.environ if environ is None else environ)
    config = parser.config(Path(os.path.abspath(path)))
    if parser.problems or config is None:
        more = [f"... and {parser.dropped} more problems"] if parser.dropped else []
        _raise(parser.problems + more)
    return config


# --- Durations ---------------------------------------------------------------------------------

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
_DURATION = re.compile(rf"(?:{_NUMBER}(?:ms|s|m|h|d))+")
_DURATION_PART = re.compile(rf"({_NUMBER})(ms|s|m|h|d)")


def parse_duration(text: str | int | float) -> float:
    """Seconds in `30s`, `5m`, `1h`, `1h30m`, `500ms`, `2d` or a bare number of seconds."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"expected a duration such as 30s, 5m or 1h, got {_describe(text)}")
    if isinstance(text, str):
        spec = text.strip()
        if spec.startswith("-"):
            raise ValueError(f"a duration may not be negative, got {_describe(text)}")
        if len(spec) <= 64 and re.fullmatch(_NUMBER, spec):
            seconds = float(spec)
        elif len(spec) <= 64 and _DURATION.fullmatch(spec):
            parts = _DURATION_PART.findall(spec)
            seconds = sum(float(n) * _UNITS[unit] for n, unit in parts)
        else:
            raise ValueError(
                f"expected a duration such as 30s, 5m, 1h30m or 500ms, got {_describe(text)}"
            )
    else:
        try:
            seconds = float(text)
        except OverflowError:
            raise ValueError(f"a duration must be finite, got {_describe(text)}") from None
    if not math.isfinite(seconds):
        raise ValueError(f"a duration must be finite, got {_describe(text)}")
    if seconds < 0:
        raise ValueError(f"a duration may not be negative, got {_describe(text)}")
    return seconds


# --- Reading and checking ----------------------------------------------------------------------

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
)
_WORKSPACE_KEYS = ("id", "name", "tags", "mode", "source", "poll_interval", "allow_empty", "notify")
_SOURCE_KEYS = ("url", "branch", "path", "username", "password_env", "password_file", "ca_file")
_DEFAULTS_KEYS = ("mode", "branch", "path", "poll_interval")
_SMTP_KEYS = ("host", "port", "tls", "from", "username", "password_env", "password_file", "timeout")
_PLAIN_SECRET_KEYS = frozenset(
    {"password", "token", "secret", "secrets", "signing_secret", "signing_secrets"}
)
_TLS_PORTS: dict[str, int] = {"none": 25, "starttls": 587, "tls": 465}

_WORKSPACE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_EMAIL = re.compile(r"[^@\s<>()\[\],;:\"]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Names shown in messages: a lower-case "name" may be the secret itself, pasted in the wrong key.
_SHOWN_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BAD_BRANCH_CHARS = re.compile(r"[\s\x00-\x1f\x7f~^:?*\[\\]")
_MAX_SECRET_FILE = 1 << 20


class _Missing:
    """A required key that is absent: reported once, then passed over by the value checks."""


_MISSING: Any = _Missing()
_LISTEN = re.compile(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([^:\[\]\s]+):([0-9]{1,5})")


@dataclass(frozen=True)
class _At:
    """Where a value sits: its file and key path, e.g. `workspaces[2] (id "12345").source.url`."""

    file: Path
    path: str = ""

    def key(self, name: str) -> _At:
        return _At(self.file, f"{self.path}.{name}" if self.path else name)

    def item(self, index: int, label: str = "") -> _At:
        return _At(self.file, f"{self.path}[{index}]{label}")


@dataclass(frozen=True)
class _Defaults:
    mode: Mode = Mode.MANUAL
    branch: str = "main"
    path: str = "export/steps"
    poll_interval: float = 60.0


class _Parser:
    """Checks one configuration. Helpers record a problem and return a harmless fallback; a
    section whose checks added problems is dropped, and load_config raises at the end."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []
        self.dropped = 0

    def error(self, at: _At, message: str) -> None:
        if len(self.problems) >= MAX_PROBLEMS:
            self.dropped += 1
            return
        where = f"{at.file}: {at.path}: " if at.path else f"{at.file}: "
        self.problems.append(where + message)

    # The whole file.

    def config(self, path: Path) -> Config | None:
        at = _At(path)
        top = self.mapping(at, self.whole_file(path), _TOP_KEYS)
        if top is None:
            return None
        base_dir = path.parent
        state_dir = self.path(at.key("state_dir"), top.get("state_dir"), base_dir)
        state_dir = state_dir or DEFAULT_STATE_DIR
        # In the order of the contract's example, so that problems come in file order.
        server = self.server(at.key("server"), top.get("server"))
        store = self.store(at.key("store"), top.get("store"), base_dir, state_dir)
        includes = self.includes(at.key("include"), top.get("include"), path)
        tokens = self.tokens(at.key("tokens"), top.get("tokens"), base_dir)
        webhooks = self.webhooks(at.key("webhooks"), top.get("webhooks"), base_dir)
        notifications = self.notifications(
            at.key("notifications"), top.get("notifications"), base_dir
        )
        defaults = self.defaults(at.key("defaults"), top.get("defaults"))
        seen: dict[str, _At] = {}
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
        )
        if config.notifications.smtp is None:
            for ws in config.workspaces:
                if ws.notify:
                    self.error(
                        seen[ws.id].key("notify"),
                        "sending e-mail needs notifications.smtp, which is not configured",
                    )
        return config

    def read(self, path: Path) -> Any:
        try:
            text = path.read_bytes()
        except OSError as e:
            self.error(_At(path), f"cannot read the file: {e.strerror or e}")
            return None
        try:
            doc = yaml.load(text, Loader=_YamlLoader)  # a SafeLoader: no arbitrary objects
        except yaml.MarkedYAMLError as e:
            # Only the parser's own words: the quoted source line could hold anything.
            mark = e.problem_mark or e.context_mark
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            what = " ".join(p for p in (e.context, e.problem) if p)
            self.error(_At(path), f"{where}invalid YAML: {what}")
            return None
        except yaml.YAMLError as e:
            self.error(_At(path), f"invalid YAML: {e}")
            return None
        except RecursionError:
            self.error(_At(path), "invalid YAML: nested too deeply")
            return None
        except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError) as e:
            # PyYAML's constructors raise these for tagged nonsense and over-long integers.
            self.error(_At(path), f"invalid YAML: a value cannot be read ({type(e).__name__})")
            return None
        if doc is None:
            self.error(_At(path), "the file is empty")
        return doc

    def includes(self, at: _At, value: Any, main: Path) -> tuple[Path, ...]:
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
            what = _describe(doc) if isinstance(doc, list) else f"{type(doc).__name__} (not shown)"
            self.error(_At(path), f"expected a mapping, got {what}")
            return _MISSING
        return doc

    def included(
        self, file: Path, defaults: _Defaults, seen: dict[str, _At]
    ) -> list[WorkspaceConfig]:
        at = _At(file)
        doc = self.whole_file(file)
        if isinstance(doc, dict) and "include" in doc:
            self.error(at.key("include"), "an included file may not include other files")
            doc = {k: v for k, v in doc.items() if k != "include"}
        top = self.mapping(at, doc, ("workspaces",))
        if top is None:
            return []
        return self.workspaces(at.key("workspaces"), top.get("workspaces"), defaults, seen)

    # Sections.

    def server(self, at: _At, value: Any) -> ServerConfig:
        section = (
            self.mapping(
                at, value, ("listen", "max_body_bytes", "self_heal_delay", "max_parallel_syncs")
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
                        f'expected "host:port" or "[ipv6]:port", got {_describe(listen)}',
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
        return ServerConfig(
            host=host,
            port=port,
            max_body_bytes=max_body,
            self_heal_delay=delay,
            max_parallel_syncs=parallel,
        )

    def store(self, at: _At, value: Any, base_dir: Path, state_dir: Path) -> StoreConfig:
        section = self.mapping(at, value, ("url",)) or {}
        if section.get("url") is None:
            return StoreConfig(url=f"sqlite:///{state_dir / 'syncd.db'}")
        url = self.string(at.key("url"), section["url"])
        if url.startswith("sqlite:///"):
            path = Path(StoreConfig(url).sqlite_path)
            if path == Path("/"):
                self.error(at.key("url"), f"names no database file: {_describe(url)}")
        elif url.startswith("sqlite:") and not url.startswith("sqlite:/") and url != "sqlite:":
            path = base_dir / url.removeprefix("sqlite:")
        else:
            if url:
                self.error(
                    at.key("url"),
                    "expected sqlite:///ABSOLUTE/PATH or sqlite:RELATIVE/PATH (only SQLite "
                    f"is supported), got {_describe(urls.redact_url(url))}",
                )
            path = state_dir / "syncd.db"
        return StoreConfig(url=f"sqlite:///{Path(os.path.normpath(path))}")

    def tokens(self, at: _At, value: Any, base_dir: Path) -> tuple[TokenConfig, ...]:
        tokens: list[TokenConfig] = []
        names: set[str] = set()
        for i, item in enumerate(self.items(at, value)):
            before = len(self.problems)
            name_value = item.get("name") if isinstance(item, dict) else None
            label = f" (name {_quote(name_value)})" if isinstance(name_value, str) else ""
            item_at = at.item(i, label)
            keys = ("name", "token_env", "token_file", "scopes")
            section = self.mapping(item_at, item, keys, required=("name", "scopes"))
            if section is None:
                continue
            name = self.string(item_at.key("name"), section.get("name"))
            if name in names:
                self.error(item_at.key("name"), f"duplicate token name {_quote(name)}")
            names.add(name)
            token = self.secret(item_at, section, "token", base_dir, required=True)
            scopes = self.str_list(item_at.key("scopes"), section.get("scopes"))
            for j, scope in enumerate(scopes):
                if scope not in TOKEN_SCOPES:
                    self.error(
                        item_at.key("scopes").item(j),
                        f"unknown scope {_quote(scope)}{_suggest(scope, TOKEN_SCOPES)}; "
                        f"valid scopes: {', '.join(sorted(TOKEN_SCOPES))}",
                    )
            if "scopes" in section and not scopes and isinstance(section["scopes"], list):
                self.error(item_at.key("scopes"), "a token needs at least one scope")
            if len(self.problems) == before and token is not None:
                tokens.append(TokenConfig(name=name, token=token, scopes=frozenset(scopes)))
        return tuple(tokens)

    def webhooks(self, at: _At, value: Any, base_dir: Path) -> Mapping[str, WebhookConfig]:
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

    def notifications(self, at: _At, value: Any, base_dir: Path) -> NotificationsConfig:
        section = self.mapping(at, value, ("interval", "smtp")) or {}
        interval = self.duration(at.key("interval"), section.get("interval"), 900.0)
        if interval == 0:
            self.error(at.key("interval"), "must be more than 0")
        smtp = None
        if section.get("smtp") is not None:
            smtp = self.smtp(at.key("smtp"), section["smtp"], base_dir)
        return NotificationsConfig(interval=interval, smtp=smtp)

    def smtp(self, at: _At, value: Any, base_dir: Path) -> SmtpConfig | None:
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
        return SmtpConfig(
            host=self.string(at.key("host"), section.get("host")),
            port=self.integer(at.key("port"), section.get("port"), _TLS_PORTS[tls], 1, 65535),
            tls=cast(TlsMode, tls),
            from_addr=self.email(at.key("from"), section.get("from")),
            username=username,
            password=password,
            timeout=self.positive_duration(at.key("timeout"), section.get("timeout"), 30.0),
        )

    def git(self, at: _At, value: Any) -> GitConfig:
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

    def defaults(self, at: _At, value: Any) -> _Defaults:
        section = self.mapping(at, value, _DEFAULTS_KEYS) or {}
        before = len(self.problems)
        builtin = _Defaults()
        defaults = _Defaults(
            mode=self.mode(at.key("mode"), section.get("mode"), builtin.mode),
            branch=self.branch(at.key("branch"), section.get("branch"), builtin.branch),
            path=self.repo_path(at.key("path"), section.get("path"), builtin.path),
            poll_interval=self.poll_interval(
                at.key("poll_interval"), section.get("poll_interval"), builtin.poll_interval
            ),
        )
        # A broken default is reported once, here; the workspaces carry on with the built-in one.
        return defaults if len(self.problems) == before else builtin

    def workspaces(
        self, at: _At, value: Any, defaults: _Defaults, seen: dict[str, _At]
    ) -> list[WorkspaceConfig]:
        workspaces: list[WorkspaceConfig] = []
        for i, item in enumerate(self.items(at, value)):
            raw_id = item.get("id") if isinstance(item, dict) else None
            ws_id = None
            if isinstance(raw_id, str | int) and not isinstance(raw_id, bool):
                ws_id = str(raw_id)
            ws_at = at.item(i, f" (id {_quote(ws_id)})" if ws_id is not None else "")
            before = len(self.problems)
            ws = self.workspace(ws_at, item, defaults)
            valid = ws is not None and len(self.problems) == before
            if ws_id is not None and ws_id in seen:
                first = seen[ws_id]
                self.error(
                    ws_at.key("id"),
                    f"duplicate workspace id {_quote(ws_id)}: also defined in {first.file} "
                    f"at {first.path}",
                )
                valid = False
            elif ws_id is not None:
                seen[ws_id] = ws_at
            if ws is not None and valid:
                workspaces.append(ws)
        return workspaces

    def workspace(self, at: _At, value: Any, defaults: _Defaults) -> WorkspaceConfig | None:
        section = self.mapping(at, value, _WORKSPACE_KEYS, required=("id", "name", "source"))
        if section is None:
            return None
        return WorkspaceConfig(
            id=self.workspace_id(at.key("id"), section.get("id")),
            name=self.string(at.key("name"), section.get("name")),
            tags=tuple(self.str_list(at.key("tags"), section.get("tags"))),
            mode=self.mode(at.key("mode"), section.get("mode"), defaults.mode),
            source=self.source(at.key("source"), section.get("source"), defaults),
            poll_interval=self.poll_interval(
                at.key("poll_interval"), section.get("poll_interval"), defaults.poll_interval
            ),
            allow_empty=self.boolean(at.key("allow_empty"), section.get("allow_empty"), False),
            notify=self.notify(at.key("notify"), section.get("notify")),
            file=at.file,
        )

    def source(self, at: _At, value: Any, defaults: _Defaults) -> SourceConfig:
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
        )

    # Secrets.

    def secret(
        self, at: _At, section: dict[str, Any], base: str, base_dir: Path, required: bool = False
    ) -> Secret | None:
        env_key, file_key = f"{base}_env", f"{base}_file"
        if env_key in section and file_key in section:
            self.error(at, f"give {env_key} or {file_key}, not both")
        elif section.get(env_key) is not None:
            return self.env_secret(at.key(env_key), section[env_key])
        elif section.get(file_key) is not None:
            return self.file_secret(at.key(file_key), section[file_key], base_dir)
        elif required:
            self.error(at, f"needs {env_key} or {file_key}")
        return None

    def secret_list(
        self, at: _At, section: dict[str, Any], base: str, base_dir: Path
    ) -> tuple[Secret, ...]:
        secrets: list[Secret] = []
        for suffix in ("_env", "_file"):
            key = base + suffix
            value = section.get(key)
            for i, item in enumerate(self.str_list(at.key(key), value, single=True)):
                where = at.key(key).item(i) if isinstance(value, list) else at.key(key)
                if suffix == "_env":
                    secret = self.env_secret(where, item)
                else:
                    secret = self.file_secret(where, item, base_dir)
                if secret is not None:
                    secrets.append(secret)
        return tuple(secrets)

    def env_secret(self, at: _At, value: Any) -> Secret | None:
        name = self.string(at, value)
        if not name:
            return None
        if not _ENV_NAME.fullmatch(name):
            # Not shown: a value that is no variable name may be the secret itself.
            self.error(at, "expected the name of an environment variable (value not shown)")
            return None
        shown = name if _SHOWN_ENV_NAME.fullmatch(name) else "(name not shown)"
        secret = self.environ.get(name)
        if secret is None:
            self.error(at, f"environment variable {shown} is not set")
        elif not secret:
            self.error(at, f"environment variable {shown} is empty")
        else:
            return Secret(secret, f"env {name}")
        return None

    def file_secret(self, at: _At, value: Any, base_dir: Path) -> Secret | None:
        path = self.path(at, value, base_dir)
        if path is None:
            return None
        try:
            with path.open("rb") as f:
                data = f.read(_MAX_SECRET_FILE + 1)
        except OSError as e:
            self.error(at, f"cannot read {path}: {e.strerror or e}")
            return None
        if len(data) > _MAX_SECRET_FILE:
            self.error(at, f"{path} is larger than {_MAX_SECRET_FILE} bytes")
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self.error(at, f"{path} is not UTF-8 text")
            return None
        # Strip one trailing newline, as editors and `echo` add it; keep anything else.
        text = text[:-2] if text.endswith("\r\n") else text.removesuffix("\n")
        if not text:
            self.error(at, f"{path} is empty")
            return None
        return Secret(text, f"file {path}")

    # Values.

    def mapping(
        self,
        at: _At,
        value: Any,
        keys: Collection[str],
        required: Collection[str] = (),
    ) -> dict[str, Any] | None:
        if value is _MISSING:
            return None
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            self.error(at, f"expected a mapping, got {_describe(value)}")
            return None
        section: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.error(at, f"keys must be strings, got {_describe(key)}")
            elif key not in keys:
                self.error(at.key(_short(key)), _unknown_key(key, keys))
            else:
                section[key] = item
        for key in required:
            if section.get(key) is None:
                got = ", got null" if key in section else ""
                self.error(at.key(key), f"is required{got}")
                section[key] = _MISSING  # reported: the value checks stay quiet about it
        return section

    def items(self, at: _At, value: Any) -> list[Any]:
        if value is None or value is _MISSING:
            return []
        if not isinstance(value, list):
            self.error(at, f"expected a list, got {_describe(value)}")
            return []
        return value

    def str_list(self, at: _At, value: Any, single: bool = False) -> list[str]:
        if single and isinstance(value, str):
            return [self.string(at, value)]
        return [self.string(at.item(i), item) for i, item in enumerate(self.items(at, value))]

    def string(self, at: _At, value: Any) -> str:
        if value is _MISSING:
            return ""
        if not isinstance(value, str):
            self.error(at, f"expected a string, got {_describe(value)}")
            return ""
        if len(value) > MAX_STRING:
            self.error(at, f"is too long: {len(value)} characters, at most {MAX_STRING}")
            return ""
        if not value.strip():
            self.error(at, "must not be empty")
            return ""
        if _CONTROL.search(value):
            self.error(at, f"must not contain control characters, got {_describe(value)}")
            return ""
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            self.error(at, "must be text: it holds a lone surrogate escape (\\ud800-\\udfff)")
            return ""
        return value

    def optional_string(self, at: _At, value: Any) -> str | None:
        return None if value is None else self.string(at, value)

    def path(self, at: _At, value: Any, base_dir: Path) -> Path | None:
        if value is None:
            return None
        text = self.string(at, value)
        if not text:
            return None
        return Path(os.path.normpath(base_dir / text))  # an absolute `text` replaces base_dir

    def integer(self, at: _At, value: Any, default: int, lo: int, hi: int | None = None) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(at, f"expected an integer, got {_describe(value)}")
            return default
        if value < lo or (hi is not None and value > hi):
            bounds = f"{lo} to {hi}" if hi is not None else f"at least {lo}"
            self.error(at, f"must be {bounds}, got {value}")
            return default
        return value

    def boolean(self, at: _At, value: Any, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(at, f"expected true or false, got {_describe(value)}")
            return default
        return value

    def choice(self, at: _At, value: Any, choices: tuple[str, ...], default: str) -> str:
        if value not in choices or not isinstance(value, str):
            hint = _suggest(value, choices) if isinstance(value, str) else ""
            self.error(at, f"expected one of {', '.join(choices)}, got {_describe(value)}{hint}")
            return default
        return value

    def mode(self, at: _At, value: Any, default: Mode) -> Mode:
        if value is None:
            return default
        return Mode(self.choice(at, value, tuple(m.value for m in Mode), default.value))

    def duration(self, at: _At, value: Any, default: float) -> float:
        if value is None:
            return default
        try:
            return parse_duration(value)
        except ValueError as e:
            self.error(at, str(e))
            return default

    def positive_duration(self, at: _At, value: Any, default: float) -> float:
        seconds = self.duration(at, value, default)
        if seconds == 0:
            self.error(at, "must be more than 0")
            return default
        return seconds

    def poll_interval(self, at: _At, value: Any, default: float) -> float:
        seconds = self.duration(at, value, default)
        if 0 < seconds < 1:
            self.error(at, f"must be 0 (webhooks only) or at least 1s, got {_describe(value)}")
            return default
        return seconds

    def workspace_id(self, at: _At, value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # `id: 12345`, as users write it
        ws_id = self.string(at, value)
        if ws_id and not _WORKSPACE_ID.fullmatch(ws_id):
            self.error(
                at,
                "expected letters, digits, '.', '_' or '-' (at most 128, starting with a letter "
                f"or digit), got {_describe(ws_id)}",
            )
        return ws_id

    def branch(self, at: _At, value: Any, default: str) -> str:
        if value is None:
            return default
        branch = self.string(at, value).removeprefix("refs/heads/")
        if not branch:
            if isinstance(value, str) and value.strip():
                self.error(at, "must name a branch after refs/heads/")
            return default
        problem = _branch_problem(branch)
        if problem:
            self.error(at, f"is not a valid branch name ({problem}): {_describe(value)}")
            return default
        return branch

    def repo_path(self, at: _At, value: Any, default: str) -> str:
        if value is None:
            return default
        text = self.string(at, value)
        if not text:
            return default
        if text.startswith("/"):
            self.error(at, f"must be relative to the repository root, got {_describe(text)}")
            return default
        parts = [p for p in text.split("/") if p not in ("", ".")]
        if ".." in parts:
            self.error(at, f"must not contain '..', got {_describe(text)}")
            return default
        return "/".join(parts)

    def notify(self, at: _At, value: Any) -> tuple[str, ...]:
        addresses = self.str_list(at, value, single=True)
        for j, address in enumerate(addresses):
            if address and not _EMAIL.fullmatch(address):
                where = at.item(j) if isinstance(value, list) else at
                self.error(where, f"expected an e-mail address, got {_describe(address)}")
        return tuple(addresses)

    def email(self, at: _At, value: Any) -> str:
        address = self.string(at, value)
        if address and not _EMAIL.fullmatch(address):
            self.error(at, f"expected an e-mail address, got {_describe(address)}")
        return address


# --- Helpers -----------------------------------------------------------------------------------


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
                    None, None, f"duplicate key {_describe(key)}", key_node.start_mark
                )
        return cast(dict[Any, Any], super().construct_mapping(node, deep=deep))


def _raise(problems: list[str]) -> NoReturn:
    error = ConfigError("\n".join(problems))
    error.problems = problems  # type: ignore[attr-defined]
    raise error


def _describe(value: Any) -> str:
    """A value for a message: its type and, when short, the value itself."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"bool {str(value).lower()}"
    if isinstance(value, str):
        return f"str {_quote(value)}" if len(value) <= 80 else f"str of {len(value)} characters"
    if isinstance(value, int | float):
        return f"{type(value).__name__} {value}"
    if isinstance(value, list):
        return f"list of {len(value)} items"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def _quote(value: Any) -> str:
    return json.dumps(_short(str(value)), ensure_ascii=False)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _suggest(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {_quote(close[0])}?)" if close else ""


def _unknown_key(key: str, keys: Collection[str]) -> str:
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
    return f"unknown key {_quote(key)}{_suggest(key, keys)}; valid keys: {', '.join(keys)}"


def _branch_problem(branch: str) -> str | None:
    if _BAD_BRANCH_CHARS.search(branch):
        return "no spaces or any of ~^:?*[\\"
    if ".." in branch or "@{" in branch or "//" in branch or branch == "@":
        return "no '..', '@{' or '//'"
    if branch.startswith(("-", "/")) or branch.endswith(("/", ".")):
        return "no leading '-' or '/', no trailing '/' or '.'"
    if any(part.startswith(".") or part.endswith(".lock") for part in branch.split("/")):
        return "no part starting with '.' or ending with '.lock'"
    return None
