"""`syncd.forward` between real servers: an httpx client talks to a front uvicorn on loopback
whose app is `forward(...)`, which passes each request over a Unix socket to an upstream
Starlette app served by a second uvicorn (the daemon's stand-in). Checked: method, raw path,
query, status, headers and bodies pass unchanged both ways (Content-Length and chunked request
bodies, streamed responses that flow as written); hop-by-hop headers stop at the front; a
client that goes away ends the upstream's endless stream; an unreachable socket, or an upstream
that hangs up without answering, gives 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict, Unpack

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from syncd.http.intake.forward import HandedOn, forward

WAIT = 5.0  # seconds: the bound on every wait in this module
STREAM_CHUNKS = [b"chunk %d\n" % i for i in range(5)]
EVENTS_MAX = 400  # an "endless" event stream still ends on its own, after 400 * 0.05 s
UNAVAILABLE = b'{"error":"syncd is stopping","detail":null}'
HOP_BY_HOP = ("connection", "keep-alive", "te", "upgrade")


@dataclass
class Seen:
    """What the upstream app saw; written in the upstream's thread, read in the test's."""

    requests: list[Scope] = field(default_factory=list)
    first_chunk_read: threading.Event = field(default_factory=threading.Event)
    stream_finished: threading.Event = field(default_factory=threading.Event)
    events_ended: threading.Event = field(default_factory=threading.Event)
    events_outcome: list[tuple[str, int]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        """The last request's header `name` (lower case), if it had one."""
        values = [v for k, v in self.requests[-1]["headers"] if k == name.encode()]
        return values[-1].decode("latin-1") if values else None


def upstream_app(seen: Seen) -> Starlette:
    """The daemon's stand-in: a few routes that show what arrived and answer in each way."""

    async def path(request: Request) -> Response:
        seen.requests.append(request.scope)
        return Response(b"hello from upstream", 201, {"x-upstream": "yes"}, "text/plain")

    async def echo(request: Request) -> Response:
        seen.requests.append(request.scope)
        return Response(await request.body(), media_type="application/octet-stream")

    async def headers(request: Request) -> Response:
        seen.requests.append(request.scope)
        return Response(b"ok", media_type="text/plain")

    async def stream(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            yield STREAM_CHUNKS[0]
            # Hold the rest until the client has read the first chunk (bounded): a forward that
            # buffered the answer would deliver nothing before `stream_finished` is set.
            deadline = time.monotonic() + WAIT
            while not seen.first_chunk_read.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            for chunk in STREAM_CHUNKS[1:]:
                await asyncio.sleep(0.1)
                yield chunk
            seen.stream_finished.set()

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    async def events(request: Request) -> Response:
        async def endless() -> AsyncIterator[bytes]:
            sent, outcome = 0, "completed"
            try:
                while sent < EVENTS_MAX:
                    yield b"data: %d\n\n" % sent
                    sent += 1
                    await asyncio.sleep(0.05)
            except (asyncio.CancelledError, GeneratorExit):
                outcome = "cancelled"
                raise
            finally:
                seen.events_outcome.append((outcome, sent))
                seen.events_ended.set()

        return StreamingResponse(endless(), media_type="text/event-stream")

    async def scheme(request: Request) -> Response:
        seen.requests.append(request.scope)
        return Response(request.url.scheme.encode(), media_type="text/plain")

    async def status(request: Request) -> Response:
        code = request.path_params["code"]
        body = b'{"error":"answered %d upstream","detail":{"code":%d}}' % (code, code)
        return Response(body, code, media_type="application/json")

    app = Starlette(
        routes=[
            Route("/scheme", scheme),
            Route("/a/{rest:path}", path),
            Route("/echo", echo, methods=["POST"]),
            Route("/headers", headers),
            Route("/stream", stream),
            Route("/events", events),
            Route("/status/{code:int}", status),
        ]
    )
    app.add_middleware(HandedOn)  # as the daemon does with intake processes
    return app


def front_app(socket_path: str) -> ASGIApp:
    """The intake side: every request goes on to `socket_path`."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await forward(scope, receive, send, socket_path)

    return app


class Where(TypedDict, total=False):
    """Where uvicorn listens: a unix socket, or a host and port."""

    uds: str
    host: str
    port: int


@contextlib.contextmanager
def serving(app: ASGIApp, **where: Unpack[Where]) -> Iterator[uvicorn.Server]:
    """uvicorn serving `app` in a thread (at `uds=` or `host=`/`port=`) until the block ends."""
    config = uvicorn.Config(
        app, log_config=None, lifespan="off", timeout_graceful_shutdown=2, **where
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test-forward", daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(WAIT + 2)
        assert not thread.is_alive(), "uvicorn did not stop"


def wait_accepting(socket_path: Path) -> None:
    """Bounded wait until the Unix socket exists and takes a connection."""
    deadline = time.monotonic() + WAIT
    while True:
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(socket_path))
                return
            except OSError:
                assert time.monotonic() < deadline, f"nothing accepts on {socket_path}"
        time.sleep(0.01)


@contextlib.contextmanager
def front(socket_path: Path) -> Iterator[str]:
    """A front uvicorn on a free loopback port forwarding to `socket_path`: its base URL."""
    with serving(front_app(str(socket_path)), host="127.0.0.1", port=0) as server:
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"


@dataclass
class Upstream:
    seen: Seen
    socket_path: Path


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Upstream]:
    seen = Seen()
    socket_path = tmp_path / "daemon.sock"
    with serving(upstream_app(seen), uds=str(socket_path)):
        wait_accepting(socket_path)
        yield Upstream(seen, socket_path)


@pytest.fixture
def front_url(upstream: Upstream) -> Iterator[str]:
    with front(upstream.socket_path) as url:
        yield url


@pytest.fixture
def client(front_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=front_url, timeout=WAIT) as client:
        yield client


def test_method_raw_path_and_query_reach_upstream_and_its_answer_comes_back(
    upstream: Upstream, client: httpx.Client
) -> None:
    answer = client.get("/a/b%20c?x=1&y=2")
    (request,) = upstream.seen.requests
    assert request["method"] == "GET"
    assert request["raw_path"] == b"/a/b%20c"
    assert request["query_string"] == b"x=1&y=2"
    assert answer.status_code == 201
    assert answer.headers["x-upstream"] == "yes"
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.content == b"hello from upstream"


def test_a_content_length_body_is_echoed_byte_for_byte(
    upstream: Upstream, client: httpx.Client
) -> None:
    body = random.Random(1).randbytes(200 * 1024)
    answer = client.post("/echo", content=body)
    assert upstream.seen.header("content-length") == str(len(body))
    assert answer.status_code == 200
    assert answer.content == body


def test_a_chunked_request_body_arrives_whole(upstream: Upstream, client: httpx.Client) -> None:
    """No Content-Length from the client: the body goes on chunked, and none of it is lost."""
    parts = [b"first part;", b"second part;", random.Random(2).randbytes(100_000), b";end"]
    answer = client.post("/echo", content=iter(parts))
    assert upstream.seen.requests[-1]["method"] == "POST"
    assert upstream.seen.header("content-length") is None
    assert upstream.seen.header("transfer-encoding") == "chunked"
    assert answer.content == b"".join(parts)


def test_a_streamed_answer_flows_as_written_and_arrives_whole(
    upstream: Upstream, client: httpx.Client
) -> None:
    with client.stream("GET", "/stream") as answer:
        assert answer.status_code == 200
        raw = answer.iter_raw()
        first = next(raw)
        # The first chunk is here while the upstream still holds the rest back.
        assert not upstream.seen.stream_finished.is_set()
        upstream.seen.first_chunk_read.set()
        rest = b"".join(raw)
    assert upstream.seen.stream_finished.wait(WAIT)
    assert first == STREAM_CHUNKS[0]
    assert first + rest == b"".join(STREAM_CHUNKS)


def test_a_client_that_goes_away_ends_the_upstream_stream(
    upstream: Upstream, front_url: str
) -> None:
    with (
        httpx.Client(base_url=front_url, timeout=WAIT) as client,
        client.stream("GET", "/events") as answer,
    ):
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        assert next(answer.iter_raw()).startswith(b"data: 0\n\n")
    # The client has closed its connection mid-stream: the upstream's generator must end.
    assert upstream.seen.events_ended.wait(WAIT), "the upstream stream went on"
    ((outcome, sent),) = upstream.seen.events_outcome
    assert outcome == "cancelled"
    assert sent < EVENTS_MAX


def test_hop_by_hop_headers_stop_at_the_front(upstream: Upstream, client: httpx.Client) -> None:
    headers = {
        "connection": "keep-alive",
        "keep-alive": "timeout=5",
        "te": "trailers",
        "upgrade": "h2c",
        "x-request-id": "req-42",
    }
    assert client.get("/headers", headers=headers).status_code == 200
    for name in HOP_BY_HOP:
        assert upstream.seen.header(name) is None, name
    assert upstream.seen.header("x-request-id") == "req-42"


def test_headers_the_connection_header_names_stop_at_the_front(
    upstream: Upstream, client: httpx.Client
) -> None:
    headers = {"connection": "keep-alive, x-hop", "x-hop": "this hop only", "x-end": "kept"}
    assert client.get("/headers", headers=headers).status_code == 200
    assert upstream.seen.header("x-hop") is None
    assert upstream.seen.header("x-end") == "kept"


def test_a_body_less_request_goes_on_without_a_body(
    upstream: Upstream, client: httpx.Client
) -> None:
    assert client.get("/headers").status_code == 200
    assert upstream.seen.header("transfer-encoding") is None
    assert upstream.seen.header("content-length") in (None, "0")


def test_the_answer_has_one_date_header(client: httpx.Client) -> None:
    answer = client.get("/headers")
    assert [k for k, _ in answer.headers.multi_items() if k == "date"] == ["date"]


def test_an_http_1_0_request_without_host_is_answered(upstream: Upstream, front_url: str) -> None:
    """Load balancers' health checks send such requests; the daemon gets HTTP/1.1 with a Host."""
    port = int(front_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as conn:
        conn.sendall(b"GET /headers HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200") or answer.startswith(b"HTTP/1.0 200"), answer
    assert answer.endswith(b"ok")
    assert upstream.seen.header("host") is not None


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_no_upstream_socket_gives_503_with_retry_after(tmp_path: Path, method: str) -> None:
    with front(tmp_path / "missing.sock") as url, httpx.Client(timeout=WAIT) as client:
        answer = client.request(method, f"{url}/hooks/github", content=b'{"ref":"x"}')
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "5"
    assert answer.headers["content-type"] == "application/json"
    assert answer.content == UNAVAILABLE


def test_an_upstream_that_hangs_up_without_answering_gives_503(tmp_path: Path) -> None:
    """A real Unix socket server that reads the request and closes without a word."""
    socket_path = tmp_path / "mute.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(socket_path))
        listener.listen()
        listener.settimeout(WAIT)

        def hang_up() -> None:
            with contextlib.suppress(OSError):
                connection, _ = listener.accept()
                with connection:
                    connection.settimeout(WAIT)
                    connection.recv(65536)

        thread = threading.Thread(target=hang_up, name="mute-upstream", daemon=True)
        thread.start()
        with front(socket_path) as url, httpx.Client(timeout=WAIT) as client:
            answer = client.get(f"{url}/api/v1/status")
        thread.join(WAIT)
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "5"
    assert answer.content == UNAVAILABLE


@pytest.mark.parametrize("code", [404, 500])
def test_upstream_errors_pass_through_unchanged(client: httpx.Client, code: int) -> None:
    answer = client.get(f"/status/{code}")
    assert answer.status_code == code
    assert answer.headers["content-type"] == "application/json"
    assert answer.content == b'{"error":"answered %d upstream","detail":{"code":%d}}' % (code, code)


def test_the_scheme_the_front_saw_reaches_the_daemon(client: httpx.Client) -> None:
    """uvicorn trusts X-Forwarded-Proto from a proxy on this host; the daemon, behind its Unix
    socket, takes the scheme the front worked out (the console's Secure cookies need it)."""
    assert client.get("/scheme").text == "http"
    assert client.get("/scheme", headers={"x-forwarded-proto": "https"}).text == "https"
    assert client.get("/scheme", headers={"x-forwarded-proto": "gopher"}).text == "http"


def test_the_clients_address_goes_on_and_one_a_client_sends_does_not(
    upstream: Upstream, client: httpx.Client
) -> None:
    """The daemon counts wrong tokens per client address (syncd.throttle): it must see the
    client's, as the front saw it, and never one the client made up."""
    assert client.get("/headers", headers={"x-syncd-client": "203.0.113.66"}).status_code == 200
    assert upstream.seen.requests[-1]["client"][0] == "127.0.0.1"
    # A proxy on loopback names the client (uvicorn's rules, in the front): that one goes on.
    assert client.get("/headers", headers={"x-forwarded-for": "198.51.100.1"}).status_code == 200
    assert upstream.seen.requests[-1]["client"][0] == "198.51.100.1"
