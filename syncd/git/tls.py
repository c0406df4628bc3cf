"""Trust for git over https: the CA bundle libgit2 verifies against, and its timeouts.

libgit2 keeps its trust store and network timeouts in process-wide options. `Trust` (one per
GitSource) owns what is the source's own: the CA files its remotes name and the bundle file it
writes under its state directory. `configure_libgit2` is the only code that sets the
process-wide options, and it is idempotent.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import ssl
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pygit2

from syncd.core.errors import GitError
from syncd.ops.logs import fields

log = logging.getLogger(__name__)


class Trust:
    """The system bundle plus every ca_file this source's remotes have named, as one bundle.

    A CA, once named, stays trusted for the life of the source: libgit2 has one trust store for
    every connection, so an operation on one remote trusts the CAs of the others as well."""

    def __init__(self, state_dir: Path, timeout: float) -> None:
        self._bundle = Path(state_dir) / "ca-bundle.pem"
        self._timeout_ms = max(1, int(timeout * 1000))
        self._lock = threading.Lock()
        self._extra: dict[str, bytes] = {}  # sha256 of a ca_file's content -> content
        self._written: tuple[str, ...] | None = None  # the CAs in the bundle on disk

    @property
    def timeout(self) -> float:
        """The network timeout in seconds, as libgit2 applies it (whole milliseconds)."""
        return self._timeout_ms / 1000

    def prepare(self, ca_file: Path | None) -> Path:
        """Before one network attempt: add `ca_file` to the trust, point libgit2 at the bundle
        and set its timeouts. Returns the bundle, to diagnose a rejected certificate."""
        pem = read_ca_file(ca_file) if ca_file is not None else None
        with self._lock:
            if pem is not None:
                self._extra.setdefault(hashlib.sha256(pem).hexdigest(), pem)
            wanted = tuple(self._extra)
            rewritten = wanted != self._written or not self._bundle.exists()
            if rewritten:
                self._write_bundle()
                self._written = wanted
            configure_libgit2(self._bundle, self._timeout_ms, reload=rewritten)
        return self._bundle

    def _write_bundle(self) -> None:
        parts = []
        if (default := default_cafile()) is not None:
            parts.append(default.read_bytes())
        parts.extend(self._extra.values())
        self._bundle.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._bundle.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(b"\n".join(p.rstrip(b"\n") + b"\n" for p in parts))
        os.replace(tmp, self._bundle)
        log.info(
            "ca bundle written", extra=fields(path=str(self._bundle), extra_cas=len(self._extra))
        )


# libgit2 keeps every pack file it has read open, process-wide, without limit by default: a
# long-lived daemon whose mirrors gain a pack per fetch (and are repacked now and then) would
# hold descriptors for packs long deleted. Past this many, it closes the least recently used.
MAX_OPEN_PACKS = 8


def configure_libgit2(cert_file: Path, timeout_ms: int, reload: bool = False) -> None:
    """Set libgit2's process-wide options: trust `cert_file`, time out after `timeout_ms`.

    Idempotent: pygit2 remembers the cert file last set and libgit2 its timeouts, so a call that
    changes nothing does not re-read the bundle (tens of milliseconds); `reload` re-reads a
    bundle rewritten in place. The options are global to the process: with several sources in
    one process the last call wins, which is why every network attempt makes this call first.
    """
    settings = pygit2.settings
    if reload or settings.ssl_cert_file != str(cert_file):
        settings.set_ssl_cert_locations(str(cert_file), None)
    if settings.server_connect_timeout != timeout_ms:
        settings.server_connect_timeout = timeout_ms
    if settings.server_timeout != timeout_ms:
        settings.server_timeout = timeout_ms
    if settings.mwindow_file_limit != MAX_OPEN_PACKS:
        settings.mwindow_file_limit = MAX_OPEN_PACKS


def default_cafile() -> Path | None:
    env = os.environ.get("SSL_CERT_FILE")
    paths = ssl.get_default_verify_paths()
    for candidate in (env, paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def read_ca_file(ca_file: Path) -> bytes:
    try:
        pem = Path(ca_file).read_bytes()
        # A bare context: the check is only that the file parses as certificates; loading
        # the system store as well would cost tens of milliseconds on every operation.
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=pem.decode("ascii"))
    except (OSError, ValueError, ssl.SSLError) as e:
        raise GitError(f"ca_file {str(ca_file)!r} is not a readable PEM bundle: {e}") from e
    return pem


def diagnose_tls(url: str, bundle: Path, timeout: float) -> str:
    """libgit2 says only "rejected": ask Python's ssl, with the same trust, why."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    try:
        ctx = ssl.create_default_context(cafile=str(bundle))
        with (
            socket.create_connection((host, port), timeout=timeout) as sock,
            ctx.wrap_socket(sock, server_hostname=host),
        ):
            return f"the certificate of {host} was not accepted"
    except ssl.SSLCertVerificationError as e:
        return f"{host}: {e.verify_message}"
    except (OSError, ssl.SSLError) as e:
        return f"{host}: {e}"
