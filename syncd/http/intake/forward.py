"""Pass one HTTP request on to the daemon over its local socket, and its answer back.

An intake process (`syncd.http.intake.front`) answers most webhooks itself; every other
request that reaches it (the API, the console, a push that matched a workspace) is the daemon's.
It goes on unchanged over a Unix socket only the daemon's user can open, framed by h11
(uvicorn's own HTTP/1.1 parser), one connection a request. Bodies stream both ways, so a
console's event stream flows as it is written, and a client that goes away ends the request
upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import h11
from starlette.types import ASGIApp, Receive, Scope, Send

from syncd.http.connections import Tally
from syncd.http.errors import RETRY_AFTER_SECONDS

READ_CHUNK = 65536
# Headers about one connection, not the request: each hop sets its own.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
SCHEME_HEADER = b"x-forwarded-proto"
# The client's address as the intake process saw it (after uvicorn's proxy rules): the daemon
# counts failed tokens per address (syncd.throttle). Whatever a client sends under this name
# is dropped at the front.
CLIENT_HEADER = b"x-syncd-client"
# The front server writes its own: the daemon's would make two.
FRONT_SETS = frozenset({b"date", b"server"})
# The daemon's socket refuses only while it stops (or if it has died): try again shortly.
UNAVAILABLE = b'{"error":"syncd is stopping","detail":null}'
RETRY_AFTER = RETRY_AFTER_SECONDS.encode()


async def forward(scope: Scope, receive: Receive, send: Send, socket_path: str) -> None:
    """The daemon's answer to this request, streamed; 503 (with Retry-After) when the daemon
    cannot be reached before anything was answered."""
    try:
        reader, writer = await asyncio.open_unix_connection(socket_path)
    except OSError:
        # While the daemon stops, every request would say so: one line per window instead.
        _tally("unreachable", "requests answered 503: the daemon's socket is not accepting").add()
        await _unavailable(send)
        return
    answer = _Answer(send)
    try:
        conn = h11.Connection(h11.CLIENT)
        if not await _send_request(conn, writer, scope, receive):
            return  # the client went away while sending its body
        # The body is read: from now on `receive` says only that the client went away, and
        # an event stream that never ends on its own ends then.
        relay = asyncio.ensure_future(answer.relay(conn, reader))
        gone = asyncio.ensure_future(receive())
        try:
            await asyncio.wait({relay, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (relay, gone):
                task.cancel()
        if relay.done() and not relay.cancelled():
            relay.result()
    except (OSError, h11.ProtocolError, ConnectionError):
        _tally("failed", "requests to the daemon that failed before its answer ended").add()
        if not answer.started:
            await _unavailable(send)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


_TALLIES: dict[str, Tally] = {}


def _tally(key: str, what: str) -> Tally:
    tally = _TALLIES.get(key)
    if tally is None:
        tally = _TALLIES[key] = Tally(what)
    return tally


class _Answer:
    """The daemon's answer, relayed event by event."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def relay(self, conn: h11.Connection, reader: asyncio.StreamReader) -> None:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(READ_CHUNK))
            elif isinstance(event, h11.Response):
                dropped = HOP_BY_HOP | FRONT_SETS | _named(event.headers)
                headers = [(k, v) for k, v in event.headers if k not in dropped]
                self.started = True
                status = event.status_code
                await self.send(
                    {"type": "http.response.start", "status": status, "headers": headers}
                )
            elif isinstance(event, h11.Data):
                body = bytes(event.data)
                await self.send({"type": "http.response.body", "body": body, "more_body": True})
            elif isinstance(event, h11.EndOfMessage):
                await self.send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the daemon closed the connection before it answered")


async def _send_request(
    conn: h11.Connection, writer: asyncio.StreamWriter, scope: Scope, receive: Receive
) -> bool:
    """Send the request line, headers and body; False when the client went away meanwhile."""
    sent: list[tuple[bytes, bytes]] = scope["headers"]
    named = _named(sent)
    headers = [
        (k, v)
        for k, v in sent
        if k not in HOP_BY_HOP and k not in named and k not in (SCHEME_HEADER, CLIENT_HEADER)
    ]
    # The scheme as this process worked it out (uvicorn trusts X-Forwarded-Proto from a proxy
    # on this host only): the daemon takes it from requests on its Unix socket (HandedOn).
    headers.append((SCHEME_HEADER, scope.get("scheme", "http").encode("latin-1")))
    client = scope.get("client")
    if client and client[0]:
        headers.append((CLIENT_HEADER, str(client[0]).encode("latin-1")))
    if any(k == b"transfer-encoding" for k, _ in sent):
        # uvicorn has taken the chunks apart; they are framed again for the daemon.
        headers.append((b"transfer-encoding", b"chunked"))
    if not any(k == b"host" for k, _ in sent):
        # An HTTP/1.0 request may come without one; HTTP/1.1, which goes on, must have it.
        headers.append((b"host", b"localhost"))
    target = scope.get("raw_path") or scope["path"].encode("utf-8")
    if scope.get("query_string"):
        target += b"?" + scope["query_string"]
    writer.write(conn.send(h11.Request(method=scope["method"], target=target, headers=headers)))
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return False
        body = message.get("body", b"")
        if body:
            writer.write(conn.send(h11.Data(data=body)))
        more = message.get("more_body", False)
        await writer.drain()
    writer.write(conn.send(h11.EndOfMessage()))
    await writer.drain()
    return True


async def _unavailable(send: Send) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(UNAVAILABLE)),
        (b"retry-after", RETRY_AFTER),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": UNAVAILABLE})


def _named(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """Headers the Connection header names: like it, about this hop only (RFC 9110 7.6.1)."""
    names = [v for k, v in headers if k == b"connection"]
    if not names:
        return frozenset()
    return frozenset(n.strip().lower() for v in names for n in v.split(b",") if n.strip())


class HandedOn:
    """The daemon's side: a request handed on by an intake process comes over the daemon's
    Unix socket (no client address), with the scheme and the client's address the intake
    process saw; so the console's cookies are Secure behind a TLS proxy however the request
    arrived, and wrong tokens are counted per client, not all as one. Requests over TCP are
    left to uvicorn's own rules."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("client") is None:
            for name, value in scope["headers"]:
                if name == SCHEME_HEADER and value in (b"http", b"https"):
                    scope["scheme"] = value.decode("latin-1")
                elif name == CLIENT_HEADER and 0 < len(value) <= 64:
                    scope["client"] = (value.decode("latin-1"), 0)
        await self.app(scope, receive, send)
