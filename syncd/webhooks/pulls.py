"""What a pull request webhook says: the change proposed to a branch syncd may follow.

Pure: a payload in, a PullRequest or None out. A pull request is planned, never applied: it is
matched by its BASE (target) repository and branch, as a push of that branch would be, and its
head commit is fetched from the base repository by `head_ref` (every host keeps a pull
request's head there, a fork's too), so a fork's URL is never looked at. Anything a payload can
hold ends in a value or in MalformedPayload naming the field, as push payloads do; the
signature has been checked before any of this runs.

Which events plan, and which are ignored (None):
- GitHub `pull_request`: opened, reopened, synchronize (new commits) and ready_for_review;
  closed (merged or not), edited, labeled and the rest are ignored.
- GitLab `Merge Request Hook` (and a System Hook whose object_kind is merge_request): open,
  reopen, and update when it brings commits (`oldrev` set; an update also comes for a new
  title, label or approval, which changes no plan), only while the state is `opened`.
- Gitea and Forgejo `pull_request`: opened, reopened, synchronized. Gogs, which sends a pull
  request of another shape and none of Gitea's headers, is ignored.
A draft is planned as any other pull request: the plan is what a reviewer wants to see.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from syncd.core.refs import branch_problem, is_full_sha
from syncd.webhooks.message import bad, field, load_payload, optional_str, required_str, urls

__all__ = [
    "GITEA_ACTIONS",
    "GITHUB_ACTIONS",
    "GITLAB_ACTIONS",
    "MAX_NUMBER",
    "PullRequest",
    "gitlab_pull",
    "read_gitea_pull",
    "read_github_pull",
    "read_gitlab_pull",
]

GITHUB_ACTIONS = frozenset(("opened", "reopened", "synchronize", "ready_for_review"))
GITEA_ACTIONS = frozenset(("opened", "reopened", "synchronized"))
GITLAB_ACTIONS = frozenset(("open", "reopen", "update"))
# Pull request numbers are 32-bit on every host; a larger one is no pull request.
MAX_NUMBER = 2**31

# A repository's URL forms, in the order they are kept (the first is the one shown).
_HUB_KEYS = ("clone_url", "html_url", "ssh_url", "git_url")  # not `url`: GitHub's API URL
_GITLAB_KEYS = ("git_http_url", "git_ssh_url", "web_url", "http_url", "ssh_url", "url")
# Gitea and Forgejo send these besides the X-Gogs-Event and X-GitHub-Event they share.
_GITEA_OWN_HEADERS = ("x-gitea-event", "x-forgejo-event")


@dataclass(frozen=True, slots=True)
class PullRequest:
    """A pull (merge) request was opened or got new commits: its plan is wanted."""

    provider: str  # the webhook provider: github | gitlab | gitea
    repo_urls: tuple[str, ...]  # the BASE (target) repository's URL forms, as payloads give them
    base: str  # the base (target) branch name
    number: int  # GitHub/Gitea PR number; GitLab MR iid
    head_sha: str  # the head commit the event names (40 hex)
    # The ref to fetch from the base repository: refs/pull/N/head (GitHub, Gitea),
    # refs/merge-requests/N/head (GitLab).
    head_ref: str
    action: str  # as the payload says (opened, synchronize, open, update...)
    delivery: str | None = None


def read_github_pull(
    headers: Mapping[str, str], body: bytes, delivery: str | None
) -> PullRequest | None:
    return _hub_pull("github", load_payload(headers, body), delivery, GITHUB_ACTIONS)


def read_gitea_pull(
    headers: Mapping[str, str], body: bytes, delivery: str | None
) -> PullRequest | None:
    """Gitea and Forgejo; Gogs (none of their headers) is not read, its shape differs."""
    if not any(headers.get(name) for name in _GITEA_OWN_HEADERS):
        return None
    return _hub_pull("gitea", load_payload(headers, body), delivery, GITEA_ACTIONS)


def read_gitlab_pull(
    headers: Mapping[str, str], body: bytes, delivery: str | None
) -> PullRequest | None:
    return gitlab_pull(load_payload(headers, body), delivery)


def _hub_pull(
    name: str, payload: dict[str, Any], delivery: str | None, actions: frozenset[str]
) -> PullRequest | None:
    """GitHub's pull_request payload, which Gitea and Forgejo copy field for field."""
    action = required_str(payload, "action")
    if action not in actions or field(payload, "pull_request.state") == "closed":
        return None
    number = _number(payload.get("number"), "number")
    base = _branch(field(payload, "pull_request.base.ref"), "pull_request.base.ref")
    head_sha = _sha(field(payload, "pull_request.head.sha"), "pull_request.head.sha")
    # The base repository; the hook's own repository is the same one, and says so when the
    # base names no URL.
    repo = _first_urls(
        payload,
        ("pull_request.base.repo", "repository"),
        _HUB_KEYS,
        required="pull_request.base.repo.clone_url",
    )
    return PullRequest(
        name, repo, base, number, head_sha, f"refs/pull/{number}/head", action, delivery
    )


def gitlab_pull(payload: dict[str, Any], delivery: str | None) -> PullRequest | None:
    """A merge request event's payload (a project hook's, or a system hook's: the same)."""
    action = required_str(payload, "object_attributes.action")
    if action not in GITLAB_ACTIONS or optional_str(payload, "object_attributes.state") != "opened":
        return None
    if action == "update" and not optional_str(payload, "object_attributes.oldrev"):
        return None  # a title, label or approval: the same commits, the same plan
    attributes = payload.get("object_attributes")
    number = _number(field(attributes, "iid"), "object_attributes.iid")
    base = _branch(field(attributes, "target_branch"), "object_attributes.target_branch")
    head_sha = _sha(field(attributes, "last_commit.id"), "object_attributes.last_commit.id")
    # The target project; the hook's project is the same one, and says so when the target
    # names no URL (older payloads).
    repo = _first_urls(
        payload,
        ("object_attributes.target", "project"),
        _GITLAB_KEYS,
        required="object_attributes.target.git_http_url",
    )
    ref = f"refs/merge-requests/{number}/head"
    return PullRequest("gitlab", repo, base, number, head_sha, ref, action, delivery)


# --- checked fields ---------------------------------------------------------------------------


def _number(value: Any, path: str) -> int:
    # bool is an int to Python, never to a payload.
    if isinstance(value, bool) or not isinstance(value, int):
        missing = "missing" if value is None else f"not an integer ({type(value).__name__})"
        raise bad(f"payload field {path} is {missing}")
    if not 0 < value < MAX_NUMBER:
        raise bad(f"payload field {path} is out of range: a pull request number is 1 to 2**31-1")
    return value


def _sha(value: Any, path: str) -> str:
    if not isinstance(value, str):
        missing = "missing" if value is None else f"not a string ({type(value).__name__})"
        raise bad(f"payload field {path} is {missing}")
    if not is_full_sha(value):
        raise bad(f"payload field {path} is not a commit id (40 lower-case hex digits)")
    return value


def _branch(value: Any, path: str) -> str:
    if not isinstance(value, str):
        missing = "missing" if value is None else f"not a string ({type(value).__name__})"
        raise bad(f"payload field {path} is {missing}")
    problem = branch_problem(value)
    if problem is not None:
        raise bad(f"payload field {path} is not a branch name git accepts: {problem}")
    return value


def _first_urls(
    payload: dict[str, Any], parents: tuple[str, ...], keys: tuple[str, ...], *, required: str
) -> tuple[str, ...]:
    """The URL forms of the first of `parents` that names any; else MalformedPayload."""
    for parent in parents:
        found = field(payload, parent)
        if isinstance(found, dict):
            values = [found.get(k) for k in keys]
            if any(isinstance(v, str) and v.strip() for v in values):
                return urls(values, required=required)
    return urls([], required=required)
