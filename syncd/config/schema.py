"""The config's JSON Schema (config/syncd.schema.json), for editors and CI to check a config
before it ships. `python -m syncd.config.schema > config/syncd.schema.json` writes it.

It describes what the parser (sections.py) accepts, never more strictly: each section's property
names are the keys the parser names in its unknown-key message (tests/unit/test_config_schema.py
holds them equal). What only the parser can judge stays with it: that secrets are set, that files
exist, includes, duplicate ids and names, branch names by git's rules.

Every pattern is an ECMAScript regex with the `u` flag, as JSON Schema 2020-12 reads them (so do
editors and check-jsonschema): no identity escape such as `\\"`.
"""

from __future__ import annotations

import json
from typing import Any

from syncd.config.checks import MAX_STRING
from syncd.config.schema_delivery import (
    check_schema,
    delivery_keys,
    history_schema,
    window_schema,
)
from syncd.config.types import PROVIDER_KINDS, SCOPES
from syncd.core.model import WEBHOOK_PROVIDERS

Schema = dict[str, Any]
SCHEMA_ID = "https://syncd.invalid/config/syncd.schema.json"

TEXT: Schema = {
    "type": "string",
    "maxLength": MAX_STRING,
    # not blank, no control characters (as Checker.string); \u escapes read alike everywhere
    "pattern": r"^[^\u0000-\u001f\u007f]*[^\s\u0000-\u001f\u007f][^\u0000-\u001f\u007f]*$",
}
DURATION: Schema = {
    "description": "seconds, or 30s, 5m, 1h30m, 500ms, 2d",
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": r"^\s*([0-9]+(\.[0-9]+)?(ms|s|m|h|d)?)+\s*$"},
    ],
}
EMAIL: Schema = {
    **TEXT,
    "pattern": r'^[^@\s<>()\[\],;:"]+@[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$',
}
# https only (the scheme in any case, as the parser reads it), then no space or control
# character; the parser also checks the host and refuses credentials in the URL.
SOURCE_URL: Schema = {
    "type": "string",
    "maxLength": MAX_STRING,
    "description": "an https URL, without credentials",
    "pattern": r"^[Hh][Tt][Tt][Pp][Ss]://[^\u0000-\u0020\u007f]+$",
}
MODE: Schema = {"enum": ["automatic", "manual"]}
BOOL: Schema = {"type": "boolean"}
# Id globs and `tag:NAME` (a tag name after the colon); a list may not be empty.
WORKSPACE_PATTERN: Schema = {**TEXT, "not": {"pattern": "^tag:\\s*$"}}
WORKSPACE_PATTERNS: Schema = {
    "anyOf": [WORKSPACE_PATTERN, {"type": "array", "minItems": 1, "items": WORKSPACE_PATTERN}]
}
ENV_NAME: Schema = {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"}
MAX_DELETES: Schema = {
    "description": 'a count of steps (50), or a share of the live steps ("20%")',
    "anyOf": [
        {"type": "integer", "minimum": 0},
        {"type": "string", "pattern": r"^\s*[0-9]+\s*$"},
        # more than 0% (the parser says so) and at most 100%: "120%" is refused
        {"type": "string", "pattern": r"^\s*0*(100(\.0+)?|[0-9]{1,2}(\.[0-9]+)?)\s*%\s*$"},
    ],
}


def ref(name: str) -> Schema:
    return {"$ref": f"#/$defs/{name}"}


def one_or_many(item: Schema) -> Schema:
    return {"anyOf": [item, {"type": "array", "items": item}]}


def section(
    properties: dict[str, Schema], required: tuple[str, ...] = (), nullable: bool = True
) -> Schema:
    """A mapping of these keys only. Optional keys may be null (the parser's default), as may
    a whole optional section."""
    props = {
        key: value if key in required else {"anyOf": [value, {"type": "null"}]}
        for key, value in properties.items()
    }
    out: Schema = {
        "type": ["object", "null"] if nullable and not required else "object",
        "properties": props,
        "additionalProperties": False,
    }
    if required:
        out["required"] = list(required)
    return out


def secret(base: str) -> dict[str, Schema]:
    """`X_env` (a variable's name) or `X_file` (a path): the value never sits in the file."""
    return {f"{base}_env": ENV_NAME, f"{base}_file": TEXT}


def verify_schema() -> Schema:
    """`verify`: at least one key file; x509_roots_file is named, and refused (not supported
    yet), as the parser does."""
    files = ("allowed_signers_file", "gpg_keyring_file")
    out = section({**{key: TEXT for key in files}, "x509_roots_file": {"not": {}}})
    out["anyOf"] = [{"required": [key], "properties": {key: TEXT}} for key in files]
    return out


def provider_schema() -> Schema:
    """An entry of `providers`: its API URL and a token, or (GitHub) an App."""
    app = section(
        {
            "id": {"type": "integer", "minimum": 1},
            "installation_id": {"type": "integer", "minimum": 1},
            **secret("private_key"),
        },
        required=("id", "installation_id"),
    )
    return section(
        {
            "kind": {"enum": list(PROVIDER_KINDS)},
            "api_url": SOURCE_URL,
            **secret("token"),
            "app": app,
            "ca_file": TEXT,
            "timeout": DURATION,
        },
        required=("api_url",),
    )


def oidc_schema() -> Schema:
    """`console.oidc`: the provider's issuer and this client. The parser also refuses plain
    http but for this host, and a missing redirect_url when server.public_url is unset."""
    web_url: Schema = {
        "type": "string",
        "maxLength": MAX_STRING,
        "description": "an https URL (plain http for localhost, 127.0.0.1 or ::1 only)",
        "pattern": r"^[Hh][Tt][Tt][Pp][Ss]?://[^\u0000-\u0020\u007f]+$",
    }
    return section(
        {
            "issuer": web_url,
            "client_id": TEXT,
            **secret("client_secret"),
            "scopes": {"type": "array", "items": TEXT, "contains": {"const": "openid"}},
            "groups_claim": TEXT,
            "name_claim": TEXT,
            "redirect_url": web_url,
        },
        required=("issuer", "client_id"),
    )


def config_schema() -> Schema:
    source = section(
        {
            "url": SOURCE_URL,
            "branch": TEXT,
            "path": TEXT,
            "username": TEXT,
            **secret("password"),
            "ca_file": TEXT,
            "provider": TEXT,
        },
        required=("url",),
    )
    workspace = section(
        {
            "id": {
                "anyOf": [
                    {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"},
                    {"type": "integer", "minimum": 0},
                ]
            },
            "name": TEXT,
            "tags": {"type": "array", "items": TEXT},
            "mode": MODE,
            "source": ref("source"),
            "poll_interval": DURATION,
            "allow_empty": {"type": "boolean"},
            "max_deletes": MAX_DELETES,
            "notify": one_or_many(EMAIL),
            "badge": {"type": "boolean"},
            "verify": ref("verify"),
            "report": section({"commit_status": BOOL, "pull_requests": BOOL}),
            "history": ref("history"),
            **delivery_keys(),
        },
        required=("id", "name", "source"),
    )
    token = section(
        {
            "name": TEXT,
            **secret("token"),
            "scopes": {"type": "array", "minItems": 1, "items": {"enum": list(SCOPES)}},
            "workspaces": WORKSPACE_PATTERNS,
        },
        required=("name", "scopes"),
    )
    hooks: dict[str, Schema] = {}
    for provider in WEBHOOK_PROVIDERS:
        keys: dict[str, Schema] = {"secrets_env": one_or_many(ENV_NAME)}
        keys["secrets_file"] = one_or_many(TEXT)
        if provider == "gitlab":
            keys |= {"signing_secrets_env": one_or_many(ENV_NAME)}
            keys |= {"signing_secrets_file": one_or_many(TEXT)}
        if provider == "azure-devops":
            keys["username"] = TEXT
        hooks[provider] = section(keys)
    smtp = section(
        {
            "host": TEXT,
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "tls": {"enum": ["none", "starttls", "tls"]},
            "from": EMAIL,
            "username": TEXT,
            **secret("password"),
            "timeout": DURATION,
        },
        required=("host", "from"),
    )
    target = section(
        {
            "name": TEXT,
            **secret("url"),
            "workspaces": {"type": "array", "items": TEXT},
            "tags": {"type": "array", "items": TEXT},
        },
        required=("name",),
    )
    top = section(
        {
            "server": section(
                {
                    "listen": TEXT,
                    "max_body_bytes": {"type": "integer", "minimum": 1},
                    "self_heal_delay": DURATION,
                    "max_parallel_syncs": {"type": "integer", "minimum": 1, "maximum": 64},
                    "max_connections": {"type": "integer", "minimum": 16, "maximum": 65536},
                    "header_timeout": DURATION,
                    "max_remote_reads": {"type": "integer", "minimum": 1, "maximum": 64},
                    "intake_workers": {"type": "integer", "minimum": 0, "maximum": 64},
                    "tls": section(
                        {"cert_file": TEXT, "key_file": TEXT, "client_ca_file": TEXT},
                        required=("cert_file", "key_file"),
                    ),
                    "trusted_proxies": {"type": "array", "maxItems": 256, "items": TEXT},
                    "public_url": {
                        "type": "string",
                        "maxLength": MAX_STRING,
                        "description": "an https URL: where links point",
                        "pattern": r"^[Hh][Tt][Tt][Pp][Ss]://[^\u0000-\u0020\u007f]+$",
                    },
                }
            ),
            "state_dir": TEXT,
            "store": section({"url": TEXT, **secret("password")}),
            "include": one_or_many(TEXT),
            "tokens": {"type": "array", "items": ref("token")},
            "webhooks": section(hooks),
            "notifications": section(
                {
                    "interval": DURATION,
                    "smtp": ref("smtp"),
                    "targets": {"type": "array", "items": ref("target")},
                }
            ),
            "defaults": section(
                {
                    "mode": MODE,
                    "branch": TEXT,
                    "path": TEXT,
                    "poll_interval": DURATION,
                    "max_deletes": MAX_DELETES,
                    "verify": ref("verify"),
                    "history": ref("history"),
                    **delivery_keys(),
                }
            ),
            "workspaces": {"type": "array", "items": ref("workspace")},
            "git": section(
                {"timeout": DURATION, "author": section({"name": TEXT, "email": EMAIL})}
            ),
            "console": section(
                {
                    **secret("session_key"),
                    "session_lifetime": DURATION,
                    "oidc": ref("oidc"),
                    "roles": {"type": "array", "items": ref("role")},
                    "token_sign_in": BOOL,
                }
            ),
            "metrics": section({"per_workspace_histograms": BOOL}),
            "providers": {
                "type": ["object", "null"],
                "description": "API access to git hosts, by entry name (source.provider)",
                "additionalProperties": ref("provider"),
            },
        },
        nullable=False,
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "syncd config (syncd.yaml and its included files)",
        "description": "See docs/configuration.md. Secrets never sit in the file: each is named "
        "by X_env (an environment variable) or X_file (a file).",
        **top,
        "$defs": {
            "source": source,
            "workspace": workspace,
            "token": token,
            "smtp": smtp,
            "target": target,
            "verify": verify_schema(),
            "history": history_schema(),
            "window": window_schema(),
            "check": check_schema(),
            "provider": provider_schema(),
            "oidc": oidc_schema(),
            "role": section(
                {
                    "group": TEXT,
                    "scopes": {"type": "array", "minItems": 1, "items": {"enum": list(SCOPES)}},
                    "workspaces": WORKSPACE_PATTERNS,
                },
                required=("group", "scopes"),
            ),
        },
    }


def schema_text() -> str:
    return json.dumps(config_schema(), indent=2) + "\n"


if __name__ == "__main__":
    print(schema_text(), end="")
