"""Push webhooks as each git host sends them, aimed at a real repository and signed.

Every body starts from the documented sample in tests/unit/payloads; only the repository URLs,
the ref, the commit ids, the delivery id and the file lists are put in. The headers are those
the host sends (event, delivery, signature), with the host's own spelling.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from tests.support.configs import WEBHOOK_SECRET

SAMPLES = Path(__file__).parent.parent / "unit" / "payloads"
PREVIOUS = "1e65c05c1d5171631d92438a13901ca7dae9618c"  # a `before` when none is given

# A variant is how one host sends its push; the endpoint is the syncd provider it goes to.
ENDPOINT = {
    "github": "github",
    "github-form": "github",
    "gitlab": "gitlab",
    "gitea": "gitea",
    "forgejo": "gitea",
    "gogs": "gitea",
    "bitbucket": "bitbucket",
    "bitbucket-server": "bitbucket-server",
    "azure-devops": "azure-devops",
    "generic": "generic",
}
VARIANTS = tuple(ENDPOINT)
# Azure DevOps sends no header that names it: it must use /hooks/azure-devops.
AUTO_DETECTED = tuple(v for v in VARIANTS if v != "azure-devops")
# Bitbucket (both) and Azure DevOps list commits but no files.
LISTS_FILES = frozenset(VARIANTS) - {"bitbucket", "bitbucket-server", "azure-devops"}


def sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text())
    return data


def hex_hmac(body: bytes, secret: str = WEBHOOK_SECRET, digest: str = "sha256") -> str:
    return hmac.new(secret.encode(), body, getattr(hashlib, digest)).hexdigest()


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def signature_headers(variant: str, body: bytes, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    """The headers with which the host of `variant` signs (or authenticates) `body`."""
    sha256 = hex_hmac(body, secret)
    if variant in ("github", "github-form"):
        return {
            "X-Hub-Signature": "sha1=" + hex_hmac(body, secret, "sha1"),
            "X-Hub-Signature-256": "sha256=" + sha256,
        }
    if variant == "gitlab":
        return {"X-Gitlab-Token": secret}
    if variant in ("gitea", "forgejo"):
        # Gitea signs under every name a receiver might look for; Forgejo adds its own first.
        own = {"X-Forgejo-Signature": sha256} if variant == "forgejo" else {}
        return own | {
            "X-Gitea-Signature": sha256,
            "X-Gogs-Signature": sha256,
            "X-Hub-Signature": "sha1=" + hex_hmac(body, secret, "sha1"),
            "X-Hub-Signature-256": "sha256=" + sha256,
        }
    if variant == "gogs":
        return {"X-Gogs-Signature": sha256}
    if variant in ("bitbucket", "bitbucket-server"):
        return {"X-Hub-Signature": "sha256=" + sha256}
    if variant == "azure-devops":
        return {"Authorization": basic_auth("syncd-hook", secret)}
    if variant == "generic":
        return {"X-Signature": "sha256=" + sha256}
    raise ValueError(f"unknown webhook variant {variant!r}; known: {', '.join(VARIANTS)}")


def event_headers(variant: str, event: str, delivery: str) -> dict[str, str]:
    """The event and delivery headers of `variant`, as its host spells them."""
    if variant in ("github", "github-form"):
        # GitHub's hook setting "Content type": application/json or the form it also offers.
        form = variant == "github-form"
        return {
            "Content-Type": "application/x-www-form-urlencoded" if form else "application/json",
            "User-Agent": "GitHub-Hookshot/a7c2f5c",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery,
            "X-GitHub-Hook-ID": "292430182",
            "X-GitHub-Hook-Installation-Target-ID": "186853002",
            "X-GitHub-Hook-Installation-Target-Type": "repository",
        }
    if variant == "gitlab":
        return {
            "Content-Type": "application/json",
            "User-Agent": "GitLab/17.5.0",
            "X-Gitlab-Event": event,
            "X-Gitlab-Event-UUID": delivery,
            "X-Gitlab-Webhook-UUID": "2a7e9e9f-7d5c-4b3f-9a3e-3c6f0b9b8f11",
            "X-Gitlab-Instance": "https://gitlab.example.com",
            "Idempotency-Key": delivery,
        }
    if variant in ("gitea", "forgejo", "gogs"):
        hosts = {"gitea": ("Gitea", "Gogs", "GitHub"), "gogs": ("Gogs",)}
        names = hosts.get(variant, ("Forgejo", "Gitea", "Gogs", "GitHub"))
        headers = {"Content-Type": "application/json"}
        for name in names:
            headers[f"X-{name}-Delivery"] = delivery
            headers[f"X-{name}-Event"] = event
            if variant != "gogs":
                headers[f"X-{name}-Event-Type"] = event
        return headers
    if variant == "bitbucket":
        return {
            "Content-Type": "application/json",
            "User-Agent": "Bitbucket-Webhooks/2.0",
            "X-Event-Key": event,
            "X-Hook-UUID": "cb1e7b7e-0000-4000-8000-000000000000",
            "X-Request-UUID": delivery,
            "X-Attempt-Number": "1",
        }
    if variant == "bitbucket-server":
        return {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Atlassian HttpClient 4.2.0 / Bitbucket-8.19.1 (8019001) / Default",
            "X-Event-Key": event,
            "X-Request-Id": delivery,
        }
    if variant == "azure-devops":
        return {"Content-Type": "application/json; charset=utf-8", "User-Agent": "VSServices/16"}
    if variant == "generic":
        return {"Content-Type": "application/json", "X-Delivery-Id": delivery}
    raise ValueError(f"unknown webhook variant {variant!r}; known: {', '.join(VARIANTS)}")


class _Repo:
    """Every form in which a host names one repository, derived from its https clone URL."""

    def __init__(self, clone_url: str) -> None:
        parts = urlsplit(clone_url)
        self.clone = clone_url
        self.web = clone_url.removesuffix(".git")
        self.host = parts.hostname or ""
        self.path = parts.path.strip("/").removesuffix(".git")
        self.name = self.path.rsplit("/", 1)[-1]
        self.scp = f"git@{self.host}:{self.path}.git"
        self.ssh = f"ssh://git@{self.host}:2222/{self.path}.git"
        self.git = f"git://{parts.netloc}/{self.path}.git"


def build(
    provider: str,
    repo_url: str,
    branch: str,
    files: list[str],
    head_sha: str,
    delivery: str,
    *,
    before: str | None = None,
) -> tuple[dict[str, str], bytes]:
    """A signed push of `branch` to `head_sha` as `provider` (a variant) sends it.

    `files` are the paths the push added; hosts that list no files leave them out.
    """
    repo, ref, before = _Repo(repo_url), f"refs/heads/{branch}", before or PREVIOUS
    if provider in ("github", "github-form"):
        payload = _github(repo, ref, files, head_sha, before)
    elif provider == "gitlab":
        payload = _gitlab(repo, ref, files, head_sha, before)
    elif provider in ("gitea", "forgejo", "gogs"):
        payload = _gitea(repo, ref, files, head_sha, before, gogs=provider == "gogs")
    elif provider == "bitbucket":
        payload = _bitbucket(repo, branch, head_sha, before)
    elif provider == "bitbucket-server":
        payload = _bitbucket_server(repo, ref, head_sha, before)
    elif provider == "azure-devops":
        payload = _azure_devops(repo, ref, head_sha, before, delivery)
    elif provider == "generic":
        payload = {"repository": repo.clone, "ref": ref, "after": head_sha, "paths": files}
    else:
        raise ValueError(f"unknown webhook variant {provider!r}; known: {', '.join(VARIANTS)}")
    event = {
        "gitlab": "Push Hook",
        "bitbucket": "repo:push",
        "bitbucket-server": "repo:refs_changed",
    }.get(provider, "push")
    return signed(provider, event, payload, delivery)


def signed(
    variant: str, event: str, payload: dict[str, Any], delivery: str
) -> tuple[dict[str, str], bytes]:
    """Headers and body of `payload` sent as `event`, signed the way `variant` signs."""
    body = json.dumps(payload).encode()
    if variant == "github-form":
        body = urlencode({"payload": body.decode()}).encode()
    headers = event_headers(variant, event, delivery)
    return headers | signature_headers(variant, body), body


# --- pings and events syncd ignores -----------------------------------------------------------


def github_ping(repo_url: str, delivery: str) -> tuple[dict[str, str], bytes]:
    payload = sample("github_ping")
    repo = _Repo(repo_url)
    payload["repository"].update(
        name=repo.name, full_name=repo.path, html_url=repo.web, clone_url=repo.clone
    )
    return signed("github", "ping", payload, delivery)


def gitlab_tag_push(
    repo_url: str, tag: str, head_sha: str, delivery: str
) -> tuple[dict[str, str], bytes]:
    payload = sample("gitlab_tag_push")
    _gitlab_urls(payload, _Repo(repo_url))
    payload.update(ref=f"refs/tags/{tag}", after=head_sha, checkout_sha=head_sha)
    return signed("gitlab", "Tag Push Hook", payload, delivery)


def bitbucket_server_ping(delivery: str) -> tuple[dict[str, str], bytes]:
    """Bitbucket Server's "Test connection": a tiny body under diagnostics:ping."""
    return signed("bitbucket-server", "diagnostics:ping", {"test": True}, delivery)


# --- the bodies -------------------------------------------------------------------------------


def _github(repo: _Repo, ref: str, files: list[str], head: str, before: str) -> dict[str, Any]:
    payload = sample("github_push")
    payload["repository"].update(
        name=repo.name,
        full_name=repo.path,
        html_url=repo.web,
        url=repo.web,
        svn_url=repo.web,
        git_url=repo.git,
        ssh_url=repo.scp,
        clone_url=repo.clone,
    )
    commit = copy.deepcopy(payload["commits"][0])
    commit.update(
        id=head,
        url=f"{repo.web}/commit/{head}",
        added=list(files),
        removed=[],
        modified=[],
    )
    payload.update(
        ref=ref,
        before=before,
        after=head,
        compare=f"{repo.web}/compare/{before[:12]}...{head[:12]}",
        commits=[commit],
        head_commit=commit,
    )
    return payload


def _gitlab_urls(payload: dict[str, Any], repo: _Repo) -> None:
    project, repository = payload["project"], payload["repository"]
    project.update(
        name=repo.name,
        path_with_namespace=repo.path,
        web_url=repo.web,
        homepage=repo.web,
        git_http_url=repo.clone,
        http_url=repo.clone,
        git_ssh_url=repo.scp,
        ssh_url=repo.scp,
        url=repo.scp,
    )
    repository.update(
        name=repo.name,
        url=repo.scp,
        homepage=repo.web,
        git_http_url=repo.clone,
        git_ssh_url=repo.scp,
    )


def _gitlab(repo: _Repo, ref: str, files: list[str], head: str, before: str) -> dict[str, Any]:
    payload = sample("gitlab_push")
    _gitlab_urls(payload, repo)
    commit = copy.deepcopy(payload["commits"][-1])
    commit.update(
        id=head,
        url=f"{repo.web}/-/commit/{head}",
        added=list(files),
        modified=[],
        removed=[],
    )
    payload.update(
        ref=ref,
        before=before,
        after=head,
        checkout_sha=head,
        commits=[commit],
        total_commits_count=1,
    )
    return payload


def _gitea(
    repo: _Repo, ref: str, files: list[str], head: str, before: str, *, gogs: bool
) -> dict[str, Any]:
    payload = sample("gitea_push")
    payload["repository"].update(
        name=repo.name,
        full_name=repo.path,
        html_url=repo.web,
        ssh_url=repo.ssh,
        clone_url=repo.clone,
    )
    commit = copy.deepcopy(payload["commits"][0])
    commit.update(
        id=head,
        url=f"{repo.web}/commit/{head}",
        added=list(files),
        removed=[],
        modified=[],
    )
    payload.update(
        ref=ref,
        before=before,
        after=head,
        compare_url=f"{repo.web}/compare/{before}...{head}",
        commits=[commit],
        total_commits=1,
        head_commit=commit,
    )
    if gogs:
        # Gogs' push payload predates these fields.
        for key in ("total_commits", "head_commit"):
            payload.pop(key)
        commit.pop("verification")
    return payload


def _bitbucket(repo: _Repo, branch: str, head: str, before: str) -> dict[str, Any]:
    payload = sample("bitbucket_push")
    payload["repository"].update(name=repo.name, full_name=repo.path)
    payload["repository"]["links"]["html"]["href"] = repo.web
    change = payload["push"]["changes"][0]
    branch_link = {"html": {"href": f"{repo.web}/branch/{branch}"}}
    change["old"].update(name=branch, links=branch_link)
    change["old"]["target"]["hash"] = before
    change["new"].update(name=branch, links=branch_link)
    change["new"]["target"].update(hash=head, parents=[{"type": "commit", "hash": before}])
    change["links"]["html"]["href"] = f"{repo.web}/branches/compare/{head}..{before}"
    change["commits"][0].update(hash=head)
    change["commits"][0]["links"]["html"]["href"] = f"{repo.web}/commits/{head}"
    return payload


def _bitbucket_server(repo: _Repo, ref: str, head: str, before: str) -> dict[str, Any]:
    payload = sample("bitbucket_server_refs_changed")
    repository = payload["repository"]
    repository.update(slug=repo.name, name=repo.name)
    repository["links"] = {
        "clone": [
            {"href": f"ssh://git@{repo.host}:7999/{repo.path}.git", "name": "ssh"},
            {"href": repo.clone, "name": "http"},
        ],
        "self": [{"href": f"{repo.web}/browse"}],
    }
    branch = ref.removeprefix("refs/heads/")
    payload["changes"] = [
        {
            "ref": {"id": ref, "displayId": branch, "type": "BRANCH"},
            "refId": ref,
            "fromHash": before,
            "toHash": head,
            "type": "UPDATE",
        }
    ]
    return payload


def _azure_devops(repo: _Repo, ref: str, head: str, before: str, delivery: str) -> dict[str, Any]:
    payload = sample("azure_devops_push")
    payload["id"] = delivery  # the notification's id: the same in every retry of it
    resource = payload["resource"]
    resource["commits"][0].update(commitId=head, url=f"{repo.web}/commit/{head}")
    resource["refUpdates"] = [{"name": ref, "oldObjectId": before, "newObjectId": head}]
    resource["repository"].update(
        name=repo.name,
        # Azure DevOps puts the organization in the clone URL's user info.
        remoteUrl=repo.clone.replace("https://", "https://acme@", 1),
        sshUrl=repo.scp,
        webUrl=repo.web,
    )
    return payload
