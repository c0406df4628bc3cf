"""The configuration's types: frozen objects, with no I/O and no parsing.

`load.load_config` builds them; everything else in syncd only reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from syncd.config.check_types import CheckConfig as CheckConfig
from syncd.config.check_types import CommandCheck as CommandCheck
from syncd.config.check_types import HttpCheck as HttpCheck
from syncd.config.console_types import ConsoleConfig as ConsoleConfig
from syncd.config.delivery_types import HistoryConfig as HistoryConfig
from syncd.config.delivery_types import PromotionConfig as PromotionConfig
from syncd.config.delivery_types import WindowConfig as WindowConfig
from syncd.core.access import ALL, Access
from syncd.core.errors import ConfigError, NotFound
from syncd.core.model import Mode

DEFAULT_CONFIG_PATH = Path("/etc/syncd/syncd.yaml")
DEFAULT_STATE_DIR = Path("/var/lib/syncd")
# What an API token may be allowed to do, in the contract's order; one home for the API and config.
SCOPES: tuple[str, ...] = ("read", "sync", "write", "export", "audit")
TlsMode = Literal["none", "starttls", "tls"]
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


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


@dataclass(frozen=True, repr=False)
class UnresolvedSecret(Secret):
    """A secret the config names but this process cannot read (see SecretReader.lazy)."""

    problem: str = ""

    def reveal(self) -> str:
        raise ConfigError(f"this command needs a secret it cannot read: {self.problem}")


@dataclass(frozen=True)
class SourceConfig:
    url: str  # https, without credentials
    branch: str = "main"
    path: str = "export/steps"  # relative, no trailing slash; "" is the repository root
    username: str | None = None
    password: Secret | None = None
    ca_file: Path | None = None
    provider: str | None = None  # the entry of `providers` named (else told from the URL)


@dataclass(frozen=True)
class DeleteLimit:
    """`max_deletes`: at most `count` steps, or `percent` % of the live steps, in one sync."""

    count: int | None = None
    percent: float | None = None

    def allowed(self, live_total: int) -> int:
        """How many of `live_total` live steps one sync may delete."""
        if self.count is not None:
            return self.count
        return int(live_total * (self.percent or 0.0) / 100)

    def __str__(self) -> str:
        return str(self.count) if self.count is not None else f"{self.percent:g}%"


@dataclass(frozen=True)
class VerifyConfig:
    """`verify`: a commit is applied only when its own signature is good and made by a key
    listed here (SSH keys in git's allowed-signers format, OpenPGP public keys). At least one
    of the two is set; the files are read at each verification, so an edit on disk counts."""

    allowed_signers_file: Path | None
    gpg_keyring_file: Path | None


@dataclass(frozen=True)
class GitHubAppConfig:
    """`providers.<name>.app`: syncd acts as a GitHub App installation; its installation tokens
    are fetched with a JWT signed by the App's private key, and fetched again before they end."""

    app_id: int
    installation_id: int
    private_key: Secret  # PEM (from private_key_file or private_key_env)


ProviderKind = Literal["github", "gitlab", "gitea"]
PROVIDER_KINDS: tuple[ProviderKind, ...] = ("github", "gitlab", "gitea")


@dataclass(frozen=True)
class ProviderConfig:
    """An entry of `providers:`: one git host's API, for commit statuses and pull request
    comments. Exactly one of `token` and `app` (an App is GitHub's only)."""

    name: str  # the entry's key, which `source.provider` names
    kind: ProviderKind  # `kind:`, else the key when it is one of the kinds
    api_url: str  # https://api.github.com, https://gitlab.example.com/api/v4, .../api/v1
    token: Secret | None = None
    app: GitHubAppConfig | None = None
    ca_file: Path | None = None  # extra trust for a private CA, as sources have
    timeout: float = 10.0  # per request


@dataclass(frozen=True)
class ReportConfig:
    """`report:` of a workspace whose source has a provider: what syncd tells the host."""

    provider: str  # the entry of `providers:`
    repository: str  # the repository's path on the host: owner/name, GitLab's group/project
    commit_status: bool = True
    pull_requests: bool = False


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
    max_deletes: DeleteLimit | None = None  # None: any number of deletes (but see allow_empty)
    # `GET /api/v1/workspaces/{id}/badge.svg` answers without a token, so it is opt-in.
    badge: bool = False
    # None: commits are applied whether signed or not.
    verify: VerifyConfig | None = None
    # None: nothing is reported to the git host (no provider for the source).
    report: ReportConfig | None = None
    # When automatic changes may apply; () always.
    windows: tuple[WindowConfig, ...] = ()
    # None: every commit applies as soon as it lands.
    promotion: PromotionConfig | None = None
    history: HistoryConfig = field(default_factory=HistoryConfig)
    # Run after each apply of an automatic workspace; () none.
    checks: tuple[CheckConfig, ...] = ()
    # What a check that still fails does: "rollback" to the revision applied before (pinned,
    # suspended), or "keep" what was applied (the run is failed either way).
    on_check_failure: Literal["rollback", "keep"] = "keep"


@dataclass(frozen=True)
class TokenConfig:
    name: str
    token: Secret
    scopes: frozenset[str]  # a subset of SCOPES
    # Id globs and `tag:NAME`: the workspaces the scopes apply to (see syncd.core.access).
    workspaces: tuple[str, ...] = ALL

    def allows(self, scope: str) -> bool:
        """The scope, on some workspace at least (see `access` for which)."""
        return scope in self.scopes

    @property
    def access(self) -> Access:
        return Access.of(self.scopes, self.workspaces)


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
class TargetConfig:
    """A chat or webhook target: its URL (apprise's form) is a secret, it often holds a token.
    With no `workspaces` and no `tags` it watches every workspace; otherwise those named and
    those with one of the tags."""

    name: str
    url: Secret
    workspaces: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    def watches(self, ws: WorkspaceConfig) -> bool:
        if not self.workspaces and not self.tags:
            return True
        return ws.id in self.workspaces or any(tag in self.tags for tag in ws.tags)


@dataclass(frozen=True)
class NotificationsConfig:
    interval: float = 900.0
    smtp: SmtpConfig | None = None
    targets: tuple[TargetConfig, ...] = ()


@dataclass(frozen=True)
class TlsConfig:
    """`server.tls`: the listener's certificate chain and key (PEM), loaded again on reload;
    with `client_ca_file`, clients must present a certificate it signed."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None


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
    # Bounds a slow or hostile client cannot get past: open connections (each costs a file
    # descriptor), the time to send a request's head, and reads that talk to the remote (a diff).
    max_connections: int = 2048
    header_timeout: float = 10.0
    max_remote_reads: int = 4
    # Processes besides the daemon's that take connections on its port and answer the webhooks
    # that ask for nothing (see syncd.intake_front): webhooks answered on more than one core.
    intake_workers: int = 0
    # TLS on the daemon's own port (None: plain http, for a reverse proxy in front).
    tls: TlsConfig | None = None
    # Who may say X-Forwarded-For/-Proto (addresses or CIDRs); None: uvicorn's default, this
    # host (127.0.0.1) only; () trusts no one.
    trusted_proxies: tuple[str, ...] | None = None
    public_url: str | None = None  # where links point (https), e.g. https://syncd.example.com


@dataclass(frozen=True)
class StoreConfig:
    # load_config writes `sqlite:///` + an absolute path, i.e. `sqlite:////var/lib/syncd/syncd.db`,
    # which SQLAlchemy reads the same way; a PostgreSQL URL is kept as written (never with a
    # password: that comes from `password`).
    url: str
    password: Secret | None = None

    @property
    def is_postgres(self) -> bool:
        return self.url.startswith(POSTGRES_SCHEMES)

    @property
    def where(self) -> str:
        """The store as messages name it: the file, or host:port/database (no user info)."""
        if not self.is_postgres:
            return str(self.sqlite_path)
        parts = urlsplit(self.url)
        host = parts.hostname or "localhost"
        return f"{host}:{parts.port or 5432}/{parts.path.lstrip('/')}"

    @property
    def sqlite_path(self) -> Path:
        # As in file URLs, `sqlite:///var/x.db` is /var/x.db (the contract's example means that),
        # and so is SQLAlchemy's `sqlite:////var/x.db`; `sqlite:x.db`, with no slashes, is relative.
        rest = self.url.removeprefix("sqlite:")
        if rest.startswith("//"):
            return Path("/" + rest[2:].lstrip("/"))
        return Path(rest)


@dataclass(frozen=True)
class MetricsConfig:
    """`metrics:`: what /metrics exports beyond the few series each workspace has."""

    # `syncd_workspace_sync_duration_seconds{workspace}`: 15 more series a workspace.
    per_workspace_histograms: bool = False


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
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    providers: Mapping[str, ProviderConfig] = field(default_factory=dict)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    # Allowed but likely mistakes, each naming its file and key (see Checker.warn).
    warnings: tuple[str, ...] = ()

    def workspace(self, ws_id: str) -> WorkspaceConfig:
        """The workspace with this id (the API's key); NotFound names the id (cut short: it may
        come from a stranger's URL) when none is configured."""
        found = self._by_id.get(ws_id)
        if found is None:
            raise NotFound(f"no workspace {ws_id[:100]!r}")
        return found

    def followers(self, ws_id: str) -> tuple[str, ...]:
        """The automatic workspaces whose `promotion.after` is `ws_id`: woken when it applies."""
        return self._followers.get(ws_id, ())

    @cached_property
    def _followers(self) -> dict[str, tuple[str, ...]]:
        found: dict[str, list[str]] = {}
        for ws in self.workspaces:
            if ws.promotion is not None and ws.mode is Mode.AUTOMATIC:
                found.setdefault(ws.promotion.after, []).append(ws.id)
        return {after: tuple(ids) for after, ids in found.items()}

    @cached_property
    def _by_id(self) -> dict[str, WorkspaceConfig]:
        # Made once per config: every request and webhook looks a workspace up, and a cold
        # start of 10,000 workspaces looked each up in a list of 10,000.
        return {ws.id: ws for ws in self.workspaces}

    def secret_values(self) -> list[str]:
        """Every secret this process could read, for the log scrubber. Never logged itself;
        a secret this process cannot read (lazy loading) has no value to hide."""
        return [s.reveal() for s in self.secrets() if not isinstance(s, UnresolvedSecret)]

    def unresolved_secrets(self) -> list[UnresolvedSecret]:
        """The secrets this process could not read (lazy loading), to name them."""
        return [s for s in self.secrets() if isinstance(s, UnresolvedSecret)]

    def secrets(self) -> list[Secret]:
        """Every secret the config names."""
        secrets: list[Secret | None] = [t.token for t in self.tokens]
        for hook in self.webhooks.values():
            secrets += [*hook.secrets, *hook.signing_secrets]
        secrets += [ws.source.password for ws in self.workspaces]
        secrets.append(self.console.session_key)
        secrets.append(self.console.oidc.client_secret if self.console.oidc else None)
        secrets.append(self.notifications.smtp.password if self.notifications.smtp else None)
        secrets += [t.url for t in self.notifications.targets]
        secrets.append(self.store.password)
        for ws in self.workspaces:  # a command check's variables from the environment
            env = [v for c in ws.checks if c.command for _, v in c.command.env]
            secrets += [v for v in env if isinstance(v, Secret)]
        for host in self.providers.values():
            secrets += [host.token, host.app.private_key if host.app else None]
        return [s for s in secrets if s is not None]
