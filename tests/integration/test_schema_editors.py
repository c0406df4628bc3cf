"""The config's JSON Schema as editors and CI read it: check-jsonschema in its default mode
(JSON Schema 2020-12, ECMAScript regexes) accepts the schema itself and the example config with
its includes, and refuses an `http://` source and a `max_deletes` over 100%."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "config/syncd.schema.json"
CHECK = shutil.which("check-jsonschema")
pytestmark = pytest.mark.skipif(
    CHECK is None, reason="check-jsonschema is not installed (pip install -e '.[test]')"
)


def check(*files: Path) -> subprocess.CompletedProcess[str]:
    assert CHECK is not None
    return subprocess.run(
        [CHECK, "--schemafile", str(SCHEMA), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_schema_and_the_example_config_are_valid() -> None:
    example = [ROOT / "config/syncd.example.yaml", *sorted(ROOT.glob("config/workspaces.d/*"))]
    done = check(*example)
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_http_source_and_a_share_over_100_percent_are_refused(tmp_path: Path) -> None:
    def workspace(**fields: object) -> dict[str, object]:
        return {"id": "a", "name": "a", "source": {"url": "https://git.example.com/x"}} | fields

    docs = {
        "http.yaml": {"workspaces": [workspace(source={"url": "http://git.example.com/x"})]},
        "percent.yaml": {"workspaces": [workspace(max_deletes="120%")]},
        "fine.yaml": {"workspaces": [workspace(max_deletes="100%")]},
    }
    for name, doc in docs.items():
        (tmp_path / name).write_text(yaml.safe_dump(doc))
    refused = check(tmp_path / "http.yaml")
    assert refused.returncode == 1
    assert "source.url: 'http://git.example.com/x' does not match" in refused.stdout
    refused = check(tmp_path / "percent.yaml")
    assert refused.returncode == 1 and "max_deletes" in refused.stdout
    assert "'120%'" in refused.stdout
    done = check(tmp_path / "fine.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
