"""The console's pure parts: signed sessions and CSRF tokens, what pages show (diffs cut to a
readable size), the badge image, commit links, and the config keys behind them."""

from __future__ import annotations

import asyncio
import base64
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import pytest

from syncd.app import Parts
from syncd.config import Config, Secret, TokenConfig, load_config
from syncd.core.errors import ConfigError
from syncd.core.model import Plan, StepChange, StepContent
from syncd.core.urls import commit_url
from syncd.http.badge import render_badge
from syncd.http.console import pages
from syncd.http.console.sessions import Session, Sessions
from syncd.http.console.streams import Feed, Streams
from syncd.http.console.streams import stream as _stream
from tests.support.fakes import config

NOW = 1_800_000_000.0
CI = TokenConfig("ci", Secret("the-value-of-ci-0123456789", "env CI"), frozenset({"read"}))
VIEWER = TokenConfig("viewer", Secret("the-value-of-viewer-0123", "env V"), frozenset({"read"}))


class _Every:
    """Every workspace id: a visitor who may read them all."""

    def __contains__(self, ws_id: object) -> bool:
        return True


def everything() -> _Every:
    return _Every()


def test_a_session_round_trips_and_holds_no_token_value() -> None:
    signer = Sessions(b"k" * 32, 3600)
    session = signer.new(NOW, CI)
    cookie = signer.encode(session)
    expected = Session(session.sid, "ci", int(NOW + 3600), session.token_digest)
    assert signer.decode(cookie, NOW + 10) == expected
    assert CI.token.reveal() not in cookie
    payload = cookie.split(".")[0]
    assert CI.token.reveal().encode() not in base64.urlsafe_b64decode(payload + "==")
    assert signer.decode(cookie, NOW + 3601) is None  # expired
    # Bound to the token's value: the same name with another value is not the same token.
    rotated = TokenConfig("ci", Secret("a-new-value-of-ci-0123456789", "env CI"), CI.scopes)
    assert signer.made_with(session, CI) and not signer.made_with(session, rotated)
    # A pre-session is in a cookie of its own kind: neither is taken for the other.
    anonymous = signer.new(NOW)
    pre_cookie = signer.encode(anonymous)
    assert not anonymous.signed_in and signer.decode_pre(pre_cookie, NOW) == anonymous
    assert signer.decode(pre_cookie, NOW) is None and signer.decode_pre(cookie, NOW) is None


@pytest.mark.parametrize(
    "cookie",
    [None, "", "abc", "a.b.c", "x" * 5000, "eyJzIjoxfQ.sig", "!!!.###"],
)
def test_malformed_cookies_are_nobodys(cookie: str | None) -> None:
    assert Sessions(b"k", 3600).decode(cookie, NOW) is None


def test_a_tampered_or_foreign_cookie_is_refused() -> None:
    signer = Sessions(b"key one", 3600)
    cookie = signer.encode(signer.new(NOW, VIEWER))
    _, signature = cookie.split(".")
    forged = pages_b64('{"s":"x","n":"ci","e":9999999999}')
    assert signer.decode(f"{forged}.{signature}", NOW) is None
    assert Sessions(b"key two", 3600).decode(cookie, NOW) is None


def pages_b64(text: str) -> str:
    import base64

    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def test_csrf_tokens_are_tied_to_the_session() -> None:
    signer = Sessions(b"k", 3600)
    one, two = signer.new(NOW, CI), signer.new(NOW, CI)
    token = signer.csrf_token(one)
    assert signer.csrf_valid(one, token)
    assert not signer.csrf_valid(two, token)
    assert not signer.csrf_valid(one, None) and not signer.csrf_valid(one, "")
    assert not Sessions(b"other", 3600).csrf_valid(one, token)


def test_a_very_large_diff_is_cut_with_a_count() -> None:
    before = StepContent("true", "\n".join(f"line {i}" for i in range(2000)))
    after = StepContent("true", "\n".join(f"LINE {i}" for i in range(2000)))
    change = StepChange("update", "big", before, after)
    lines, hidden = pages.diff_lines(change.diff)
    assert len(lines) == pages.MAX_DIFF_LINES and hidden > 3000
    assert {line.kind for line in lines} >= {"meta", "hunk", "del"}
    long_line = pages.diff_lines("+" + "x" * 10_000)[0][0]
    assert len(long_line.text) < 2100 and long_line.text.endswith("(line cut)")


def test_a_plan_with_very_many_changes_is_cut() -> None:
    creates = tuple(
        StepChange("create", f"s{i}", None, StepContent("true", "x")) for i in range(250)
    )
    shown, hidden = pages.plan_changes(Plan(creates=creates))
    assert len(shown) == pages.MAX_CHANGES and hidden == 50


def test_rows_and_ages() -> None:
    view = {
        "id": "w",
        "name": "w",
        "tags": ["a"],
        "mode": "manual",
        "status": "OutOfSync",
        "source": {"url": "https://github.com/acme/steps.git"},
        "last_applied_revision": "a" * 40,
        "last_run": {"id": "r", "result": "failed", "started_at": NOW - 400, "finished_at": None},
        "changed_outside": 2,
    }
    row = pages.row(view, NOW)
    assert row["applied"] == "a" * 10
    assert row["applied_url"] == "https://github.com/acme/steps/commit/" + "a" * 40
    assert row["health"] == "Failing" and row["last_run_age"] == "6 min ago"
    assert pages.row({**view, "health": "Degraded"}, NOW)["health"] == "Degraded"
    assert pages.age(None, NOW) == "" and pages.age(NOW - 3 * 86400, NOW) == "3 d ago"


@pytest.mark.parametrize(
    ("url", "link"),
    [
        ("https://github.com/a/b.git", "https://github.com/a/b/commit/abcd"),
        (
            "https://gitlab.example.com/g/sub/p.git",
            "https://gitlab.example.com/g/sub/p/-/commit/abcd",
        ),
        ("https://gitea.example.com:3000/a/b", "https://gitea.example.com:3000/a/b/commit/abcd"),
        ("https://git.example.com/a/b", None),
        ("https://github.com/only-owner", None),
        ("http://github.com/a/b", None),
    ],
)
def test_commit_links(url: str, link: str | None) -> None:
    assert commit_url(url, "abcd") == link
    assert commit_url(url, "<script>") is None


def test_badge_escapes_and_colours() -> None:
    svg = render_badge('a<b>"c', "Synced")
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "#2e7d32" in svg
    assert 'aria-label="a&lt;b&gt;&quot;c: Synced"' in svg
    degraded = render_badge("x", "Synced", "Degraded")
    assert "#c62828" in degraded and "Synced, Degraded" in degraded
    assert "Suspended" in render_badge("x", "OutOfSync", "Suspended")


def config_text(extra: str) -> str:
    return textwrap.dedent(
        """\
        workspaces:
          - id: w1
            name: prod
            source: {url: "https://git.example.com/acme/steps.git"}
        """
    ) + textwrap.dedent(extra)


def test_badge_is_off_by_default_and_console_keys(tmp_path: Path) -> None:
    path = tmp_path / "syncd.yaml"
    path.write_text(config_text(""))
    config = load_config(path, {})
    assert config.workspaces[0].badge is False
    assert config.console.session_key is None and config.console.session_lifetime == 8 * 3600
    path.write_text(
        config_text("console: {session_key_env: KEY, session_lifetime: 30m}\n").replace(
            "    source:", "    badge: true\n    source:"
        )
    )
    config = load_config(path, {"KEY": "k" * 40})
    assert config.workspaces[0].badge is True
    assert config.console.session_key is not None and config.console.session_lifetime == 1800


@pytest.mark.parametrize(
    ("extra", "env", "message"),
    [
        ("console: {session_key_env: KEY}\n", {"KEY": "short"}, "at least 32 characters"),
        ("console: {session_key_env: KEY}\n", {}, "KEY is not set"),
        ("console: {session_lifetime: 0s}\n", {}, "must be more than 0"),
        ("console: {colour: blue}\n", {}, "colour"),
    ],
)
def test_console_config_problems(
    tmp_path: Path, extra: str, env: dict[str, str], message: str
) -> None:
    path = tmp_path / "syncd.yaml"
    path.write_text(config_text(extra))
    with pytest.raises(ConfigError) as info:
        load_config(path, env)
    assert message in str(info.value)
    assert "short" not in str(info.value)


@dataclass
class _StreamWorld:
    """What the console's event stream reads of the app: the config and the flags."""

    config: Config
    closing: bool = False
    stopping: bool = False

    @property
    def workspaces(self) -> _StreamWorld:
        return self

    def overviews(self, chosen: list[object]) -> list[dict[str, object]]:
        return []


def test_a_stream_ends_when_its_token_loses_the_read_scope() -> None:
    """A reload that takes `read` from a token ends its pages at the next request; an open
    event stream of that token ends too, rather than showing statuses for five minutes."""
    token = TokenConfig("ci", Secret("t" * 20, "env SYNCD_TOKEN"), frozenset({"sync"}))
    world = _StreamWorld(replace(config(), tokens=(token,)))

    def signed_in() -> bool:  # as the console asks of the session, at every look
        return any(t.name == "ci" and t.allows("read") for t in world.config.tokens)

    async def read_all() -> list[str]:
        parts = cast(Parts, world)
        ticket = Streams(4, 10).open("session", returning=False)
        return [
            event
            async for event in _stream(parts, Feed(parts), ticket, signed_in, None, everything)
        ]

    assert asyncio.run(asyncio.wait_for(read_all(), 5)) == ["retry: 2000\nid: 1\n\n"]
