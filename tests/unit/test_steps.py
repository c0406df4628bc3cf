"""The export format: every malformed file fails with its name in the message."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.core.errors import StepFileError
from syncd.core.model import Step, StepContent
from syncd.core.refs import MODE_SUBMODULE, MODE_SYMLINK
from syncd.core.steps import (
    MAX_FILE_BYTES,
    MAX_LISTED_ERRORS,
    MAX_STEPS,
    FileEntry,
    Problems,
    check_entries,
    check_unique,
    entry_problem,
    parse_step_file,
    render_step_file,
    step_file_name,
    summarize,
)

PATH = "export/steps/a.step.json"


def doc(**over: object) -> bytes:
    d: dict[str, object] = {"name": "a", "content": {"if": "true", "do": "x()"}}
    d.update(over)
    return json.dumps(d).encode()


def test_minimal_file_gets_defaults() -> None:
    name, content = parse_step_file(PATH, doc())
    assert name == "a"
    assert content == StepContent("true", "x()", enabled=True, valid=True)


def test_other_keys_are_allowed() -> None:
    name, _ = parse_step_file(PATH, doc(id="123", extra={"x": 1}))
    assert name == "a"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"{not json", "is not valid JSON"),
        (b"\xff\xfe", "is not UTF-8"),
        (b"[]", "must be a JSON object"),
        (doc(name=None), "`name` must be a string"),
        (doc(name=5), "`name` must be a string"),
        (doc(name="  "), "`name` is empty"),
        (doc(name="a\x00b"), "NUL"),
        (doc(content="x"), "`content` must be an object"),
        (doc(content={"do": "x"}), "`content.if` must be a string"),
        (doc(content={"if": "x", "do": 3}), "`content.do` must be a string"),
        (doc(content={"if": "x", "do": "y", "enabled": "yes"}), "`content.enabled`"),
        (doc(content={"if": "x", "do": "y", "valid": 1}), "`content.valid`"),
        (doc(json="{}", hash="0" * 64), "is corrupt"),
        (doc(json=1, hash="x"), "must be strings"),
        (b"[" * 100_000 + b"]" * 100_000, "JSON"),
    ],
)
def test_bad_files_name_the_file(data: bytes, fragment: str) -> None:
    with pytest.raises(StepFileError) as e:
        parse_step_file(PATH, data)
    assert PATH in str(e.value)
    assert fragment in str(e.value)


def test_hash_matching_json_passes() -> None:
    text = '{"if":"true","do":"x()","enabled":true,"valid":true}'
    good = hashlib.sha256(text.encode()).hexdigest()
    assert parse_step_file(PATH, doc(json=text, hash=good))[0] == "a"


def test_oversized_file_is_refused_before_parsing() -> None:
    with pytest.raises(StepFileError, match="over the limit"):
        parse_step_file(PATH, b" " * (MAX_FILE_BYTES + 1))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("and-done/greeting done", "and-done__greeting__done.step.json"),
        ("a//b  c", "a__b__c.step.json"),
        ("plain", "plain.step.json"),
        ("a / b", "a__b.step.json"),
    ],
)
def test_file_name_from_step_name(name: str, expected: str) -> None:
    assert step_file_name(name) == expected


def test_duplicate_names_name_both_files() -> None:
    c = StepContent("a", "b")
    steps = [
        Step("x", c, "p/one.step.json"),
        Step("y", c, "p/two.step.json"),
        Step("x", c, "p/deep/three.step.json"),
    ]
    with pytest.raises(StepFileError) as e:
        check_unique(steps)
    assert "p/one.step.json" in str(e.value) and "p/deep/three.step.json" in str(e.value)


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        (FileEntry("s/link.step.json", MODE_SYMLINK, 10), "symlink"),
        (FileEntry("s/sub", MODE_SUBMODULE, 0), "submodule"),
        (FileEntry("s/big.step.json", 0o100644, MAX_FILE_BYTES + 1), "over the limit"),
    ],
)
def test_entries_refused(entry: FileEntry, fragment: str) -> None:
    with pytest.raises(StepFileError, match=fragment) as e:
        check_entries([FileEntry("s/ok.step.json", 0o100644, 10), entry])
    assert entry.path in str(e.value)


def test_every_problem_is_listed_up_to_a_cap() -> None:
    problems = Problems()
    problems.parse("s/a.step.json", "1", lambda _blob: b"{not json")
    problems.parse("s/b.step.json", "2", lambda _blob: b"[]")
    problems.add(entry_problem(FileEntry("s/link.step.json", MODE_SYMLINK, 10)))
    assert problems.add(None) is False
    with pytest.raises(StepFileError) as e:
        problems.raise_if_any()
    message = str(e.value)
    assert message.startswith("3 step files are wrong: s/a.step.json: is not valid JSON")
    assert "s/b.step.json: must be a JSON object, got an array" in message
    assert "s/link.step.json: is a symlink" in message
    many = [f"s/{i}.step.json: is bad" for i in range(MAX_LISTED_ERRORS + 5)]
    text = summarize(many)
    assert text.endswith(f"s/{MAX_LISTED_ERRORS - 1}.step.json: is bad; and 5 more")
    assert f"s/{MAX_LISTED_ERRORS}.step.json" not in text
    assert summarize(["s/a.step.json: is bad"]) == "s/a.step.json: is bad"


def test_too_many_steps() -> None:
    entries = [FileEntry(f"s/{i}.step.json", 0o100644, 10) for i in range(MAX_STEPS + 1)]
    with pytest.raises(StepFileError, match="over the limit"):
        check_entries(entries)


def test_rendered_hash_is_sha256_of_compact_json_in_contract_order() -> None:
    content = StepContent('x == "1"', "done()", enabled=False, valid=True)
    d = json.loads(render_step_file("n", content))
    assert d["json"] == '{"if":"x == \\"1\\"","do":"done()","enabled":false,"valid":true}'
    assert d["hash"] == hashlib.sha256(d["json"].encode()).hexdigest()


names = st.text(min_size=1, max_size=60).filter(lambda s: s.strip() and "\x00" not in s)
bodies = st.text(max_size=200)


@given(names, bodies, bodies, st.booleans(), st.booleans())
def test_render_then_parse_round_trips(name: str, if_: str, do: str, en: bool, va: bool) -> None:
    content = StepContent(if_, do, en, va)
    assert parse_step_file(PATH, render_step_file(name, content)) == (name, content)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_step_file_errors(data: bytes) -> None:
    try:
        parse_step_file(PATH, data)
    except StepFileError as e:
        assert PATH in str(e)


@given(st.text(), st.text(), st.booleans(), st.booleans())
def test_canonical_json_is_json_dumps_text(if_: str, do: str, enabled: bool, valid: bool) -> None:
    """The hash is taken over this text: it must stay json.dumps' text to the byte."""
    content = StepContent(if_, do, enabled, valid)
    want = json.dumps(content.to_dict(), separators=(",", ":"), ensure_ascii=False)
    assert content.canonical_json() == want


def test_canonical_json_of_fields_of_other_types_is_still_json_dumps_text() -> None:
    odd = StepContent('\x00\x7f\u2028"\\', "é", 1, 0)  # type: ignore[arg-type]
    want = json.dumps(odd.to_dict(), separators=(",", ":"), ensure_ascii=False)
    assert odd.canonical_json() == want
