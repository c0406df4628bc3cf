"""A git remote: which one it is (its key), its credentials, and keeping its password out of
every URL and message that libgit2, the mirrors or the log see."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from syncd.core.urls import normalize_repo_url, redact_url


@functools.lru_cache(maxsize=4096)  # asked several times by every run: a URL's normalization
def remote_key(url: str, username: str | None) -> str:
    """Which remote a workspace's source is: one mirror, one fetch and one poll per key.

    The same repository spelled differently (trailing slash, .git, host case, default port)
    has one key; another user on it has another, since it may see other branches."""
    return f"{normalize_repo_url(url) or redact_url(url)}|{username or ''}"


@dataclass(frozen=True)
class Remote:
    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None

    @property
    def key(self) -> str:
        return remote_key(self.url, credentials(self)[0])


def credentials(remote: Remote) -> tuple[str | None, str | None]:
    """The configured credentials; user info in the URL only as a fallback (config refuses it,
    but a URL that carries it must still not reach the mirror or a message)."""
    try:
        parts = urlsplit(remote.url)
        in_url = parts.username, parts.password
    except ValueError:
        in_url = None, None
    return remote.username or in_url[0], remote.password or in_url[1]


def fetch_url(remote: Remote) -> str:
    """The URL libgit2 talks to: the configured one without user info."""
    return redact_url(remote.url)


def scrub(text: str, remote: Remote) -> str:
    _, password = credentials(remote)
    return text.replace(password, "***") if password else text
