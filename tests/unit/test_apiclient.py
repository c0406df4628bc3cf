"""The CLI's HTTP client: a token never crosses a network in clear, nor follows a redirect, nor
appears in a message; a hostile server gets one clear error out of it, within the deadline."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from syncd.cli.apiclient import (
    MAX_DEPTH,
    ApiClient,
    ApiFailed,
    BadServer,
    ClientError,
    TimedOut,
    TokenRefused,
    Unreachable,
    read_token,
    server_url,
    token_from,
    too_deep,
)
from tests.support.hostile import HUGE_CAP, hostile_server


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://localhost:8080/", "http://[::1]:8080", "https://x.io"]
)
def test_plain_http_only_to_this_host(url: str) -> None:
    assert server_url(url) == url.rstrip("/")


@pytest.mark.parametrize("url", ["http://syncd.example.com", "http://10.0.0.5:8080", "ftp://x"])
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(BadServer):
        server_url(url)


@pytest.fixture
def redirecting() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(f"{self.path} {self.headers.get('Authorization')}")
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_redirect_is_not_followed(redirecting: tuple[str, list[str]]) -> None:
    base, seen = redirecting
    with pytest.raises(ApiFailed):
        ApiClient(base, token="t0ken").get("/api/v1/workspaces")
    assert seen == ["/api/v1/workspaces Bearer t0ken"]  # asked once; /elsewhere never


# -- the token: refused by where it came from, never quoted ---------------------------------------

TOKEN = "Q7zX9wK2vR5mH3pL"


def _quotes_token(text: str, token: str = TOKEN) -> bool:
    """Whether `text` holds the token or any 4 characters of it in a row."""
    return any(token[i : i + 4] in text for i in range(len(token) - 3))


@pytest.mark.parametrize("text", [TOKEN, TOKEN + "\n", TOKEN + "\r\n"])
def test_one_line_end_is_dropped(text: str) -> None:
    assert read_token(text, "$SYNCD_TOKEN") == TOKEN


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (TOKEN + "\r", "contains a carriage return"),
        (TOKEN + "\r\n\r", "has more than one line and contains a carriage return"),
        (TOKEN + "\nsecond\n", "has more than one line"),
        (TOKEN + "\n\n", "has more than one line"),
        (" " + TOKEN, "contains a space or a tab"),
        (TOKEN + "\t", "contains a space or a tab"),
        ("\ufeff" + TOKEN, "starts with a byte order mark"),
        (TOKEN + "\x00", "contains a control character"),
        (TOKEN + "\x1b[2J", "contains a control character"),
        (TOKEN + "é", "not ASCII"),
        (TOKEN + "\u2028", "not ASCII"),
        ("\n", "is empty"),
    ],
)
def test_a_token_that_cannot_go_into_a_header_is_refused_unquoted(text: str, words: str) -> None:
    with pytest.raises(TokenRefused) as e:
        read_token(text, "--token-file /x/token")
    said = str(e.value)
    assert said.startswith("--token-file /x/token") and words in said, said
    assert not _quotes_token(said) and "\n" not in said and "\r" not in said


def test_token_from_a_file_is_read_as_bytes(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_bytes(TOKEN.encode() + b"\r\n")
    assert token_from(path, {}) == TOKEN
    path.write_bytes(TOKEN.encode() + b"\r")  # text mode would have made it a line end
    with pytest.raises(TokenRefused, match="carriage return") as e:
        token_from(path, {})
    assert str(path) in str(e.value) and not _quotes_token(str(e.value))
    path.write_bytes(TOKEN.encode() + b"\xff\n")
    with pytest.raises(TokenRefused, match="is not UTF-8") as e:
        token_from(path, {})
    assert "0xff" not in str(e.value) and not _quotes_token(str(e.value))
    path.write_bytes(TOKEN.encode() * 1000)
    with pytest.raises(TokenRefused, match="larger than a token"):
        token_from(path, {})
    with pytest.raises(TokenRefused, match="cannot be read"):
        token_from(tmp_path / "missing", {})


def test_token_from_the_environment_names_the_variable() -> None:
    assert token_from(None, {}) is None
    assert token_from(None, {"SYNCD_TOKEN": "", "ALOMA_KEY": TOKEN}) == TOKEN
    assert token_from(None, {"SYNCD_TOKEN": TOKEN, "ALOMA_KEY": "other"}) == TOKEN
    with pytest.raises(TokenRefused, match=r"^\$ALOMA_KEY: the token contains a carriage") as e:
        token_from(None, {"ALOMA_KEY": TOKEN + "\r"})
    assert not _quotes_token(str(e.value))


def test_the_client_refuses_a_token_it_could_not_send() -> None:
    with pytest.raises(TokenRefused) as e:
        ApiClient("http://127.0.0.1:9", token=TOKEN + "\r\n")
    assert not _quotes_token(str(e.value))


# -- a hostile server: one ClientError each, never the token, within the deadline -----------------


def _client(url: str, **kw: Any) -> ApiClient:
    return ApiClient(url, token=TOKEN, deadline=1.0, max_answer=1024 * 1024, **kw)


@pytest.mark.parametrize(
    ("mode", "kind", "words"),
    [
        ("huge", BadServer, "larger than 1 MiB"),
        ("huge-declared", BadServer, "larger than 1 MiB"),
        ("drip-head", TimedOut, "no whole answer within the deadline of 1 s"),
        ("drip-body", TimedOut, "no whole answer within the deadline of 1 s"),
        ("deep", BadServer, "nested too deeply"),
        ("deep-object", BadServer, "nested too deeply"),
        ("html", BadServer, "is not JSON"),
        ("truncated", Unreachable, "broke off after 16 bytes"),
        ("not-http", BadServer, "not an HTTP answer"),
        ("echo", ApiFailed, "HTTP 500: refused: Authorization: Bearer [the token]"),
    ],
)
def test_a_hostile_answer_is_one_client_error(
    mode: str, kind: type[ClientError], words: str
) -> None:
    with hostile_server(mode) as server:
        client = _client(server.url)
        client.check_version()
        started = time.monotonic()
        with pytest.raises(kind) as e:
            client.get("/api/v1/workspaces")
        assert time.monotonic() - started < 20  # the deadline held (generously)
        said = str(e.value)
        assert words in said and "\n" not in said, said
        assert TOKEN not in said and server.authorizations[-1] == f"Bearer {TOKEN}"
        if isinstance(e.value, ApiFailed):
            assert TOKEN not in json.dumps(e.value.body)


def test_a_huge_answer_is_not_read_whole() -> None:
    with hostile_server("huge") as server:
        with pytest.raises(BadServer):
            _client(server.url).get("/api/v1/workspaces")
        for _ in range(100):  # the server's handler ends once the client has hung up
            if server.sent:
                break
            time.sleep(0.05)
        assert server.sent and server.sent[0] < HUGE_CAP


def test_the_deadline_holds_for_the_command_and_restarts_by_round() -> None:
    now = [0.0]
    with hostile_server("html") as server:
        client = _client(server.url, clock=lambda: now[0])
        client.check_version()  # the deadline starts: 1 s from now
        now[0] = 5.0
        with pytest.raises(TimedOut):
            client.check_version()
        assert server.seen == ["GET /openapi.json"]  # refused without asking again
        client.post("/openapi.json", holds=10.0)  # a request the server holds: time added
        client.restart_deadline()
        now[0] = 100.0
        client.check_version()
        assert len(server.seen) == 3


def test_too_deep_counts_levels_without_recursion() -> None:
    def nested(depth: int) -> object:
        doc: object = {}
        for i in range(depth - 1):
            doc = [doc] if i % 2 else {"x": doc}
        return doc

    assert not too_deep(nested(MAX_DEPTH), MAX_DEPTH)
    assert too_deep(nested(MAX_DEPTH + 1), MAX_DEPTH)
    assert too_deep(nested(200_000), MAX_DEPTH)


def test_clean_makes_one_short_line_without_the_token() -> None:
    client = ApiClient("http://127.0.0.1:9", token=TOKEN)
    said = client.clean(f"a\r\nb\x1b[2J {TOKEN} " + "z" * 1000)
    assert said.startswith("a\\r\\nb\\x1b[2J [the token] z") and said.endswith("…")
    assert len(said) <= 301 and said.isprintable()


@pytest.mark.parametrize("mode", ["drip-head", "drip-body"])
def test_past_the_deadline_the_connection_is_cut(mode: str) -> None:
    """The exchange's thread does not keep reading the drip: its socket is shut down."""
    with hostile_server(mode) as server:
        with pytest.raises(TimedOut):
            _client(server.url).get("/api/v1/workspaces")
        for _ in range(100):
            if not any(t.name == "syncd-api" for t in threading.enumerate()):
                break
            time.sleep(0.05)
        assert not any(t.name == "syncd-api" for t in threading.enumerate())
