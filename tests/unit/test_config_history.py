"""The `history` key, in a workspace and in `defaults`: what it keeps, that a workspace's own
replaces the default's as a whole, that nothing is pruned without it, errors that name the key,
and the JSON Schema agreeing with the parser on its keys and values."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncd.config import load_config
from syncd.config.schema import config_schema
from syncd.config.types import HistoryConfig
from syncd.core.errors import ConfigError
from syncd.service.prune import DAY, audit_cutoff

jsonschema_rs = pytest.importorskip("jsonschema_rs")


def ws(ws_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": ws_id, "name": ws_id, "source": {"url": "https://h.invalid/x"}, **extra}


def load(tmp_path: Path, doc: dict[str, Any]) -> Any:
    path = tmp_path / "syncd.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), **doc}))
    return load_config(path, {})


def refused(tmp_path: Path, doc: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, doc)
    return str(e.value)


def test_without_history_nothing_is_pruned(tmp_path: Path) -> None:
    config = load(tmp_path, {"workspaces": [ws("a")]})
    assert config.workspaces[0].history == HistoryConfig(None, None)
    assert audit_cutoff(config.workspaces, 1e9) is None


def test_a_workspaces_history_replaces_the_defaults_whole(tmp_path: Path) -> None:
    doc = {
        "defaults": {"history": {"keep_runs": 1000, "keep_days": 90}},
        "workspaces": [
            ws("a"),
            ws("b", history={"keep_runs": 50}),
            ws("c", history={}),
            ws("d", history={"keep_days": 0.5}),
        ],
    }
    found = {w.id: w.history for w in load(tmp_path, doc).workspaces}
    assert found == {
        "a": HistoryConfig(1000, 90.0),
        "b": HistoryConfig(50, None),
        "c": HistoryConfig(None, None),
        "d": HistoryConfig(None, 0.5),
    }


def test_the_audit_is_kept_as_long_as_the_longest_keep_days() -> None:
    from dataclasses import replace

    from tests.support.fakes import workspace

    a = replace(workspace("a"), history=HistoryConfig(keep_days=30))
    b = replace(workspace("b"), history=HistoryConfig(keep_runs=5, keep_days=90))
    c = replace(workspace("c"), history=HistoryConfig(keep_runs=5))
    assert audit_cutoff([a, b], 100 * DAY) == 10 * DAY
    assert audit_cutoff([a, b, c], 100 * DAY) is None  # c keeps its runs with no age limit
    assert audit_cutoff([], 100 * DAY) is None


BAD = {
    "keep_runs 0": ({"keep_runs": 0}, "history.keep_runs: must be at least 1, got 0"),
    "keep_runs text": ({"keep_runs": "10"}, "history.keep_runs: expected an integer"),
    "keep_runs true": ({"keep_runs": True}, "history.keep_runs: expected an integer"),
    "keep_days 0": ({"keep_days": 0}, "history.keep_days: must be more than 0"),
    "keep_days negative": ({"keep_days": -3}, "history.keep_days: must be more than 0"),
    "keep_days a duration": ({"keep_days": "90d"}, "a number of days, without a unit"),
    "keep_days true": ({"keep_days": True}, "history.keep_days: expected a number of days"),
    "keep_days too many": ({"keep_days": 1e6}, "at most 36500 days"),
    "an unknown key": ({"keep": 3}, 'history.keep: unknown key "keep"'),
    "not a mapping": ([1], "history: expected a mapping"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_values_are_refused_naming_the_key(tmp_path: Path, case: str) -> None:
    value, message = BAD[case]
    assert message in refused(tmp_path, {"workspaces": [ws("a", history=value)]})
    assert message in refused(tmp_path, {"defaults": {"history": value}, "workspaces": []})


_VALID_KEYS = re.compile(r'unknown key "__probe__".*valid keys: (.+)$')


@pytest.mark.parametrize("where", ["workspace", "defaults"])
def test_the_schema_names_the_keys_the_parser_takes(tmp_path: Path, where: str) -> None:
    probe = {"__probe__": 1}
    if where == "workspace":
        doc: dict[str, Any] = {"workspaces": [ws("a", history=probe)]}
    else:
        doc = {"defaults": {"history": probe}, "workspaces": []}
    said = refused(tmp_path, doc)
    keys = next(m.group(1) for line in said.splitlines() if (m := _VALID_KEYS.search(line)))
    node = config_schema()["$defs"]["history"]
    assert node["additionalProperties"] is False
    assert sorted(node["properties"]) == sorted(keys.split(", "))
    schema = config_schema()
    assert schema["$defs"]["workspace"]["properties"]["history"]["anyOf"][0] == {
        "$ref": "#/$defs/history"
    }
    defaults = schema["properties"]["defaults"]["anyOf"][0]
    assert defaults["properties"]["history"]["anyOf"][0] == {"$ref": "#/$defs/history"}


def test_the_schema_and_the_parser_agree_on_values(tmp_path: Path) -> None:
    validator = jsonschema_rs.validator_for(json.loads(json.dumps(config_schema())))
    for value, _ in BAD.values():
        bad: dict[str, Any] = {"state_dir": "/tmp/x", "workspaces": [ws("a", history=value)]}
        assert not validator.is_valid(bad), value
    for value in ({"keep_runs": 1}, {"keep_days": 0.5, "keep_runs": 3}, {}, None):
        doc: dict[str, Any] = {"state_dir": str(tmp_path), "defaults": {"history": value}}
        doc["workspaces"] = [ws("a", history=value)]
        assert validator.is_valid(doc), value
        load(tmp_path, doc)
