"""The CLI's HTTP client: a token never crosses a network in clear, nor follows a redirect."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from syncd.apiclient import ApiClient, ApiFailed, BadServer, server_url


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
