"""Bounds on HTTP connections: the cap, the deadline for a request's head, the summaries."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from syncd.http.connections import MAX_HEAD_BYTES, ConnectionGuard, FloodFilter, protocol_class


async def _hello(request: object) -> PlainTextResponse:
    return PlainTextResponse("hello")


async def _serve(
    guard: ConnectionGuard, http: str, app: Starlette | None = None
) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    config = uvicorn.Config(
        app or Starlette(routes=[Route("/", _hello)]),
        host="127.0.0.1",
        port=0,
        http=protocol_class(guard, http),
        log_config=None,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    return server, task


def _port(server: uvicorn.Server) -> int:
    return int(server.servers[0].sockets[0].getsockname()[1])


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), seconds) == b""
    except TimeoutError:
        return False


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_an_unfinished_head_is_closed_and_a_finished_one_answered(http: str) -> None:
    if http == "httptools":
        pytest.importorskip("httptools")

    async def main() -> None:
        guard = ConnectionGuard(max_connections=16, header_timeout=0.3)
        server, task = await _serve(guard, http)
        port = _port(server)
        try:
            # a slow client: a header line, then nothing more
            _, slow = await asyncio.open_connection("127.0.0.1", port)
            slow.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
            reader, _ = await asyncio.open_connection("127.0.0.1", port)
            # a prompt one, kept alive past the deadline between two requests
            fast_r, fast_w = await asyncio.open_connection("127.0.0.1", port)
            fast_w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"hello" in await fast_r.read(1000)
            await asyncio.sleep(0.1)
            fast_w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"hello" in await fast_r.read(1000)
            assert await _closed_within(reader, 2.0)  # it sent nothing at all
            await asyncio.sleep(0.5)
            assert guard.slow.total >= 2
            fast_w.close()
            slow.close()
        finally:
            server.should_exit = True
            await task

    asyncio.run(main())


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_the_wait_for_a_head_starts_again_at_each_response(http: str) -> None:
    """The deadline counts from the last response, not from the connection's start: the one
    timer a connection has, firing early, waits for the rest; then an unfinished head is
    closed."""
    if http == "httptools":
        pytest.importorskip("httptools")

    async def main() -> None:
        guard = ConnectionGuard(max_connections=16, header_timeout=1.0)
        server, task = await _serve(guard, http)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", _port(server))
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"hello" in await reader.read(1000)
            await asyncio.sleep(0.7)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"hello" in await reader.read(1000)
            writer.write(b"GET / HTTP/1.1\r\n")  # then nothing more
            await asyncio.sleep(0.5)  # past the first second: the timer set at the start fired
            assert not await _closed_within(reader, 0.05)
            assert guard.slow.total == 0
            assert await _closed_within(reader, 3.0)
            assert guard.slow.total == 1
            writer.close()
        finally:
            server.should_exit = True
            await task

    asyncio.run(main())


async def _closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), 2.0) == b""
    except ConnectionResetError:
        return True


def test_at_the_cap_the_longest_waiting_for_a_head_makes_room() -> None:
    """Slow clients cannot shut out a new one: at the cap, the connection that has waited
    longest for its request head is closed and the new one served."""

    async def main() -> None:
        guard = ConnectionGuard(max_connections=3, header_timeout=30)
        server, task = await _serve(guard, "h11")
        port = _port(server)
        try:
            slow = []
            for _ in range(3):
                slow.append(await asyncio.open_connection("127.0.0.1", port))
                slow[-1][1].write(b"GET / HTTP/1.1\r\n")  # a head begun, never finished
                await asyncio.sleep(0.05)
            probe_r, probe_w = await asyncio.open_connection("127.0.0.1", port)
            probe_w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"hello" in await _read_until(probe_r, b"hello")
            assert await _closed(slow[0][0])  # the oldest made room
            assert guard.evicted.total == 1 and guard.refused.total == 0
            assert guard.open == 3
            for _, w in [*slow, (probe_r, probe_w)]:
                w.close()
            await asyncio.sleep(0.1)
            assert guard.open == 0 and not guard.waiting
        finally:
            server.should_exit = True
            await task

    asyncio.run(main())


def test_connections_past_the_cap_are_closed_at_once_when_all_are_busy() -> None:
    """Only when every connection has a request in flight is a new one refused."""
    release = asyncio.Event()

    async def slow(request: Request) -> PlainTextResponse:
        await release.wait()
        return PlainTextResponse("done")

    async def main() -> None:
        guard = ConnectionGuard(max_connections=2, header_timeout=30)
        app = Starlette(routes=[Route("/", _hello), Route("/slow", slow)])
        server, task = await _serve(guard, "h11", app)
        port = _port(server)
        try:
            held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
            for _, w in held:
                w.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.sleep(0.2)
            extra_r, _ = await asyncio.open_connection("127.0.0.1", port)
            assert await _closed(extra_r)
            assert guard.refused.total == 1 and guard.evicted.total == 0 and guard.open == 2
            release.set()
            for r, w in held:
                assert b"done" in await _read_until(r, b"done")
                w.close()
            await asyncio.sleep(0.1)
            assert guard.open == 0
        finally:
            server.should_exit = True
            await task

    asyncio.run(main())


def test_a_flood_of_one_message_is_summarised(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.flood")
    flood = FloodFilter("socket.accept() out of system resource", "accept errors", every=60)
    logger.addFilter(flood)
    try:
        with caplog.at_level(logging.ERROR, "test.flood"):
            for _ in range(1000):
                try:
                    raise OSError(24, "Too many open files")
                except OSError:
                    logger.exception("socket.accept() out of system resource\nsocket: <x>")
                logger.error("something else")
    finally:
        logger.removeFilter(flood)
    accepts = [r for r in caplog.records if r.getMessage().startswith("socket.accept()")]
    assert len(accepts) == 1 and accepts[0].exc_info is None
    assert "\n" not in accepts[0].getMessage()
    assert sum(r.getMessage() == "something else" for r in caplog.records) == 1000


async def _read_until(reader: asyncio.StreamReader, text: bytes) -> bytes:
    """What the server sends, up to `text` (an answer's head and body may come apart)."""
    seen = b""
    for _ in range(20):
        seen += await asyncio.wait_for(reader.read(1000), 5)
        if text in seen:
            break
    return seen


async def _echo_length(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"got {len(await request.body())}")


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_a_request_head_over_the_limit_is_refused_and_a_large_body_is_not(http: str) -> None:
    """A head past MAX_HEAD_BYTES (in one read or dripped in many) is answered 431 and closed;
    a small head followed by a large body in the same read, and the next request on the same
    connection, are served."""
    if http == "httptools":
        pytest.importorskip("httptools")

    async def main() -> None:
        guard = ConnectionGuard(max_connections=16, header_timeout=5.0)
        app = Starlette(routes=[Route("/", _hello), Route("/body", _echo_length, methods=["POST"])])
        server, task = await _serve(guard, http, app)
        port = _port(server)
        try:
            big = b"X-Big: " + b"a" * (MAX_HEAD_BYTES + 10) + b"\r\n"
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
            answer = await asyncio.wait_for(reader.read(), 5)
            assert answer.startswith(b"HTTP/1.1 431 ")
            writer.close()
            # dripped: many small header lines, each read apart (h11 refuses a head past 16 KiB
            # itself: httptools has no limit of its own)
            if http == "httptools":
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
                for i in range(MAX_HEAD_BYTES // 1000 + 2):
                    writer.write(b"X-%d: " % i + b"b" * 990 + b"\r\n")
                    await writer.drain()
                answer = await asyncio.wait_for(reader.read(), 5)
                assert answer.startswith(b"HTTP/1.1 431 ")
                writer.close()
            # a large body is no head: served, and the next head on the connection too
            body = b"z" * (4 * MAX_HEAD_BYTES)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
            )
            assert b"got %d" % len(body) in await _read_until(reader, b"got %d" % len(body))
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"hello" in await _read_until(reader, b"hello")
            writer.close()
            assert guard.large.total == (2 if http == "httptools" else 1)
        finally:
            server.should_exit = True
            await task

    asyncio.run(main())


@pytest.mark.parametrize("split", [1, 2, 3, 4])
def test_a_head_whose_end_spans_two_reads_is_seen_to_end(split: int) -> None:
    """The blank line that ends a head may arrive split over two reads: the request is served,
    and its connection no longer counts as waiting for a head (it is not the one evicted)."""

    async def main() -> None:
        guard = ConnectionGuard(max_connections=16, header_timeout=5.0)
        server, task = await _serve(guard, "h11")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", _port(server))
            head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
            writer.write(head[:-split])
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.write(head[-split:])
            assert b"hello" in await _read_until(reader, b"hello")
            writer.close()
            assert guard.large.total == 0
        finally:
            server.should_exit = True
            await task

    asyncio.run(main())
