"""The listener's keys of `server`: `tls` (a certificate, its key, and a CA for client
certificates), `trusted_proxies` (who may say X-Forwarded-For/-Proto) and `public_url`.

Not pure: `tls` is checked by loading the certificate and key into an SSLContext, as the
daemon will, so a key that does not match its certificate, or a file that cannot be read, is a
config error naming the file (for `check-config` too), never a failed start or reload.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from syncd.config.checks import At, Checker, describe
from syncd.config.types import TlsConfig

TLS_KEYS = ("cert_file", "key_file", "client_ca_file")
MAX_PROXIES = 256
# As the schema's pattern: https in any case, then no space or control character.
_HTTPS_URL = re.compile(r"[Hh][Tt][Tt][Pp][Ss]://[^\x00-\x20\x7f]+")


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """The server's TLS context: TLS 1.2 at least, and client certificates required when a
    client CA is given. ValueError names the file at fault. `reload_tls` loads the files
    again into the same context (new connections get the new certificate)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    reload_tls(context, tls)
    if tls.client_ca_file is not None:
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def reload_tls(context: ssl.SSLContext, tls: TlsConfig) -> None:
    """Load the certificate chain (and the client CA) into `context`; ValueError says why."""
    for name, path in (("cert_file", tls.cert_file), ("key_file", tls.key_file)):
        try:
            with open(path, "rb"):
                pass
        except OSError as e:
            raise ValueError(f"{name}: cannot read {path}: {e.strerror or e}") from None
    try:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except ssl.SSLError as e:
        reason = str(e.reason or e).lower().replace("_", " ")
        if "mismatch" in reason or "values" in reason:
            raise ValueError(
                f"key_file {tls.key_file} does not match the certificate in {tls.cert_file}"
            ) from None
        raise ValueError(
            f"cannot load the certificate {tls.cert_file} with the key {tls.key_file}: "
            f"{reason} (both PEM; the key unencrypted)"
        ) from None
    if tls.client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(tls.client_ca_file))
        except (OSError, ssl.SSLError) as e:
            what = getattr(e, "strerror", None) or getattr(e, "reason", None) or e
            raise ValueError(f"client_ca_file: cannot load {tls.client_ca_file}: {what}") from None


def listener_keys(
    checker: Checker, at: At, section: dict[str, Any], base_dir: Path, intake_workers: int
) -> dict[str, Any]:
    """ServerConfig's tls, trusted_proxies and public_url, from the `server` section at `at`."""
    tls = tls_section(checker, at.key("tls"), section.get("tls"), base_dir)
    if tls is not None and intake_workers:
        checker.error(
            at.key("tls"),
            "cannot be combined with server.intake_workers (the intake processes serve plain "
            "http): put a TLS proxy in front of them, or set intake_workers: 0",
        )
    proxies = trusted_proxies(checker, at.key("trusted_proxies"), section.get("trusted_proxies"))
    url = public_url(checker, at.key("public_url"), section.get("public_url"))
    return {"tls": tls, "trusted_proxies": proxies, "public_url": url}


def tls_section(checker: Checker, at: At, value: Any, base_dir: Path) -> TlsConfig | None:
    """`server.tls`: cert_file and key_file (PEM), client_ca_file optional."""
    if value is None:
        return None
    section = checker.mapping(at, value, TLS_KEYS, required=("cert_file", "key_file"))
    if section is None:
        return None
    cert = checker.path(at.key("cert_file"), section.get("cert_file"), base_dir)
    key = checker.path(at.key("key_file"), section.get("key_file"), base_dir)
    client_ca = None
    if section.get("client_ca_file") is not None:
        client_ca = checker.path(at.key("client_ca_file"), section["client_ca_file"], base_dir)
    if cert is None or key is None:
        return None
    tls = TlsConfig(cert, key, client_ca)
    try:
        tls_context(tls)
    except ValueError as e:
        checker.error(at, str(e))
        return None
    return tls


def trusted_proxies(checker: Checker, at: At, value: Any) -> tuple[str, ...] | None:
    """`server.trusted_proxies`: addresses or CIDRs; None (not given) keeps uvicorn's default,
    this host only (127.0.0.1)."""
    if value is None:
        return None
    items = checker.items(at, value)
    if len(items) > MAX_PROXIES:
        checker.error(at, f"at most {MAX_PROXIES} entries, got {len(items)}")
        return ()
    networks: list[str] = []
    for i, item in enumerate(items):
        text = checker.string(at.item(i), item)
        if not text:
            continue
        try:
            networks.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError:
            checker.error(
                at.item(i), f"expected an IP address or a CIDR (10.0.0.0/8), got {describe(text)}"
            )
    return tuple(networks)


def public_url(checker: Checker, at: At, value: Any) -> str | None:
    """`server.public_url`: the https URL people reach syncd at (links point there)."""
    if value is None:
        return None
    url = checker.string(at, value)
    if not url:
        return None
    try:
        parts = urlsplit(url) if _HTTPS_URL.fullmatch(url) else None
        host = parts.hostname if parts else None
        userinfo = parts is not None and "@" in parts.netloc
        parts is not None and parts.port  # noqa: B018 - ValueError for a bad port
    except ValueError:
        host, userinfo = None, False
    if not host or userinfo:
        checker.error(at, f"expected an https:// URL with a host, got {describe(url)}")
        return None
    return url.rstrip("/")
