"""A signed GitHub push webhook, as GitHub sends it, for `syncd demo` and the benchmarks.

The body has the shape and size of GitHub's push event (the fields GitHub documents, with
placeholder ids for those syncd does not read); the repository's names and URLs come from its
https clone URL. The headers are GitHub's, signed with the webhook secret (sha1 and sha256).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

PREVIOUS = "1e65c05c1d5171631d92438a13901ca7dae9618c"  # a `before` when none is given
_PERSON = {"name": "Octocat", "email": "octocat@github.com", "username": "octocat"}
_WEB_FLOW = {"name": "GitHub", "email": "noreply@github.com", "username": "web-flow"}


def github_push(
    repo_url: str,
    head: str,
    secret: str,
    *,
    before: str | None = None,
    branch: str = "main",
    added: Sequence[str] = (),
    modified: Sequence[str] = (),
    removed: Sequence[str] = (),
    delivery: str | None = None,
) -> tuple[dict[str, str], bytes]:
    """(headers, body) of GitHub's push of `branch` to `head` in the repository at `repo_url`,
    one commit touching the given paths, signed with `secret`. A fresh delivery id by default."""
    before = before or PREVIOUS
    payload = _push(repo_url, f"refs/heads/{branch}", head, before, added, modified, removed)
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/a7c2f5c",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "292430182",
        "X-GitHub-Hook-Installation-Target-ID": "186853002",
        "X-GitHub-Hook-Installation-Target-Type": "repository",
    }
    return headers | signature_headers(body, secret), body


def signature_headers(body: bytes, secret: str) -> dict[str, str]:
    """GitHub's signatures of `body`: the legacy sha1 one and the sha256 one."""
    return {
        "X-Hub-Signature": "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest(),
        "X-Hub-Signature-256": "sha256="
        + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
    }


def _push(
    repo_url: str,
    ref: str,
    head: str,
    before: str,
    added: Sequence[str],
    modified: Sequence[str],
    removed: Sequence[str],
) -> dict[str, Any]:
    parts = urlsplit(repo_url)
    web = repo_url.removesuffix(".git")
    path = parts.path.strip("/").removesuffix(".git")
    owner, _, name = path.rpartition("/")
    owner = owner or "acme"
    commit = {
        "id": head,
        "tree_id": "f9d2a07e9488b91af2641b26b9407fe22a451433",
        "distinct": True,
        "message": "Update the steps",
        "timestamp": "2019-05-15T15:20:41-07:00",
        "url": f"{web}/commit/{head}",
        "author": _PERSON,
        "committer": _WEB_FLOW,
        "added": list(added),
        "removed": list(removed),
        "modified": list(modified),
    }
    repository = {
        "id": 186853002,
        "node_id": "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI=",
        "name": name,
        "full_name": path,
        "private": False,
        "owner": {
            "name": owner,
            "email": None,
            "login": owner,
            "id": 21031067,
            "type": "Organization",
            "site_admin": False,
        },
        "html_url": web,
        "description": None,
        "fork": False,
        "url": web,
        "created_at": 1557933565,
        "updated_at": "2019-05-15T15:20:41Z",
        "pushed_at": 1557933657,
        "git_url": f"git://{parts.netloc}/{path}.git",
        "ssh_url": f"git@{parts.hostname or ''}:{path}.git",
        "clone_url": repo_url,
        "svn_url": web,
        "homepage": None,
        "size": 0,
        "default_branch": "main",
        "master_branch": "main",
        "organization": owner,
    }
    return {
        "ref": ref,
        "before": before,
        "after": head,
        "repository": repository,
        "pusher": {"name": "octocat", "email": "octocat@github.com"},
        "sender": {"login": "octocat", "id": 21031067, "type": "User", "site_admin": False},
        "created": False,
        "deleted": False,
        "forced": False,
        "base_ref": None,
        "compare": f"{web}/compare/{before[:12]}...{head[:12]}",
        "commits": [commit],
        "head_commit": commit,
    }
