"""One client per git host's API, each a `syncd.report.host.Host`, built from a `providers:`
entry by `build_host`.

- http: the shared https client, its trust, bounded answers and the errors they make
- base: a call, and the upsert of the one comment that carries a marker
- github (+ github_app: an App installation's token), gitlab, gitea (also Forgejo)

Bitbucket Cloud, Bitbucket Server/Data Center and Azure DevOps are not among them yet.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from syncd.config.types import ProviderConfig
from syncd.report.host import Host, HostError
from syncd.report.hosts.base import RestHost
from syncd.report.hosts.gitea import GiteaHost
from syncd.report.hosts.github import GitHubHost
from syncd.report.hosts.gitlab import GitLabHost

KINDS: dict[str, type[RestHost]] = {"github": GitHubHost, "gitlab": GitLabHost, "gitea": GiteaHost}


def build_host(config: ProviderConfig, clock: Callable[[], float] = time.time) -> Host:
    """The client of a `providers:` entry. `clock` (epoch seconds) is what a GitHub App's token
    lifetime and a Retry-After date are measured against."""
    kind = KINDS.get(config.kind)
    if kind is None:
        raise HostError(f"provider {config.name!r}: no client for kind {config.kind!r}")
    if config.app is not None and kind is not GitHubHost:
        raise HostError(f"provider {config.name!r}: an App is GitHub's only; give a token")
    if config.app is None and config.token is None:
        raise HostError(f"provider {config.name!r}: neither a token nor an App")
    return kind(config, clock)
