"""The CLI in local mode without any secret: `status` (also `--watch`), `runs`, `health` and
`wait` read the store; a command that needs a secret says which one, and exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from syncd.cli import EXIT_TIMEOUT, EXIT_USAGE, main


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("SYNCD_SERVER", "SYNCD_T_GIT", "SYNCD_T_API", "SYNCD_T_CONSOLE"):
        monkeypatch.delenv(name, raising=False)
    doc = {
        "state_dir": str(tmp_path / "state"),
        "tokens": [{"name": "ci", "token_env": "SYNCD_T_API", "scopes": ["read"]}],
        "console": {"session_key_env": "SYNCD_T_CONSOLE"},
        "workspaces": [
            {
                "id": "alpha",
                "name": "a",
                "source": {"url": "https://h.invalid/x", "password_env": "SYNCD_T_GIT"},
            }
        ],
    }
    path = tmp_path / "syncd.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_reading_commands_need_no_secret(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--config", str(config)]) == 0
    assert "alpha" in capsys.readouterr().out
    assert main(["--config", str(config), "runs", "a"]) == 0
    assert (
        capsys.readouterr()
        .out.strip()
        .endswith("0 runs (+ created, ~ updated, - deleted; * a dry run)")
    )
    assert main(["--config", str(config), "health", "alpha"]) == 0
    assert capsys.readouterr().out.startswith("alpha (a): ")


def test_status_watch_redraws_a_bounded_number_of_times(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["status", "--config", str(config), "--watch", "--count", "2", "--interval", "1"]) == 0
    )
    assert capsys.readouterr().out.count("ID ") == 2


def test_wait_times_out_with_its_own_exit_code(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(config), "wait", "alpha", "--timeout", "0"]) == EXIT_TIMEOUT
    assert "not synced after 0: Unknown" in capsys.readouterr().err
    assert main(["--config", str(config), "wait", "alpha", "--timeout", "soon"]) == EXIT_USAGE


def test_a_command_that_needs_a_secret_names_it(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(config), "sync", "alpha"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "needs a secret it cannot read" in err and "SYNCD_T_GIT is not set" in err
    assert main(["--config", str(config), "runs", "alpha"]) == 0  # no failed run was recorded
    assert "0 runs" in capsys.readouterr().out
    assert main(["--config", str(config), "check-config"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "SYNCD_T_GIT is not set" in err and "SYNCD_T_API is not set" in err
    assert "SYNCD_T_CONSOLE is not set" in err
