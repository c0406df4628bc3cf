"""The `verify` key (issue #23): per workspace or in `defaults`, key files that must be there and
readable, x509_roots_file refused as not supported yet, and a JSON Schema that names and judges
the same keys as the parser."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncd.config import load_config
from syncd.config.schema import config_schema
from syncd.config.types import VerifyConfig
from syncd.config.verify import VERIFY_KEYS
from syncd.core.errors import ConfigError

jsonschema_rs = pytest.importorskip("jsonschema_rs")


def _workspace(ws_id: str = "a", **extra: Any) -> dict[str, Any]:
    return {"id": ws_id, "name": ws_id, "source": {"url": "https://git.example.com/r"}, **extra}


def _write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "syncd.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), **doc}))
    return path


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "keys").mkdir()
    allowed = tmp_path / "keys/allowed_signers"
    allowed.write_text("dev@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA\n")
    keyring = tmp_path / "keys/trusted.asc"
    keyring.write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")
    return allowed, keyring


def _problems(path: Path) -> str:
    with pytest.raises(ConfigError) as refused:
        load_config(path, {})
    return str(refused.value)


def test_a_workspace_names_its_key_files_relative_to_its_file(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    verify = {"allowed_signers_file": "keys/allowed_signers", "gpg_keyring_file": str(keys[1])}
    config = load_config(_write(tmp_path, {"workspaces": [_workspace(verify=verify)]}), {})
    assert config.workspaces[0].verify == VerifyConfig(keys[0], keys[1])


def test_without_verify_commits_are_not_checked(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, {"workspaces": [_workspace()]}), {})
    assert config.workspaces[0].verify is None


def test_defaults_apply_to_every_workspace_that_says_nothing(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    doc = {
        "defaults": {"verify": {"allowed_signers_file": "keys/allowed_signers"}},
        "workspaces": [
            _workspace("a"),
            _workspace("b", verify={"gpg_keyring_file": "keys/trusted.asc"}),
        ],
    }
    config = load_config(_write(tmp_path, doc), {})
    assert config.workspace("a").verify == VerifyConfig(keys[0], None)
    assert config.workspace("b").verify == VerifyConfig(None, keys[1])


def test_a_missing_key_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    verify = {"allowed_signers_file": "nowhere/allowed_signers"}
    problems = _problems(_write(tmp_path, {"workspaces": [_workspace(verify=verify)]}))
    assert "workspaces[0]" in problems and "verify.allowed_signers_file" in problems
    assert f"{tmp_path / 'nowhere/allowed_signers'} does not exist" in problems


def test_a_missing_keyring_in_defaults_is_a_config_error(tmp_path: Path) -> None:
    doc = {"defaults": {"verify": {"gpg_keyring_file": "/nonexistent/trusted.asc"}}}
    problems = _problems(_write(tmp_path, {**doc, "workspaces": [_workspace()]}))
    assert "defaults.verify.gpg_keyring_file: /nonexistent/trusted.asc does not exist" in problems


def test_a_folder_is_no_key_file(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    verify = {"gpg_keyring_file": "keys"}
    problems = _problems(_write(tmp_path, {"workspaces": [_workspace(verify=verify)]}))
    assert f"{tmp_path / 'keys'} is not a regular file" in problems


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_key_file_is_a_config_error(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    keys[0].chmod(0)
    verify = {"allowed_signers_file": str(keys[0])}
    problems = _problems(_write(tmp_path, {"workspaces": [_workspace(verify=verify)]}))
    assert f"{keys[0]} cannot be read: Permission denied" in problems


def test_a_huge_allowed_signers_file_is_refused(tmp_path: Path) -> None:
    huge = tmp_path / "allowed"
    huge.write_bytes(b"#" * (1024 * 1024 + 1))
    verify = {"allowed_signers_file": str(huge)}
    problems = _problems(_write(tmp_path, {"workspaces": [_workspace(verify=verify)]}))
    assert "is over the limit of 1048576 bytes" in problems


def test_x509_roots_are_not_supported_yet(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    verify = {"allowed_signers_file": str(keys[0]), "x509_roots_file": str(keys[1])}
    problems = _problems(_write(tmp_path, {"workspaces": [_workspace(verify=verify)]}))
    assert "verify.x509_roots_file: X.509 (gpgsm) commit signatures are not supported yet" in (
        problems
    )


@pytest.mark.parametrize("verify", [{}, {"allowed_signers_file": None}])
def test_verify_needs_a_key_file(tmp_path: Path, verify: dict[str, Any]) -> None:
    problems = _problems(_write(tmp_path, {"workspaces": [_workspace(verify=verify)]}))
    assert "verify: needs allowed_signers_file (SSH keys) or gpg_keyring_file" in problems


def test_an_unknown_key_is_named_with_the_valid_ones(tmp_path: Path) -> None:
    verify = {"allowed_signer_file": "x"}
    problems = _problems(_write(tmp_path, {"workspaces": [_workspace(verify=verify)]}))
    assert 'unknown key "allowed_signer_file" (did you mean "allowed_signers_file"?)' in problems
    assert "valid keys: allowed_signers_file, gpg_keyring_file, x509_roots_file" in problems


# -- the JSON Schema says the same -------------------------------------------------------------


def test_the_schema_names_the_keys_the_parser_accepts() -> None:
    schema = config_schema()
    assert sorted(schema["$defs"]["verify"]["properties"]) == sorted(VERIFY_KEYS)
    workspace = schema["$defs"]["workspace"]["properties"]["verify"]
    defaults = schema["properties"]["defaults"]["anyOf"][0]["properties"]["verify"]
    assert workspace == defaults == {"anyOf": [{"$ref": "#/$defs/verify"}, {"type": "null"}]}


@pytest.mark.parametrize(
    ("verify", "valid"),
    [
        ({"allowed_signers_file": "keys/allowed_signers"}, True),
        ({"gpg_keyring_file": "keys/trusted.asc"}, True),
        ({"allowed_signers_file": "keys/allowed_signers", "gpg_keyring_file": None}, True),
        (None, True),
        ({}, False),
        ({"allowed_signers_file": None}, False),
        ({"allowed_signers_file": 5}, False),
        ({"gpg_keyring_file": ""}, False),
        ({"allowed_signers_file": "keys/allowed_signers", "x509_roots_file": "ca.pem"}, False),
        ({"allowed_signers_file": "keys/allowed_signers", "other": 1}, False),
        ("keys/allowed_signers", False),
    ],
)
def test_the_schema_and_the_parser_agree(
    tmp_path: Path, keys: tuple[Path, Path], verify: Any, valid: bool
) -> None:
    validator = jsonschema_rs.validator_for(json.loads(json.dumps(config_schema())))
    for doc in (
        {"workspaces": [_workspace(verify=verify)]},
        {"defaults": {"verify": verify}, "workspaces": [_workspace()]},
    ):
        assert validator.is_valid(doc) is valid, doc
        path = _write(tmp_path, doc)
        if valid:
            load_config(path, {})
        else:
            _problems(path)
