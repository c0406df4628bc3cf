"""The systemd unit and the container file say what the README promises."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


HOST_UNITS = next(
    (p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()), None
)


def _wheel(tmp_path: Path) -> Path:
    """syncd's wheel, built from this checkout (offline first, then with build isolation)."""
    out = tmp_path / "wheel"
    for isolation in (["--no-build-isolation"], []):
        pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation]
        done = subprocess.run(
            [*pip, "-w", str(out), str(ROOT)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode == 0:
            return next(out.glob("syncd-*.whl"))
    pytest.skip(f"cannot build syncd's wheel here: {done.stderr.strip().splitlines()[-1:]}")


def _systemd_root(root: Path) -> None:
    """What `systemd-analyze verify --root` needs of a host besides syncd: the distribution's
    units (sysinit.target and the like) and /bin/kill (the unit's ExecReload)."""
    assert HOST_UNITS is not None
    shutil.copytree(HOST_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    kill = shutil.which("kill", path="/usr/bin:/bin")
    assert kill is not None
    shutil.copy2(kill, root / "usr/bin/kill")
    for link in ("bin", "lib"):  # Debian's merged /usr
        if not (root / link).exists():
            (root / link).symlink_to(f"usr/{link}")


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """packaging/install.sh --root: the staged root and what the script printed (once)."""
    tmp_path = tmp_path_factory.mktemp("install")
    root = tmp_path / "root"
    wheel = _wheel(tmp_path)
    # --no-deps: the test stays offline; the dependencies come from this environment below.
    install = [str(ROOT / "packaging/install.sh"), "--root", str(root), "--wheel", str(wheel)]
    done = subprocess.run(
        [*install, "--python", sys.executable, "--pip-args", "--no-deps --no-index"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return root, done.stdout


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or HOST_UNITS is None,
    reason="systemd-analyze is not installed here: the installed unit cannot be verified",
)
def test_the_install_script_leaves_a_unit_that_verifies_unchanged(
    staged: tuple[Path, str], tmp_path: Path
) -> None:
    staged_root, _ = staged
    root = tmp_path / "root"  # a copy: the host's units go into it, not into the staged root
    shutil.copytree(staged_root, root, symlinks=True)
    unit = root / "etc/systemd/system/syncd.service"
    assert unit.read_bytes() == (ROOT / "systemd/syncd.service").read_bytes()
    assert os.readlink(root / "usr/local/bin/syncd") == "/opt/syncd/bin/syncd"
    assert (root / "etc/syncd/syncd.example.yaml").is_file()
    assert (root / "usr/share/doc/syncd/syncd.schema.json").is_file()
    assert (root / "etc/syncd/credentials").stat().st_mode & 0o777 == 0o700
    # Documentation= names a file the script installed
    docs = [
        line.split("=", 1)[1]
        for line in unit.read_text().splitlines()
        if line.startswith("Documentation=")
    ]
    for doc in docs[0].split():
        assert doc.startswith("file://") and (root / doc.removeprefix("file:///")).is_file()
    _systemd_root(root)  # as docs/operations.md says: verify --root needs the host's units
    done = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "syncd.service"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_a_staged_install_is_made_for_its_final_place(staged: tuple[Path, str]) -> None:
    root, printed = staged
    venv = root / "opt/syncd"
    # The launcher the unit runs names /opt/syncd, not the staging folder; nothing else does.
    launcher = (venv / "bin/syncd").read_text()
    assert launcher.startswith("#!/opt/syncd/bin/python"), launcher.splitlines()[0]
    for file in [*venv.glob("bin/*"), venv / "pyvenv.cfg"]:
        if file.is_file() and not file.is_symlink():
            assert str(root) not in file.read_text(errors="replace"), file
    # Compiled for the final paths: a traceback names /opt/syncd/..., never the staging folder.
    pyc = next(venv.glob("lib/python*/site-packages/syncd/__pycache__/app.*.pyc"))
    assert b"/opt/syncd/lib/" in pyc.read_bytes() and str(root).encode() not in pyc.read_bytes()
    # The venv's syncd runs (as its launcher would; dependencies from this environment, as
    # --no-deps left them out), and the script says its version once.
    site = sysconfig.get_paths()["purelib"]
    done = subprocess.run(
        [str(venv / "bin/python"), str(venv / "bin/syncd"), "version"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": site},
    )
    assert done.returncode == 0 and done.stdout.startswith("syncd "), done.stderr
    assert f"{done.stdout.strip()} staged under {root}, for / on the target host" in printed
    assert "syncd syncd" not in printed
    assert f"tar -C {root} -c . | ssh HOST tar -C / -x" in printed
    # the README's screenshots beside the pages it links them from
    for shot in ROOT.glob("docs/*.png"):
        assert (root / "usr/share/doc/syncd/docs" / shot.name).is_file(), shot.name


def test_the_install_script_refuses_an_unknown_option(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(ROOT / "packaging/install.sh"), "--root", str(tmp_path), "--frobnicate"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "unknown option --frobnicate" in done.stderr


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
        (creds / name).write_text(f"{name}-value-0123456789\n")

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
