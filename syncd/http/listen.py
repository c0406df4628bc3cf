"""The daemon's listener under uvicorn: TLS (`server.tls`, its certificate loaded again on
reload) and the proxies whose X-Forwarded-For/-Proto are believed (`server.trusted_proxies`)."""

from __future__ import annotations

import logging
import ssl
from typing import Any

import uvicorn

from syncd.config import Config
from syncd.config.listener import reload_tls, tls_context
from syncd.core.errors import ConfigError
from syncd.ops.logs import fields

log = logging.getLogger("syncd.serve")


def listener_options(config: Config) -> tuple[dict[str, Any], ssl.SSLContext | None]:
    """uvicorn's keyword arguments for the listener, and the TLS context to serve (or None)."""
    options: dict[str, Any] = {}
    server = config.server
    if server.trusted_proxies is not None:
        # X-Forwarded-For/-Proto believed from these only (the console's Secure cookies and
        # the throttle's client address depend on them); uvicorn's default is loopback.
        options["forwarded_allow_ips"] = list(server.trusted_proxies)
    if server.tls is None:
        return options, None
    try:
        context = tls_context(server.tls)
    except ValueError as e:
        raise ConfigError(f"server.tls: {e}") from None
    # uvicorn's own TLS listener (and its https scheme); its context is replaced by ours.
    options["ssl_certfile"] = str(server.tls.cert_file)
    options["ssl_keyfile"] = str(server.tls.key_file)
    return options, context


def reload_listener(context: ssl.SSLContext | None, config: Config) -> None:
    """New connections get the certificate now in the files (call it on the event loop, where
    the handshakes run); a failure keeps the one served."""
    tls = config.server.tls
    if (tls is None) != (context is None):
        log.warning("server.tls turned on or off: a restart is needed for that")
        return
    if tls is None or context is None:
        return
    try:
        reload_tls(context, tls)
    except ValueError as e:
        log.error(
            "TLS certificate not reloaded, the previous one is served",
            extra=fields(error=str(e)),
        )
        return
    log.info("TLS certificate reloaded", extra=fields(cert_file=str(tls.cert_file)))


class ListenerConfig(uvicorn.Config):
    """uvicorn's config, serving the daemon's TLS context (reloaded on SIGHUP) rather than
    the one uvicorn makes once from the same files."""

    def __init__(self, tls: ssl.SSLContext | None, app: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.tls = tls

    def load(self) -> None:
        super().load()
        if self.tls is not None:
            self.ssl = self.tls
