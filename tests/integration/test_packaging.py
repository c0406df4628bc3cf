"""The systemd unit and the container file say what the README promises."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not here")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    syncd = Path(sys.executable).parent / "syncd"
    if not syncd.exists():
        pytest.skip("syncd is not installed as a console script")
    unit = (ROOT / "systemd/syncd.service").read_text()
    # verify checks that ExecStart exists; point it at this environment's syncd.
    (tmp_path / "syncd.service").write_text(unit.replace("/usr/local/bin/syncd", str(syncd)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "syncd.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_unit_has_the_contracts_settings() -> None:
    unit = (ROOT / "systemd/syncd.service").read_text()
    for setting in (
        "Type=notify",
        "WatchdogSec=",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StateDirectory=syncd",
        "ConfigurationDirectory=syncd",
        "LoadCredential=",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ):
        assert setting in unit, setting


def test_dockerfile_runs_serve_as_non_root_with_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "USER " in text and "USER root" not in text.split("FROM")[-1]
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert "VOLUME" in text and '"serve"' in text


def test_example_config_is_valid(tmp_path: Path) -> None:
    from syncd.config import load_config

    creds = tmp_path / "creds"
    creds.mkdir()
    for name in ("api-token", "webhook-secret", "git-token"):
        (creds / name).write_text(f"{name}-value\n")

    def localize(text: str) -> str:
        text = text.replace("/run/credentials/syncd.service", str(creds))
        return text.replace("/var/lib/syncd", str(tmp_path / "state"))

    (tmp_path / "workspaces.d").mkdir()
    example = ROOT / "config"
    (tmp_path / "workspaces.d/dev.yaml").write_text(
        localize((example / "workspaces.d/dev.yaml").read_text())
    )
    (tmp_path / "syncd.yaml").write_text(localize((example / "syncd.example.yaml").read_text()))
    config = load_config(tmp_path / "syncd.yaml", {})
    assert {ws.name for ws in config.workspaces} == {"prod", "dev"}
