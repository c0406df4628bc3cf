"""The config's JSON Schema (config/syncd.schema.json) is the one syncd.config.schema writes,
accepts the example config, names exactly the keys the parser accepts in every section, and
agrees with the parser (`syncd check-config`): what the schema refuses, the parser refuses, and
what the parser accepts, the schema accepts; the hostile configs' bad documents are refused by
both. (The parser refuses more: unset secrets, missing files, includes, duplicate ids.)
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.config import Config, load_config
from syncd.config.schema import config_schema, schema_text
from syncd.core.errors import ConfigError
from syncd.core.model import WEBHOOK_PROVIDERS
from tests.reliability.test_hostile_configs import ENV, HUGE, Home, damaged, huge, valid_doc

jsonschema_rs = pytest.importorskip("jsonschema_rs")
ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "config/syncd.schema.json"


@pytest.fixture(scope="module")
def validator() -> Any:
    return jsonschema_rs.validator_for(json.loads(SCHEMA_FILE.read_text()))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    root = tmp_path_factory.mktemp("schema")
    (root / "secrets").mkdir()
    (root / "secrets/token").write_text("file-secret\n")
    (root / "etc/ws.d").mkdir(parents=True)
    extra = {"workspaces": [{"id": "extra", "name": "extra", "source": {"url": "https://h/x"}}]}
    (root / "etc/ws.d/extra.yaml").write_text(yaml.safe_dump(extra))
    return Home(root / "etc", root / "secrets/token")


def parser_accepts(path: Path) -> bool:
    try:
        return isinstance(load_config(path, ENV), Config)
    except ConfigError:
        return False


def test_the_file_is_what_the_code_writes() -> None:
    assert SCHEMA_FILE.read_text() == schema_text(), (
        "config/syncd.schema.json is stale: python -m syncd.config.schema > "
        "config/syncd.schema.json"
    )


def test_the_example_config_and_its_includes_are_valid(validator: Any) -> None:
    for path in [ROOT / "config/syncd.example.yaml", *(ROOT / "config").glob("workspaces.d/*")]:
        doc = yaml.safe_load(path.read_text())
        errors = [e.message for e in validator.iter_errors(doc)]
        assert not errors, (path, errors)


# -- the keys of every section --------------------------------------------------------------

_VALID_KEYS = re.compile(r'unknown key "__probe__".*valid keys: (.+)$')


def _at(doc: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    for step in path:
        doc = doc[step]
    return doc


def _parser_keys(home: Home, path: tuple[Any, ...]) -> list[str]:
    """The keys the parser accepts at `path`, from its unknown-key message."""
    doc = valid_doc(home)
    doc["webhooks"] = {p: {"secrets_env": ["SYNCD_T_HOOK"]} for p in WEBHOOK_PROVIDERS}
    doc["console"] = {
        "session_lifetime": "1h",
        "oidc": {
            "issuer": "https://idp.example.com",
            "client_id": "syncd",
            "client_secret_env": "SYNCD_T_TOKEN",
            "redirect_url": "https://syncd.example.com/ui/oidc/callback",
        },
        "roles": [{"group": "ops", "scopes": ["read"]}],
    }
    url_file = home.main.parent / "target.url"
    url_file.write_text("json://127.0.0.1:9/hook")
    notifications = doc.get("notifications") or {}
    doc["notifications"] = notifications | {"targets": [{"name": "t", "url_file": str(url_file)}]}
    _at(doc, path)["__probe__"] = 1
    home.main.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as refused:
        load_config(home.main, ENV)
    for line in str(refused.value).splitlines():
        found = _VALID_KEYS.search(line)
        if found:
            return found.group(1).split(", ")
    raise AssertionError(f"no unknown-key message at {path}: {refused.value}")


def _schema_at(path: tuple[Any, ...]) -> dict[str, Any]:
    schema = config_schema()
    node: dict[str, Any] = schema
    for step in path:
        node = node["items"] if isinstance(step, int) else node["properties"][step]
        if "anyOf" in node:  # optional: [the section, null]
            node = node["anyOf"][0]
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


SECTIONS: list[tuple[Any, ...]] = [
    (),
    ("server",),
    ("store",),
    ("tokens", 0),
    ("webhooks",),
    *(("webhooks", p) for p in WEBHOOK_PROVIDERS),
    ("notifications",),
    ("notifications", "smtp"),
    ("notifications", "targets", 0),
    ("defaults",),
    ("git",),
    ("git", "author"),
    ("console",),
    ("console", "oidc"),
    ("console", "roles", 0),
    ("workspaces", 0),
    ("workspaces", 0, "source"),
]


@pytest.mark.parametrize("path", SECTIONS, ids=lambda p: ".".join(map(str, p)) or "top")
def test_each_sections_properties_are_the_keys_the_parser_accepts(
    home: Home, path: tuple[Any, ...]
) -> None:
    node = _schema_at(path)
    assert node["additionalProperties"] is False
    assert sorted(node["properties"]) == sorted(_parser_keys(home, path))


# -- agreement with the parser --------------------------------------------------------------

BAD: dict[str, Any] = {
    "a list": ["workspaces"],
    "unknown top key": {"workspace": []},
    "server listen a number": {"server": {"listen": 8080}},
    "max_parallel_syncs too big": {"server": {"max_parallel_syncs": 1000}},
    "tokens a mapping": {"tokens": {"name": "x"}},
    "a token without scopes": {"tokens": [{"name": "x", "token_env": "SYNCD_T_TOKEN"}]},
    "an unknown scope": {
        "tokens": [{"name": "x", "token_env": "SYNCD_T_TOKEN", "scopes": ["admin"]}]
    },
    "a secret in the file": {"tokens": [{"name": "x", "token": "s3cret", "scopes": ["read"]}]},
    "an unknown provider": {"webhooks": {"gitbucket": {"secrets_env": "SYNCD_T_HOOK"}}},
    "a workspace without a source": {"workspaces": [{"id": "a", "name": "a"}]},
    "a bad workspace id": {
        "workspaces": [{"id": "-x", "name": "a", "source": {"url": "https://h/x"}}]
    },
    "a bad mode": {"defaults": {"mode": "sometimes"}},
    "a negative duration": {"defaults": {"poll_interval": "-5s"}},
    "a password in the source": {
        "workspaces": [{"id": "a", "name": "a", "source": {"url": "https://h/x", "password": "p"}}]
    },
    "smtp without a host": {"notifications": {"smtp": {"from": "a@example.com"}}},
    "a target URL in the file": {
        "notifications": {"targets": [{"name": "chat", "url": "slack://a/b/c"}]}
    },
    "an empty name": {"workspaces": [{"id": "a", "name": " ", "source": {"url": "https://h/x"}}]},
    "a control character": {"state_dir": "/var/lib/\x1b[31m"},
    "an http source": {"workspaces": [{"id": "a", "name": "a", "source": {"url": "http://h/x"}}]},
    "an oidc issuer over ftp": {
        "console": {"oidc": {"issuer": "ftp://idp.example.com", "client_id": "syncd"}}
    },
    "oidc scopes without openid": {
        "console": {
            "oidc": {
                "issuer": "https://idp.example.com",
                "client_id": "syncd",
                "scopes": ["profile"],
                "redirect_url": "https://syncd.example.com/ui/oidc/callback",
            }
        }
    },
    "a role with an unknown scope": {
        "console": {
            "oidc": {"issuer": "https://idp.example.com", "client_id": "syncd"},
            "roles": [{"group": "ops", "scopes": ["admin"]}],
        }
    },
    "a share over 100%": {
        "workspaces": [{"id": "a", "name": "a", "source": {"url": "https://h/x"}}],
        "defaults": {"max_deletes": "120%"},
    },
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_documents_are_refused_by_both(
    validator: Any, home: Home, tmp_path: Path, case: str
) -> None:
    doc = BAD[case]
    assert not validator.is_valid(doc)
    path = tmp_path / "syncd.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert not parser_accepts(path)


@pytest.mark.parametrize("case", list(HUGE))
def test_the_huge_hostile_configs_are_refused_by_both(
    validator: Any, home: Home, tmp_path: Path, case: str
) -> None:
    key, text, _ = HUGE[case]
    path = tmp_path / "huge.yaml"
    path.write_bytes(huge(home, key, text))
    assert not validator.is_valid(yaml.load(path.read_bytes(), Loader=yaml.CSafeLoader))
    assert not parser_accepts(path)


def test_the_valid_hostile_base_config_is_valid(validator: Any, home: Home) -> None:
    doc = valid_doc(home)
    assert validator.is_valid(doc), [e.message for e in validator.iter_errors(doc)]


def _jsonable(doc: Any) -> bool:
    try:
        json.dumps(doc, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return all(isinstance(k, str) for k in _keys(doc))


def _keys(doc: Any) -> list[Any]:
    if isinstance(doc, dict):
        return [*doc, *(k for v in doc.values() for k in _keys(v))]
    if isinstance(doc, list):
        return [k for v in doc for k in _keys(v)]
    return []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_schema_and_the_parser_agree_on_damaged_configs(
    validator: Any, home: Home, data: st.DataObject
) -> None:
    doc = data.draw(damaged(valid_doc(home)))
    if not _jsonable(doc):
        return  # a YAML-only value (a NaN, an integer key): JSON Schema cannot speak of it
    home.main.write_text(yaml.safe_dump(copy.deepcopy(doc)))
    accepted = parser_accepts(home.main)
    if not validator.is_valid(doc):
        errors = [e.message for e in validator.iter_errors(doc)]
        assert not accepted, f"the schema refuses what the parser accepts: {errors}"
