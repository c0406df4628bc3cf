"""The messages between the daemon and its intake processes (`syncd.http.intake.wire`): what is
encoded decodes to the same message; the line is the one both sides always wrote; anything
malformed (bytes, JSON of the wrong shape, values out of bounds) is refused with a WireError
naming where, never another exception and never a secret's text. Then both sides with it: the
daemon's settings reach an intake process's screening, an intake process's report the daemon's
metrics; and the restart back-off of the daemon's side."""

from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import syncd.http.intake.workers as workers_module
from syncd.config import ServerConfig
from syncd.core.retry import INTAKE_RESTART, INTAKE_STEADY_AFTER
from syncd.http.intake.front import IntakeProcessApp
from syncd.http.intake.wire import (
    NAME_MAX,
    NUMBER_MAX,
    REPORT_MAX,
    Count,
    Report,
    Settings,
    Signed,
    WireError,
)
from syncd.http.intake.workers import IntakeWorkers, front_settings
from syncd.webhooks import Target

EXAMPLES = 200
SECRET = "wire-7c1d-secret-value"

texts = st.text(max_size=40)
names = st.text(max_size=NAME_MAX)
secrets = st.lists(texts, max_size=3).map(tuple)
settings_messages = st.builds(
    Settings,
    targets=st.lists(st.builds(Target, texts, texts, texts, texts), max_size=5).map(tuple),
    secrets=st.dictionaries(names, st.tuples(secrets, secrets), max_size=4),
    max_body_bytes=st.integers(1, NUMBER_MAX),
    max_connections=st.integers(0, NUMBER_MAX),
    header_timeout=st.floats(min_value=0, exclude_min=True, allow_infinity=False),
)
times = st.floats(min_value=0, allow_infinity=False, allow_nan=False)
report_messages = st.builds(
    Report,
    counts=st.lists(st.builds(Count, names, names, st.integers(0, NUMBER_MAX))).map(tuple),
    signed=st.lists(st.builds(Signed, names, st.integers(0, NUMBER_MAX), times)).map(tuple),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def valid_settings(**change: Any) -> dict[str, Any]:
    """A settings message as JSON, with `change` made to its members."""
    doc: dict[str, Any] = {
        "targets": [["auto", "git.example.com/team/steps", "main", "export/steps"]],
        "secrets": {"github": [[SECRET], []]},
        "max_body_bytes": 1048576,
        "max_connections": 2048,
        "header_timeout": 10.0,
    }
    return doc | change


def refused(message: type[Settings] | type[Report], line: bytes | str) -> str:
    with pytest.raises(WireError) as caught:
        message.decode(line)
    return str(caught.value)


# -- round trips and the line itself --------------------------------------------------------


@settings(max_examples=EXAMPLES, deadline=None)
@given(settings_messages)
def test_settings_decode_to_what_was_encoded(message: Settings) -> None:
    line = message.encode()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert Settings.decode(line) == message
    assert Settings.decode(line.decode()) == message


@settings(max_examples=EXAMPLES, deadline=None)
@given(report_messages)
def test_reports_decode_to_what_was_encoded(message: Report) -> None:
    line = message.encode()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert Report.decode(line) == message


def test_the_lines_are_the_ones_both_sides_always_wrote() -> None:
    """A daemon and an intake process started from different installs (a restart after an
    upgrade) still understand each other: the line is unchanged."""
    message = Settings(
        targets=(Target("auto", "git.example.com/team/steps", "main", "export/steps"),),
        secrets={"github": ((SECRET,), ()), "gitlab": (("a", "b"), ("c",))},
        max_body_bytes=1048576,
        max_connections=2048,
        header_timeout=10.0,
    )
    assert message.encode() == (
        b'{"targets": [["auto", "git.example.com/team/steps", "main", "export/steps"]], '
        b'"secrets": {"github": [["wire-7c1d-secret-value"], []], "gitlab": [["a", "b"], ["c"]]}, '
        b'"max_body_bytes": 1048576, "max_connections": 2048, "header_timeout": 10.0}\n'
    )
    report = Report((Count("github", "unmatched", 3),), (Signed("github", 0, 1700000000.5),))
    assert report.encode() == (
        b'{"counts": [["github", "unmatched", 3]], "signed": [["github", 0, 1700000000.5]]}\n'
    )


def test_unknown_members_are_ignored_and_a_report_may_leave_out_its_lists() -> None:
    line = json.dumps(valid_settings(later_addition={"x": 1}))
    assert Settings.decode(line).max_connections == 2048
    assert Report.decode(b"{}\n") == Report()
    assert Report.decode(b'{"counts": [["github", "ping", 1]]}') == Report(
        (Count("github", "ping", 1),)
    )


# -- malformed lines --------------------------------------------------------------------------


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_are_decoded_or_refused(line: bytes) -> None:
    for message in (Settings, Report):
        with contextlib.suppress(WireError):
            message.decode(line)


@settings(max_examples=EXAMPLES, deadline=None)
@given(json_values)
def test_any_json_is_decoded_or_refused(value: Any) -> None:
    line = json.dumps(value)
    for message in (Settings, Report):
        with contextlib.suppress(WireError):
            message.decode(line)


def _paths(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON tree, the root's members first."""
    inner: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            inner += [(*at, k), *_paths(v, (*at, k))]
    elif isinstance(value, list):
        for i, v in enumerate(value):
            inner += [(*at, i), *_paths(v, (*at, i))]
    return inner


def _replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return doc | {head: _replaced(doc[head], rest, value)}
    return [_replaced(v, rest, value) if i == head else v for i, v in enumerate(doc)]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), settings_messages, report_messages, json_values)
def test_a_message_with_one_part_changed_is_decoded_or_refused_naming_where(
    data: st.DataObject, message: Settings, report: Report, junk: Any
) -> None:
    for kind, line in ((Settings, message.encode()), (Report, report.encode())):
        doc = json.loads(line)
        places = _paths(doc)
        if not places:
            continue
        path = data.draw(st.sampled_from(places))
        changed = json.dumps(_replaced(doc, path, junk))
        try:
            kind.decode(changed)
        except WireError as e:
            assert str(e).startswith(("settings", "report"))


def test_a_malformed_message_is_refused_naming_what_and_where() -> None:
    too_short = json.dumps(valid_settings(targets=[["auto", "url", "main"]]))
    assert refused(Settings, too_short) == (
        "settings.targets[0]: expected 4 items, got a list of 3 items"
    )
    missing = valid_settings()
    del missing["max_connections"]
    assert refused(Settings, json.dumps(missing)) == "settings: no 'max_connections'"
    assert refused(Settings, json.dumps(valid_settings(max_body_bytes=True))) == (
        "settings.max_body_bytes: expected a whole number, got True"
    )
    assert refused(Settings, json.dumps(valid_settings(max_body_bytes=0))).startswith(
        "settings.max_body_bytes: expected a number from 1 to"
    )
    assert "settings.header_timeout: expected a finite number over 0" in refused(
        Settings, json.dumps(valid_settings(header_timeout=math.nan))
    )
    assert refused(Settings, json.dumps(valid_settings(header_timeout=0))).startswith(
        "settings.header_timeout: expected a finite number over 0"
    )
    huge = json.dumps(valid_settings(header_timeout=10**400))
    assert refused(Settings, huge).startswith("settings.header_timeout: expected a finite number")
    assert refused(Settings, "[]") == "settings: expected an object, got a list of 0 items"
    assert refused(Report, b'{"counts": [["github", "unmatched", -1]]}').startswith(
        "report.counts[0][2]: expected a number from 0 to"
    )
    assert refused(Report, b'{"signed": [["github", 0, "now"]]}') == (
        "report.signed[0][2]: expected a number, got a string of 3 characters"
    )
    assert refused(Report, b'{"counts": [["x" , "' + b"y" * 65 + b'", 1]]}') == (
        "report.counts[0][1]: expected at most 64 characters, got a string of 65 characters"
    )
    assert refused(Report, b"{not json").startswith("report: not JSON (")
    assert refused(Report, b'{"counts": "\xff"}') == "report: not UTF-8 (at byte 12)"
    assert refused(Report, '{"counts": [["a", "b", 1' + "0" * 5000 + "]]}") == (
        "report: not JSON (ValueError)"
    )


def test_no_secret_is_named_in_a_refusal() -> None:
    for wrong in ([[SECRET], SECRET], [[SECRET], [SECRET, 7]], [[SECRET]], {SECRET: SECRET}):
        text = refused(Settings, json.dumps(valid_settings(secrets={"github": wrong})))
        assert text.startswith("settings.secrets.github") and SECRET not in text
    broken = json.dumps(valid_settings())[:-3].encode()  # cut off: the parser stops at the end
    assert SECRET not in refused(Settings, broken)


def test_lines_are_bounded() -> None:
    long = b'{"counts": [], "pad": "' + b"x" * REPORT_MAX + b'"}\n'
    assert refused(Report, long).startswith(f"report: a line of {len(long) - 1}, over the")
    at_most = b'{"pad": "' + b"x" * (REPORT_MAX - 11) + b'"}\n'
    assert len(at_most) == REPORT_MAX + 1 and Report.decode(at_most) == Report()
    nested = b"[" * 100_000 + b"]" * 100_000
    assert refused(Report, nested) == "report: not JSON (RecursionError)"
    too_many = json.dumps({"counts": [["github", "ping", 1]] * 4097})
    assert refused(Report, too_many) == (
        "report.counts: expected at most 4096 items, got a list of 4097 items"
    )


# -- both sides with it -----------------------------------------------------------------------


@dataclass
class FakeCounter:
    value: float = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def set(self, value: float) -> None:
        self.value = value


@dataclass
class FakeMetrics:
    intake_processes: Any = field(default_factory=FakeCounter)
    intake_exits: Any = field(default_factory=FakeCounter)
    webhooks: list[tuple[str, str, int]] = field(default_factory=list)

    def webhook(self, provider: str, result: str, count: int = 1) -> None:
        self.webhooks.append((provider, result, count))


def test_the_daemons_settings_reach_an_intake_process() -> None:
    targets = [Target("auto", "git.example.com/team/steps", "main", "export/steps")]
    daemon_side = IntakeProcessApp("/nonexistent/daemon.sock", io.BytesIO())
    daemon_side.intake.use(targets, {"github": ((SECRET,), ())})
    server = ServerConfig(max_body_bytes=4096, header_timeout=3.5)
    line = front_settings(daemon_side.intake, server, 100).encode()
    process = IntakeProcessApp("/nonexistent/daemon.sock", io.BytesIO())
    process.settle(Settings.decode(line))
    assert process.intake.targets() == targets
    assert process.intake.secrets() == {"github": ((SECRET,), ())}
    assert process.webhooks.max_body_bytes() == 4096


def test_an_intake_process_report_reaches_the_daemons_metrics() -> None:
    out = io.BytesIO()
    process = IntakeProcessApp("/nonexistent/daemon.sock", out)
    process.write_report()
    assert out.getvalue() == b""  # nothing counted, nothing to tell
    process.counts.webhook("github", "unmatched", 2)
    process.counts.webhook("github", "unauthorized")
    process.intake.seen("github", 1, 1700000000.25)
    process.write_report()
    metrics = FakeMetrics()
    daemon_intake = IntakeProcessApp("/nonexistent/daemon.sock", io.BytesIO()).intake
    daemon = IntakeWorkers(1, -1, "/nonexistent", lambda: None, daemon_intake, metrics)  # type: ignore[arg-type,return-value]
    daemon._apply(Report.decode(out.getvalue()))
    assert metrics.webhooks == [("github", "unauthorized", 1), ("github", "unmatched", 2)]
    assert daemon_intake.secret_last_seen == {("github", 1): 1700000000.25}


# -- the restart back-off ---------------------------------------------------------------------


def test_the_restart_policy_doubles_to_its_cap_without_jitter() -> None:
    delays = [INTAKE_RESTART.delay(n, rng=lambda: 1.0) for n in range(1, 8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_an_intake_process_that_keeps_failing_is_started_again_later_and_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Seven starts that fail at once, then one after a steady run: the waits double to 30 s,
    and start over at 1 s after the steady run."""
    import asyncio

    clock = [0.0]
    ran_for = [0.0] * 7 + [INTAKE_STEADY_AFTER + 1] + [0.0]
    waits: list[float] = []
    metrics = FakeMetrics()
    daemon = IntakeWorkers(1, -1, "/nonexistent", lambda: None, None, metrics)  # type: ignore[arg-type,return-value]

    async def spawn() -> Any:
        clock[0] += ran_for[len(waits)]
        raise OSError("no file descriptors left")

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == len(ran_for):
            daemon.stopping()

    monkeypatch.setattr(daemon, "_spawn", spawn)
    monkeypatch.setattr(workers_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(workers_module, "asyncio", SimpleNamespace(sleep=sleep))
    asyncio.run(daemon._keep(0))
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 1.0, 2.0]
    assert metrics.intake_exits.value == len(ran_for)
