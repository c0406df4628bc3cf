"""Helpers shared by the benchmarks: a throwaway https git server, repositories of N steps,
configs, timed `syncd` runs and the markdown result table.

bench/ is not a package. A bench run as `python bench/x.py` puts the repository root on
sys.path first (see `sys.path` at the top of sync_scaling.py) and imports `bench.common`.
Everything stays on loopback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from syncd.gitserver import GitServer, WorkTree
from syncd.model import StepContent
from syncd.steps import render_step_file, step_file_name

PASSWORD_ENV = "SYNCD_BENCH_GIT_TOKEN"
STEPS_PATH = "export/steps"


@contextlib.contextmanager
def temp_git_server() -> Iterator[tuple[GitServer, Path]]:
    """A GitServer on 127.0.0.1 and a scratch directory, both gone afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="syncd-bench-"))
    try:
        with GitServer(tmp / "git-server") as server:
            yield server, tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def step_content(i: int, version: int = 0) -> StepContent:
    return StepContent("true", f"run({i}, {version})")


def step_name(i: int) -> str:
    return f"bench/step {i:06d}"


def write_step(tree: WorkTree, i: int, version: int = 0) -> None:
    name = step_name(i)
    tree.write(
        f"{STEPS_PATH}/{step_file_name(name)}", render_step_file(name, step_content(i, version))
    )


def make_repo(server: GitServer, tmp: Path, name: str, steps: int) -> tuple[str, WorkTree]:
    """A repository `name` whose main branch holds `steps` step files: (url, work tree)."""
    url = server.create_repo(name)
    tree = WorkTree(server, name, tmp / f"{name}-work")
    for i in range(steps):
        write_step(tree, i)
    tree.commit(f"{steps} steps")
    tree.push()
    return url, tree


def change_step(tree: WorkTree, i: int, version: int) -> str:
    """Commit and push a change to one step; the new commit's sha."""
    write_step(tree, i, version)
    sha = tree.commit(f"change step {i}")
    tree.push()
    return sha


def workspace(ws_id: str, url: str, server: GitServer) -> dict[str, Any]:
    return {
        "id": ws_id,
        "name": f"bench-{ws_id}",
        "mode": "automatic",
        "source": {
            "url": url,
            "branch": "main",
            "path": STEPS_PATH,
            "username": server.username,
            "password_env": PASSWORD_ENV,
            "ca_file": str(server.ca_file),
        },
        "poll_interval": "0s",
    }


def write_config(directory: Path, workspaces: list[dict[str, Any]]) -> Path:
    """A config with its own state dir (so its own store) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "syncd.yaml"
    doc = {"state_dir": str(directory / "state"), "workspaces": workspaces}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def syncd_env(server: GitServer) -> dict[str, str]:
    return {**os.environ, PASSWORD_ENV: server.password}


def syncd_command() -> list[str]:
    """The installed `syncd` next to this Python, as users run it; else `python -m syncd`."""
    script = Path(sys.executable).parent / "syncd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "syncd"]


def run_syncd(args: Sequence[str], env: dict[str, str]) -> tuple[float, str]:
    """Run `syncd ARGS`; (wall seconds, stdout). Raises with stderr when it fails."""
    started = time.perf_counter()
    proc = subprocess.run(
        [*syncd_command(), *args], env=env, capture_output=True, text=True, timeout=600
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"syncd {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return seconds, proc.stdout


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float]) -> str:
    """min/median/max in milliseconds, for the notes under a table."""
    return f"{min(values) * 1000:.0f}/{median(values) * 1000:.0f}/{max(values) * 1000:.0f} ms"


@dataclass(frozen=True)
class Row:
    scenario: str
    figure: float  # seconds
    baseline: float | None = None  # seconds
    goal: float | None = None  # the highest ratio that passes; None: for information

    @property
    def ratio(self) -> float | None:
        return None if self.baseline is None else self.figure / self.baseline

    @property
    def passed(self) -> bool | None:
        if self.goal is None or self.ratio is None:
            return None
        return self.ratio <= self.goal


def seconds_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def markdown_table(rows: Sequence[Row]) -> str:
    lines = [
        "| scenario | figure | baseline | ratio | goal | pass |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for r in rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}"
        goal = "info" if r.goal is None else f"≤ {r.goal:g}"
        passed = {None: "-", True: "yes", False: "**no**"}[r.passed]
        lines.append(
            f"| {r.scenario} | {seconds_text(r.figure)} | {seconds_text(r.baseline)} | {ratio}"
            f" | {goal} | {passed} |"
        )
    return "\n".join(lines)
