"""`server.tls`, `server.trusted_proxies`, `server.public_url`, and `check-config
--no-secrets`: each bad value a config error naming the file or the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from syncd.config import load_config
from syncd.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, server: dict[str, Any], **top: Any) -> Path:
    path = tmp_path / "syncd.yaml"
    doc = {"state_dir": str(tmp_path / "state"), "server": server, "workspaces": [], **top}
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def pems(tmp_path: Path) -> tuple[Path, Path, Path]:
    ca = trustme.CA()
    cert, key, other_key = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "other.pem"
    leaf = ca.issue_cert("syncd.example.com")
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.issue_cert("else.example.com").private_key_pem.write_to_path(str(other_key))
    return cert, key, other_key


def test_tls_is_read(tmp_path: Path, pems: tuple[Path, Path, Path]) -> None:
    cert, key, _ = pems
    config = load_config(
        _config(
            tmp_path,
            {
                "tls": {"cert_file": "c.pem", "key_file": str(key)},
                "trusted_proxies": ["10.0.0.0/8", "::1"],
                "public_url": "https://syncd.example.com/",
            },
        )
    )
    assert config.server.tls is not None and config.server.tls.cert_file == cert
    assert config.server.trusted_proxies == ("10.0.0.0/8", "::1/128")
    assert config.server.public_url == "https://syncd.example.com"
    assert load_config(_config(tmp_path, {})).server.trusted_proxies is None


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ({"tls": {"cert_file": "c.pem", "key_file": "other.pem"}}, "other.pem does not match"),
        ({"tls": {"cert_file": "c.pem", "key_file": "missing.pem"}}, "cannot read"),
        ({"tls": {"cert_file": "c.pem"}}, "server.tls.key_file: is required"),
        (
            {"tls": {"cert_file": "c.pem", "key_file": "k.pem"}, "intake_workers": 2},
            "cannot be combined with server.intake_workers",
        ),
        ({"trusted_proxies": ["10.0.0.0/33"]}, "server.trusted_proxies[0]: expected an IP"),
        ({"public_url": "http://syncd.example.com"}, "server.public_url: expected an https"),
        ({"public_url": "https://u:p@h"}, "server.public_url: expected an https"),
    ],
)
def test_bad_listener_keys(
    tmp_path: Path, pems: tuple[Path, Path, Path], server: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_config(tmp_path, server))
    assert expected in str(caught.value)


def test_check_config_without_secrets(tmp_path: Path) -> None:
    missing = tmp_path / "run" / "credentials" / "git"
    ws = {
        "id": "a",
        "name": "a",
        "source": {"url": "https://h/r", "username": "u", "password_file": str(missing)},
    }
    path = _config(tmp_path, {}, workspaces=[ws])
    run = [sys.executable, "-m", "syncd", "check-config", "--config", str(path)]
    strict = subprocess.run(run, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert strict.returncode == 2 and str(missing) in strict.stderr
    lenient = subprocess.run(
        [*run, "--no-secrets"], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert lenient.returncode == 0, lenient.stderr
    assert "secret files not present, checked the rest: 1 not read" in lenient.stdout
    assert f"file {missing}" in lenient.stdout
