"""Helpers shared by the benchmarks: a throwaway https git server, repositories of N steps,
configs, timed `syncd` runs and the markdown result table.

bench/ is not a package: a bench runs as `python bench/x.py`, so Python finds this module
(and `daemon`) beside it; syncd is the installed one. Nothing here comes from the tests: the
git server and the signed webhooks are the demo's (`syncd.demo`). Everything stays on loopback.
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
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]

from syncd.core.model import StepContent
from syncd.core.steps import render_step_file, step_file_name
from syncd.demo.gitserver import GitServer, WorkTree

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


# -- repositories written by `git fast-import`: 100,000 steps in seconds ----------------------

FAST_IMPORT_COMMITTER = "syncd bench <bench@example.invalid> 1700000000 +0000"


def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return env | {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


def _main_head(bare: Path) -> str:
    out = subprocess.run(
        ["git", "-C", str(bare), "rev-parse", "refs/heads/main"],
        env=_git_env(),
        capture_output=True,
        check=True,
        timeout=60,
    )
    return out.stdout.decode().strip()


def _fast_import(bare: Path, commands: Iterator[bytes]) -> str:
    """Feed `git fast-import` in the bare repository `bare`; its main branch's new head."""
    subprocess.run(
        ["git", "-C", str(bare), "fast-import", "--quiet", "--done"],
        input=b"".join(commands),
        env=_git_env(),
        capture_output=True,
        check=True,
        timeout=600,
    )
    return _main_head(bare)


def _fast_commit(
    message: str, files: Iterator[tuple[str, bytes]], parent: str | None
) -> Iterator[bytes]:
    text = message.encode()
    yield f"commit refs/heads/main\ncommitter {FAST_IMPORT_COMMITTER}\n".encode()
    yield b"data %d\n%s\n" % (len(text), text)
    if parent is not None:
        yield f"from {parent}\n".encode()
    for path, data in files:
        yield b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(data), data)
    yield b"done\n"


def _step_file(i: int, version: int = 0) -> tuple[str, bytes]:
    name = step_name(i)
    return f"{STEPS_PATH}/{step_file_name(name)}", render_step_file(name, step_content(i, version))


def fast_repo(server: GitServer, name: str, steps: int) -> tuple[str, str]:
    """A repository `name` on the server whose main branch holds `steps` step files, the
    same files `make_repo` writes, committed by `git fast-import` straight into its bare
    directory (no work tree: 100,000 files take seconds, not minutes): (url, head)."""
    url = server.create_repo(name)
    files = (_step_file(i) for i in range(steps))
    head = _fast_import(server.root / f"{name}.git", _fast_commit(f"{steps} steps", files, None))
    return url, head


def fast_change_step(server: GitServer, name: str, i: int, version: int) -> str:
    """A commit on a `fast_repo`'s main branch that changes step `i`, as `change_step` would
    push it; the new head."""
    bare = server.root / f"{name}.git"
    parent = _main_head(bare)
    commit = _fast_commit(f"change step {i}", iter([_step_file(i, version)]), parent)
    return _fast_import(bare, commit)


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


# -- added for the daemon benches: figures in any unit, goals on a ratio or on the figure ----


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), interpolated between the two nearest ranks."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def clone_bare_repo(server: GitServer, source: str, name: str) -> str:
    """Another repository on the server with the same history as `source`: a copy of its bare
    directory, far faster than pushing again. Its URL."""
    shutil.copytree(server.root / f"{source}.git", server.root / f"{name}.git", symlinks=True)
    return server.url(name)


def value_text(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return seconds_text(value)
    if unit == "MB":
        return f"{value:,.1f} MB"
    if unit == "%":
        return f"{value:.2f} % of a core"
    return f"{value:,.0f} {unit}" if abs(value) >= 100 else f"{value:,.3g} {unit}"


@dataclass(frozen=True)
class Figure:
    """One row: a figure in `unit`, its baseline from the same run, and a goal either on the
    ratio (figure / baseline) or, with `absolute`, on the figure itself."""

    scenario: str
    value: float
    unit: str
    baseline: float | None = None
    at_most: float | None = None
    at_least: float | None = None
    absolute: bool = False

    @property
    def ratio(self) -> float | None:
        return None if not self.baseline else self.value / self.baseline

    @property
    def passed(self) -> bool | None:
        checked = self.value if self.absolute else self.ratio
        if checked is None or (self.at_most is None and self.at_least is None):
            return None
        ok_high = self.at_most is None or checked <= self.at_most
        ok_low = self.at_least is None or checked >= self.at_least
        return ok_high and ok_low

    @property
    def goal_text(self) -> str:
        unit = f" {self.unit}" if self.absolute and self.unit not in ("s", "%") else ""
        unit = " %" if self.absolute and self.unit == "%" else unit
        parts = []
        if self.at_least is not None:
            parts.append(f"≥ {self.at_least:g}{unit}")
        if self.at_most is not None:
            parts.append(f"≤ {self.at_most:g}{unit}")
        return " and ".join(parts) or "info"


def table_line(r: Row | Figure) -> str:
    """One markdown row under the header of `markdown_table`, for a Row or a Figure."""
    if isinstance(r, Row):
        return markdown_table([r]).splitlines()[-1]
    ratio = "-" if r.ratio is None else f"{r.ratio:.2f}"
    passed = {None: "-", True: "yes", False: "**no**"}[r.passed]
    return (
        f"| {r.scenario} | {value_text(r.value, r.unit)} | {value_text(r.baseline, r.unit)}"
        f" | {ratio} | {r.goal_text} | {passed} |"
    )


def figures_table(rows: Sequence[Row | Figure]) -> str:
    """The same table as `markdown_table`, for Rows and Figures alike."""
    header = markdown_table([]).splitlines()
    return "\n".join([*header, *(table_line(r) for r in rows)])


def failed_row(scenario: str, error: BaseException) -> str:
    """A table row for a bench that could not measure: the reason, shortened."""
    reason = " ".join(str(error).split())[:160].replace("|", "/")
    return f"| {scenario} | failed: {type(error).__name__}: {reason} | - | - | - | **no** |"


def make_remotes(
    server: GitServer, tmp: Path, count: int, steps: int
) -> tuple[list[str], WorkTree]:
    """`count` repositories of `steps` steps with one history (copies of the first): their URLs,
    and a work tree on the first."""
    url, tree = make_repo(server, tmp, "remote000", steps)
    urls = [url] + [clone_bare_repo(server, "remote000", f"remote{k:03d}") for k in range(1, count)]
    return urls, tree


def spread_workspaces(
    urls: Sequence[str], count: int, server: GitServer, poll_interval: str = "0s"
) -> list[dict[str, Any]]:
    """`count` automatic workspaces dealt round-robin over the remotes `urls`."""
    out = []
    for k in range(count):
        ws = workspace(f"ws{k:05d}", urls[k % len(urls)], server)
        ws["poll_interval"] = poll_interval
        out.append(ws)
    return out


# -- a scratch PostgreSQL database, for the benches that compare stores or run replicas --------

SERVER = os.environ.get("SYNCD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")


def postgres_reachable() -> bool:
    try:
        import psycopg
    except ImportError:
        return False
    try:
        psycopg.connect(f"{SERVER}/postgres", connect_timeout=3).close()
    except psycopg.Error:
        return False
    return True


def postgres_skipped(scenario: str) -> str:
    """The table a PostgreSQL bench prints where no server answers: one row saying so."""
    where = SERVER.rpartition("@")[2]
    row = f"| {scenario} | skipped: PostgreSQL not reachable at {where} | - | - | - | - |"
    return f"{markdown_table([])}\n{row}"


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A new database on SERVER for one measurement, dropped afterwards."""
    import psycopg

    name = f"syncd_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{SERVER}/{name}"
    finally:
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
