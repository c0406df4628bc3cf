"""The smaller holes hostile input found, each with the answer it gets now:

- a lone surrogate (`"\\ud800"`, valid JSON, not text) in a PUT body or an export message: 422,
  not 500;
- two exports racing to one branch: the loser answers 409 (the branch moved on), not 502;
- a read-only state directory: `serve` ends with one line naming the path, exit 2;
- a world-writable secret file: `check-config` warns naming it; a FIFO (or any file that is not
  a regular one) as a secret file: refused at once naming it, instead of hanging;
- `syncd pull` into a folder where one target is a symlinked folder: refused before any file is
  written;
- two step names that differ only in Unicode normalization (NFC/NFD): their file names would
  be one on macOS; refused naming both.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import subprocess
import sys
import threading
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from syncd.cli.pull import apply_changes, read_existing
from syncd.config import load_config
from syncd.core.errors import ConfigError
from syncd.core.layout import SDK_DIR, STEPS_DIR, LayoutError, PulledStep, layout_files, plan_files
from syncd.core.model import StepContent
from tests.support import workspace
from tests.support.configs import API_TOKEN
from tests.support.daemon import Daemon, Remote, remote, start_daemon, stop_daemon, view

HEADERS = {"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"}
RACERS = 6
ROUNDS = 3


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Remote]]:
    tmp = tmp_path_factory.mktemp("small-holes")
    with remote(tmp) as rm:
        ws = [workspace("manual", rm.url, rm.server, "manual")]
        d = start_daemon(tmp, rm.server, rm.tree, rm.url, ws)
        try:
            d.wait_until(lambda: view(d, "manual")["last_run"], 30, "the startup run")
            yield d, rm
        finally:
            stop_daemon(d)


def _send(d: Daemon, method: str, path: str, raw: bytes) -> httpx.Response:
    return httpx.request(method, f"{d.url}{path}", content=raw, headers=HEADERS, timeout=60)


@pytest.mark.parametrize(
    ("method", "path", "raw"),
    [
        ("PUT", "/steps/lone", b'{"content": {"if": "", "do": "say(\\"\\ud800\\")"}}'),
        ("PUT", "/steps/lone", b'{"content": {"if": "\\udfff", "do": "x()"}}'),
        ("POST", "/export", b'{"branch": "promote/lone", "message": "half \\ud83d a pair"}'),
    ],
)
def test_a_lone_surrogate_is_refused_as_422(
    served: tuple[Daemon, Remote], method: str, path: str, raw: bytes
) -> None:
    d, _ = served
    r = _send(d, method, f"/api/v1/workspaces/manual{path}", raw)
    assert r.status_code == 422, r.text
    assert "surrogate" in r.json()["error"]
    assert "Traceback" not in d.log()


def test_the_loser_of_an_export_race_answers_409(served: tuple[Daemon, Remote]) -> None:
    d, _ = served
    seen: list[int] = []
    for round_no in range(ROUNDS):
        # Each racer's message differs, so each builds its own commit on the same base.
        bodies = [
            f'{{"branch": "race/{round_no % 2}", "message": "racer {round_no}.{i}"}}'.encode()
            for i in range(RACERS)
        ]
        with concurrent.futures.ThreadPoolExecutor(RACERS) as pool:
            answers = list(
                pool.map(lambda b: _send(d, "POST", "/api/v1/workspaces/manual/export", b), bodies)
            )
        for r in answers:
            assert r.status_code in (200, 409), f"{r.status_code}: {r.text}"
            seen.append(r.status_code)
    assert 200 in seen


@contextlib.contextmanager
def read_only_folder(path: Path) -> Iterator[Path]:
    """A folder nobody may write to: by its mode, or (root ignores modes) a read-only mount."""
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("running as root, and cannot mount a read-only tmpfs to test with")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def test_a_read_only_state_directory_ends_serve_with_one_line_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "syncd.yaml"
    config.write_text('server: {listen: "127.0.0.1:9"}\nstate_dir: ./state\nworkspaces: []\n')
    with read_only_folder(tmp_path / "state") as state:
        done = subprocess.run(
            [sys.executable, "-m", "syncd", "serve", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(state) in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def _config_with_secret_file(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "syncd.yaml"
    config.write_text(
        "state_dir: ./state\nworkspaces: []\n"
        "tokens:\n  - {name: ops, token_file: ./api-token, scopes: [read]}\n"
    )
    return config, tmp_path / "api-token"


def _check_config(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncd", "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,  # a FIFO with no writer used to block here for ever
    )


def test_a_fifo_as_a_secret_file_is_refused_naming_it(tmp_path: Path) -> None:
    config, secret = _config_with_secret_file(tmp_path)
    os.mkfifo(secret)
    done = _check_config(config)
    assert done.returncode == 2, done.stderr
    assert f"{secret} is not a regular file (a FIFO)" in done.stderr
    # A reload reads the config in the daemon's thread: it must not hang there either.
    loaded: list[BaseException | object] = []
    reader = threading.Thread(target=lambda: loaded.append(_judge(config)), daemon=True)
    reader.start()
    reader.join(10)
    assert loaded and isinstance(loaded[0], ConfigError), "the config load hung on the FIFO"


def test_a_world_writable_secret_file_is_refused_naming_it(tmp_path: Path) -> None:
    config, secret = _config_with_secret_file(tmp_path)
    secret.write_text("a-token-of-enough-length-0123456789\n")
    secret.chmod(0o666)
    done = _check_config(config)
    assert done.returncode == 2, done.stderr
    assert f"{secret} is writable by every user" in done.stderr
    secret.chmod(0o600)
    assert _check_config(config).returncode == 0


def _judge(config: Path) -> object:
    try:
        return load_config(config)
    except ConfigError as e:
        return e


def _pulled(*names: str) -> list[PulledStep]:
    content = StepContent.from_dict({"if": "true", "do": "done()"})
    return [PulledStep("ws", f"id-{i}", n, content, 1, 0.0) for i, n in enumerate(names)]


@pytest.mark.parametrize("linked", [f"{SDK_DIR}/zzz", f"{SDK_DIR}/zzz/deeper"])
def test_pull_refuses_a_symlinked_folder_before_writing_anything(
    tmp_path: Path, linked: str
) -> None:
    # A folder inside the layout (a step named "zzz/beta" goes to src/steps/zzz/beta.mts) that
    # is a symlink out of the checkout: `read_existing` does not follow it, so it used to be
    # found only when that file was written, after the others.
    checkout, outside = tmp_path / "checkout", tmp_path / "outside"
    (checkout / ".git").mkdir(parents=True)
    (checkout / STEPS_DIR).mkdir(parents=True)
    (outside / "steps").mkdir(parents=True)
    (checkout / linked).parent.mkdir(parents=True, exist_ok=True)
    (checkout / linked).symlink_to(outside / "steps")
    before = sorted(p.relative_to(checkout) for p in checkout.rglob("*"))
    names = ("alpha", "zzz/beta") if linked.endswith("zzz") else ("alpha", "zzz/deeper/beta")
    changes = plan_files(layout_files(_pulled(*names)), read_existing(checkout))
    with pytest.raises(LayoutError, match="leads outside"):
        apply_changes(checkout, changes)
    assert sorted(p.relative_to(checkout) for p in checkout.rglob("*")) == before
    assert not list((outside / "steps").iterdir())


def test_nfc_and_nfd_twins_get_file_names_that_differ_on_macos() -> None:
    nfc, nfd = (
        unicodedata.normalize("NFC", "café au lait"),
        unicodedata.normalize("NFD", "café au lait"),
    )
    assert nfc != nfd
    files = layout_files(_pulled(nfc, nfd, "Other", "other"))
    seen = {unicodedata.normalize("NFD", path).casefold() for path in files}
    assert len(seen) == len(files), sorted(files)
