"""Log lines: key=value text or JSON lines, with registered secrets scrubbed."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from syncd import logs


@pytest.fixture
def capture() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield io.StringIO()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_text_lines_are_key_value_and_scrubbed(capture: io.StringIO) -> None:
    logs.register_secrets(["hunter2-secret"])
    logs.setup_logging("text", stream=capture)
    logging.getLogger("syncd.test").info(
        "sync start workspace=%s token=%s", "prod", "hunter2-secret"
    )
    line = capture.getvalue().strip()
    assert "level=info logger=syncd.test sync start workspace=prod token=***" in line
    assert "hunter2-secret" not in line


def test_json_lines_are_json_and_scrubbed(capture: io.StringIO) -> None:
    logs.register_secrets(["hunter3-secret"])
    logs.setup_logging("json", stream=capture)
    try:
        raise ValueError("boom hunter3-secret")
    except ValueError:
        logging.getLogger("syncd.test").exception("failed")
    doc = json.loads(capture.getvalue().strip().splitlines()[0])
    assert doc["level"] == "error" and doc["msg"] == "failed"
    assert "hunter3-secret" not in capture.getvalue()


def test_short_values_are_not_registered() -> None:
    logs.register_secrets(["ab", ""])
    assert logs.scrub("a b ab") == "a b ab"
