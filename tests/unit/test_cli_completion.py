"""`syncd completion bash|zsh|fish`: scripts the shells accept, which complete commands, options
and workspace ids (from `syncd __complete-workspaces`, which reads the config)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from syncd.cli import main
from syncd.cli.completion import script
from syncd.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path) -> Path:
    doc = {
        "state_dir": str(tmp_path / "state"),
        "workspaces": [
            {"id": "alpha", "name": "a", "source": {"url": "https://h/x", "password_env": "NOPE"}},
            {"id": "beta", "name": "b", "source": {"url": "https://h/y"}},
        ],
    }
    path = tmp_path / "syncd.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_the_helper_lists_workspace_ids_without_their_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SYNCD_SERVER", raising=False)
    assert main(["--config", str(_config(tmp_path)), "__complete-workspaces"]) == 0
    assert capsys.readouterr().out.split() == ["alpha", "beta"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_scripts_parse(shell: str, tmp_path: Path) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed here")
    path = tmp_path / f"syncd.{shell}"
    path.write_text(script(shell, build_parser()))
    check = {"bash": ["bash", "-n"], "zsh": ["zsh", "-n"], "fish": ["fish", "--no-execute"]}
    done = subprocess.run([*check[shell], str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def _bash_complete(tmp_path: Path, line: str) -> list[str]:
    """COMPREPLY for `line` (the word under the cursor last), with syncd run from this tree."""
    path = tmp_path / "syncd.bash"
    path.write_text(script("bash", build_parser()))
    words = line.split(" ")
    program = f"""
syncd() {{ PYTHONPATH={ROOT} {sys.executable} -m syncd "$@"; }}
source {path}
COMP_WORDS=({" ".join(repr(w) for w in words)})
COMP_CWORD={len(words) - 1}
_syncd
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed here")
def test_bash_completes_commands_options_and_workspaces(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert "status" in _bash_complete(tmp_path, "syncd sta")
    assert _bash_complete(tmp_path, "syncd status --wa") == ["--watch"]
    assert _bash_complete(tmp_path, f"syncd --config {config} diff ") == ["alpha", "beta"]
    assert _bash_complete(tmp_path, f"syncd wait --config {config} b") == ["beta"]
    assert _bash_complete(tmp_path, "syncd completion z") == ["zsh"]
