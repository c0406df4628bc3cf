"""Configuration: YAML into validated, frozen objects.

`types` holds the objects, `load` reads the main file and its includes, `sections` checks each
section, `credentials` resolves secrets and `checks` checks single values. Every problem names the
file, the key path and the bad value, never a secret: secrets come from the environment (`X_env`)
or from a file (`X_file`), and are held in `Secret`, whose repr shows where the value came from,
not the value.

Workspace ids may be written as YAML integers (`id: 12345`); they are read as strings.
"""

from syncd.config.checks import parse_duration
from syncd.config.load import default_config_path, load_config
from syncd.config.types import (
    SCOPES,
    Config,
    ConsoleConfig,
    DeleteLimit,
    GitConfig,
    GitHubAppConfig,
    NotificationsConfig,
    ProviderConfig,
    ReportConfig,
    Secret,
    ServerConfig,
    SmtpConfig,
    SourceConfig,
    StoreConfig,
    TargetConfig,
    TokenConfig,
    WebhookConfig,
    WorkspaceConfig,
)

__all__ = [
    "SCOPES",
    "Config",
    "ConsoleConfig",
    "DeleteLimit",
    "GitConfig",
    "GitHubAppConfig",
    "NotificationsConfig",
    "ProviderConfig",
    "ReportConfig",
    "Secret",
    "ServerConfig",
    "SmtpConfig",
    "SourceConfig",
    "StoreConfig",
    "TargetConfig",
    "TokenConfig",
    "WebhookConfig",
    "WorkspaceConfig",
    "default_config_path",
    "load_config",
    "parse_duration",
]
