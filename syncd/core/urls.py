"""Repository URLs: what a source may be, how webhooks match it, and how logs show it. Pure.

A source is always an https URL without credentials. Webhook payloads name the same repository
in several ways (clone URL, html URL, ssh URL, scp-like `git@host:owner/repo.git`), so matching
compares a *key*, `host[:port]/path`, that ignores everything that does not name the repository.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, urlsplit

__all__ = ["check_source_url", "commit_url", "normalize_repo_url", "redact_url"]

# `scheme://`, as RFC 3986 spells a scheme.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# Everything up to the last `@` before the path is user info. Wider than urlsplit's reading (which
# stops at `?` and `#`), so that an unencoded password such as `p#ss` is still removed.
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)?(?P<userinfo>[^/]*@)?", re.S)
# `[user@]host:path`: git's scp-like syntax (no scheme, a colon before the first slash).
_SCP = re.compile(r"^(?:[^@/]*@)?(?:\[[^\]/]*\]|[^/:\[\]@]+):")
# Without a scheme: `[user@]host[:port-or-scp-path][/path]`.
_SCHEMELESS = re.compile(
    r"^(?:(?P<user>[^@/]*)@)?(?P<host>\[[^\]/]*\]|[^/:\[\]]*)(?P<rest>.*)$", re.S
)
_HOSTNAME = re.compile(r"^[a-z0-9_]([a-z0-9_.-]*)$")
_IPV6 = re.compile(r"^[0-9a-f:.]*:[0-9a-f:.]*$")
_PORT = re.compile(r"^:(?P<port>[0-9]+)(?P<path>/.*)?$", re.S)
_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")

# The port a scheme implies: it names nothing, so it is ignored when matching.
_DEFAULT_PORTS = {"https": 443, "http": 80}
# For these schemes the port is the ssh or git daemon's, not the web server's: the same repository
# is reached at `https://host/owner/repo` and `ssh://git@host:2222/owner/repo.git`.
_PORTLESS_SCHEMES = {"ssh", "git", "git+ssh", "ssh+git"}


def redact_url(url: str) -> str:
    """Return `url` without its user info (user name, password or token), for logs and messages."""
    match = _USERINFO.match(url)
    if match is None or match.group("userinfo") is None:
        return url
    return (match.group("scheme") or "") + url[match.end() :]


def check_source_url(url: str) -> None:
    """Raise ValueError unless `url` is an https URL with a host and no embedded credentials."""
    shown = redact_url(url)
    if _BAD_CHARS.search(url):
        raise ValueError(f"URL {shown!r} contains whitespace or control characters")
    scheme_match = _SCHEME.match(url)
    if scheme_match is None:
        seen = "scp-like ssh syntax (user@host:path)" if _SCP.match(url) else "no scheme"
        raise ValueError(f"https is required, got {seen} in {shown!r}")
    scheme = scheme_match.group(1).lower()
    if scheme != "https":
        raise ValueError(f"https is required, got scheme {scheme!r} in {shown!r}")
    if shown != url:
        # A bare user name is refused too: `https://TOKEN@host/...` is a common way to leak a token.
        raise ValueError(
            f"URL {shown!r} embeds credentials (user info before '@'); "
            "put the user name in username and the password in password_env or password_file"
        )
    try:
        # No user info is left, so urlsplit's own message cannot carry a password.
        parts = urlsplit(url)
        hostname = parts.hostname
        port = parts.port
    except ValueError as e:
        raise ValueError(f"URL {shown!r} is not a valid URL: {e}") from None
    if not hostname:
        raise ValueError(f"URL {shown!r} has no host")
    if port == 0:
        raise ValueError(f"URL {shown!r} has port 0")


def normalize_repo_url(url: str) -> str:
    """Return the key `host[:port]/path` that names the repository `url` points at.

    Scheme, user info, host case, a default port, an ssh port, trailing `/` and `.git` are
    ignored; the path keeps its case. Returns "" for anything that does not parse; never raises.
    The result normalizes to itself.
    """
    try:
        return _normalize(url.strip())
    except (ValueError, TypeError, AttributeError):
        return ""


def _normalize(url: str) -> str:
    if not url or _BAD_CHARS.search(url):
        return ""
    if _SCHEME.match(url):
        parts = urlsplit(url)
        host = _host(parts)
        port = _port(parts)
        path = parts.path
    else:
        host, port, path = _split_schemeless(url)
    if not host:
        return ""
    key = host if port is None else f"{host}:{port}"
    path = _clean_path(path)
    return f"{key}/{path}" if path else key


def _host(parts: SplitResult) -> str:
    host = parts.hostname or ""
    return _checked_host(host if ":" not in host else f"[{host}]")


def _port(parts: SplitResult) -> int | None:
    scheme = parts.scheme.lower()
    port = parts.port
    if port is None or scheme in _PORTLESS_SCHEMES or port == _DEFAULT_PORTS.get(scheme):
        return None
    return port


def _split_schemeless(url: str) -> tuple[str, int | None, str]:
    """Split `[user@]host:path` (scp-like) or `[user@]host[:port]/path` (a key)."""
    match = _SCHEMELESS.match(url)
    if match is None:
        return "", None, ""
    host = _checked_host(match.group("host").lower())
    rest = match.group("rest")
    if not rest or rest.startswith("/"):
        return host, None, rest
    if not rest.startswith(":"):
        return "", None, ""
    port_match = _PORT.match(rest)
    if match.group("user") is None and port_match is not None:
        port = int(port_match.group("port"))
        if port > 65535:
            return "", None, ""
        return host, port, port_match.group("path") or ""
    return host, None, rest[1:]  # scp-like: everything after the colon is the path


def _checked_host(host: str) -> str:
    if host.startswith("[") and host.endswith("]"):
        return host if _IPV6.match(host[1:-1]) else ""
    return host if _HOSTNAME.match(host) else ""


def _clean_path(path: str) -> str:
    path = re.sub(r"/{2,}", "/", path).strip("/")
    # Repeat until stable, so that the key normalizes to itself.
    while True:
        stripped = path.removesuffix(".git").strip("/")
        if stripped == path:
            return path
        path = stripped


# Hosts whose web pages show a commit at `<repository>/commit/<sha>` (GitHub, Gitea, Forgejo) or
# `<repository>/-/commit/<sha>` (GitLab), told by the host's name; others get no link.
_COMMIT_PAGES = (("gitlab", "/-/commit/"), ("github", "/commit/"), ("gitea", "/commit/"))
_COMMIT_PAGES_MORE = (("forgejo", "/commit/"), ("codeberg", "/commit/"))
_SHA = re.compile(r"^[0-9a-f]{4,64}$")


def commit_url(url: str, sha: str) -> str | None:
    """The web page of commit `sha` in the repository at `url`, where the host is known to
    have one; None otherwise. Never carries the URL's credentials."""
    parts = urlsplit(redact_url(url))
    host = (parts.hostname or "").lower()
    path = parts.path.rstrip("/").removesuffix(".git")
    if parts.scheme.lower() != "https" or not host or not _SHA.match(sha) or path.count("/") < 2:
        return None
    for name, infix in _COMMIT_PAGES + _COMMIT_PAGES_MORE:
        if name in host:
            port = f":{parts.port}" if parts.port and parts.port != 443 else ""
            return f"https://{host}{port}{path}{infix}{sha}"
    return None


def is_loopback_host(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1: a host whose traffic never leaves the machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
