"""What each git host's push webhook says: its payload read into a Push, a Ping or nothing
(a pull request event is handed to syncd.webhooks.pulls, and read into a PullRequest).

Pure: bytes and headers in, values out. Anything a payload can hold ends in a value or in
MalformedPayload naming the field, never in another exception; the signature has been checked
before any of this runs (see syncd.webhooks.signatures).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from syncd.core.refs import HEADS, branch_of, is_zero
from syncd.webhooks import pulls
from syncd.webhooks.detect import delivery_id
from syncd.webhooks.message import (
    bad,
    field,
    load_payload,
    lowered,
    objects,
    optional_str,
    required_str,
    urls,
    urls_at,
    urls_in,
)
from syncd.webhooks.providers import BY_NAME, provider

# GitHub's Events API caps a push at 20 commits and its webhooks document a larger cap; a push
# listing this many may have lost some, and a lost file could be the one that matters.
GITHUB_MAX_LISTED_COMMITS = 20


@dataclass(frozen=True, slots=True)
class Push:
    """Branches of one repository moved."""

    provider: str
    repo_urls: tuple[str, ...]  # every URL form the payload gave (clone, ssh, web), as given
    branches: tuple[str, ...]  # "refs/heads/main" -> "main"; deleted branches are left out
    # Changed files when the payload lists them all (and parse was asked for them), else None.
    paths: frozenset[str] | None
    delivery: str | None = None
    after: str | None = None  # the new head commit, when one branch moved


@dataclass(frozen=True, slots=True)
class Ping:
    """The provider checks that the hook is reachable."""

    provider: str
    delivery: str | None = None


Event = Push | Ping | pulls.PullRequest | None
# Whether the changed files of a push to the repository with these URLs are wanted.
FilesWanted = Callable[[tuple[str, ...]], bool]
Reader = Callable[[Mapping[str, str], bytes, str | None, FilesWanted], Event]


def _always(repo_urls: tuple[str, ...]) -> bool:
    return True


def parse(
    provider_name: str,
    headers: Mapping[str, str],
    body: bytes,
    files_wanted: FilesWanted = _always,
) -> Event:
    """What a verified request says: a Push, a Ping, or None for an event syncd ignores.

    Listing a push's changed files walks every commit, and only a workspace that follows a
    folder of the pushed repository looks at them: when `files_wanted(repo_urls)` is False the
    Push's paths are None ("unknown"), which matches a workspace without a folder just as the
    list would. Every check that can refuse a payload is made either way, so the answer (a
    value or MalformedPayload) does not depend on it.
    """
    name = provider(provider_name).name
    headers = lowered(headers)
    return _READERS[name](headers, body, delivery_id(name, headers), files_wanted)


def _event(name: str, headers: Mapping[str, str]) -> str:
    """The event header's value, from the first of the provider's event headers sent."""
    for event_header in BY_NAME[name].event_headers:
        value = headers.get(event_header, "").strip()
        if value:
            return value
    return ""


# --- refs and commits -------------------------------------------------------------------------


def listed_files(commits: list[Any]) -> frozenset[str] | None:
    """Every file the commits add, modify or remove; None if a commit does not list them."""
    files: set[str] = set()
    for commit in commits:
        if not isinstance(commit, dict):
            return None
        for kind in ("added", "modified", "removed"):
            names = commit.get(kind)
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                return None
            files.update(names)
    return frozenset(files)


def single_push(
    name: str,
    repo: tuple[str, ...],
    ref: str,
    after: str | None,
    paths: frozenset[str] | None,
    delivery: str | None,
) -> Push | None:
    """A push of one ref: nothing for tags and other refs, nor for a deleted branch."""
    if not ref.startswith(HEADS) or is_zero(after):
        return None
    branch = _branch_of(ref)
    # A branch name git would refuse is still a push, of a branch that nothing tracks.
    return Push(name, repo, (branch,) if branch else (), paths, delivery, after)


# A busy host's pushes name the same few refs over and over; checking a ref name against
# git's rules was a tenth of reading a GitHub push. Pure, so a bounded memo answers the same.
_branch_of = lru_cache(maxsize=1024)(branch_of)


def multi_push(
    name: str,
    repo: tuple[str, ...],
    moved: list[tuple[str, str | None]],
    delivery: str | None,
) -> Push | None:
    """A push of several refs, each (ref, new head); None when no branch is left standing."""
    kept = [(ref, after) for ref, after in moved if ref.startswith(HEADS) and not is_zero(after)]
    if not kept:
        return None
    branches = tuple(dict.fromkeys(b for ref, _ in kept if (b := _branch_of(ref))))
    after = kept[0][1] if len(kept) == 1 else None
    return Push(name, repo, branches, None, delivery, after)


def _commit_list_paths(
    payload: dict[str, Any], total_key: str, *, total_required: bool
) -> frozenset[str] | None:
    """Files of a push whose commit list may be capped, with the true count at total_key."""
    commits = field(payload, "commits")
    total = field(payload, total_key)
    if not isinstance(commits, list) or not commits or is_zero(optional_str(payload, "before")):
        return None  # nothing listed, or a new branch: everything on it is new
    if isinstance(total, bool) or not isinstance(total, int):
        if total_required or total is not None:
            return None
    elif total > len(commits):
        return None  # the list was cut short
    return listed_files(commits)


# --- the providers ----------------------------------------------------------------------------


def read_github(
    headers: Mapping[str, str], body: bytes, delivery: str | None, files_wanted: FilesWanted
) -> Event:
    facts = BY_NAME["github"]
    event = _event(facts.name, headers).lower()
    if not event:
        raise bad("missing X-GitHub-Event header")
    if event in facts.ping_events:
        return Ping(facts.name, delivery)
    if event in facts.pull_events:
        return pulls.read_github_pull(headers, body, delivery)
    if event not in facts.push_events:
        return None
    payload = load_payload(headers, body)
    # Top-level fields straight from the dict: the busiest reader, and `field` walks paths.
    ref = payload.get("ref")
    if not isinstance(ref, str):
        ref = required_str(payload, "ref")  # raises, naming the field
    after = payload.get("after")
    if not isinstance(after, str):
        after = None
    if payload.get("deleted") is True:
        return None
    repo = urls_in(
        payload,
        "repository",
        ("clone_url", "html_url", "ssh_url", "git_url", "url"),
        required="repository.clone_url",
    )
    commits = payload.get("commits")
    paths = None
    if (
        isinstance(commits, list)
        and 0 < len(commits) < GITHUB_MAX_LISTED_COMMITS
        # A created branch or a force push changes more than its new commits show.
        and payload.get("created") is False
        and payload.get("forced") is False
        and files_wanted(repo)
    ):
        paths = listed_files(commits)
    return single_push(facts.name, repo, ref, after, paths, delivery)


def read_gitlab(
    headers: Mapping[str, str], body: bytes, delivery: str | None, files_wanted: FilesWanted
) -> Event:
    facts = BY_NAME["gitlab"]
    event = _event(facts.name, headers)
    if not event:
        raise bad("missing X-Gitlab-Event header")
    if event in facts.pull_events:
        return pulls.read_gitlab_pull(headers, body, delivery)
    if event not in facts.push_events:
        return None  # "Tag Push Hook" and every non-push event
    payload = load_payload(headers, body)
    kind = field(payload, "object_kind") or field(payload, "event_name")
    if event == "System Hook" and kind != "push":
        return pulls.gitlab_pull(payload, delivery) if kind == "merge_request" else None
    repo = urls_at(
        payload,
        (
            "project.git_http_url",
            "project.git_ssh_url",
            "project.web_url",
            "project.http_url",
            "project.ssh_url",
            "repository.git_http_url",
            "repository.git_ssh_url",
            "repository.homepage",
            "repository.url",
        ),
        required="project.git_http_url",
    )
    ref, after = required_str(payload, "ref"), optional_str(payload, "after")
    paths = None
    if files_wanted(repo):
        paths = _commit_list_paths(payload, "total_commits_count", total_required=True)
    return single_push(facts.name, repo, ref, after, paths, delivery)


def read_gitea(
    headers: Mapping[str, str], body: bytes, delivery: str | None, files_wanted: FilesWanted
) -> Event:
    """Gitea, Forgejo and Gogs, which share one payload."""
    facts = BY_NAME["gitea"]
    event = _event(facts.name, headers).lower()
    if not event:
        raise bad("missing X-Gitea-Event header (or X-Forgejo-Event, X-Gogs-Event)")
    if event in facts.ping_events:
        return Ping(facts.name, delivery)
    if event in facts.pull_events:
        return pulls.read_gitea_pull(headers, body, delivery)
    if event not in facts.push_events:
        return None
    payload = load_payload(headers, body)
    repo = urls_in(
        payload,
        "repository",
        ("clone_url", "ssh_url", "html_url"),
        required="repository.clone_url",
    )
    ref, after = required_str(payload, "ref"), optional_str(payload, "after")
    paths = None
    if files_wanted(repo):
        paths = _commit_list_paths(payload, "total_commits", total_required=False)
    return single_push(facts.name, repo, ref, after, paths, delivery)


def read_bitbucket(
    headers: Mapping[str, str], body: bytes, delivery: str | None, files_wanted: FilesWanted
) -> Event:
    """Bitbucket Cloud. Its push lists commits but never files, so paths are unknown."""
    facts = BY_NAME["bitbucket"]
    event = _event(facts.name, headers)
    if not event:
        raise bad("missing X-Event-Key header")
    if event not in facts.push_events:
        return None
    payload = load_payload(headers, body)
    full_name = optional_str(payload, "repository.full_name")
    repo = urls(
        [
            field(payload, "repository.links.html.href"),
            f"https://bitbucket.org/{full_name}" if full_name else None,
        ],
        required="repository.links.html.href",
    )
    moved: list[tuple[str, str | None]] = []
    for change in objects(payload, "push.changes"):
        new = change.get("new")
        if new is None:
            continue  # a deleted branch or tag
        if field(new, "type") == "branch":
            name = required_str(new, "name", within="push.changes[].new.")
            moved.append((f"{HEADS}{name}", optional_str(new, "target.hash")))
    return multi_push(facts.name, repo, moved, delivery)


def read_bitbucket_server(
    headers: Mapping[str, str], body: bytes, delivery: str | None, files_wanted: FilesWanted
) -> Event:
    """Bitbucket Server and Data Center. Its refs_changed lists no files either."""
    facts = BY_NAME["bitbucket-server"]
    event = _event(facts.name, headers)
    if event in facts.ping_events:
        return Ping(facts.name, delivery)
    payload = load_payload(headers, body)
    # Without the header, the body's eventKey names the event.
    event = event or (optional_str(payload, "eventKey") or "")
    if not event:
        raise bad("missing X-Event-Key header")
    if event in facts.ping_events:
        return Ping(facts.name, delivery)
    if event not in facts.push_events:
        return None
    clone = field(payload, "repository.links.clone")
    hrefs = [field(c, "href") for c in clone] if isinstance(clone, list) else []
    repo = urls(hrefs, required="repository.links.clone")
    moved: list[tuple[str, str | None]] = []
    for change in objects(payload, "changes"):
        ref_id = optional_str(change, "ref.id") or optional_str(change, "refId")
        if ref_id is None:
            raise bad("payload field changes[].ref.id is missing")
        if field(change, "ref.type") in ("BRANCH", None):
            deleted = field(change, "type") == "DELETE"
            moved.append((ref_id, "0" if deleted else optional_str(change, "toHash")))
    return multi_push(facts.name, repo, moved, delivery)


def read_azure_devops(
    headers: Mapping[str, str], body: bytes, delivery: str | None, files_wanted: FilesWanted
) -> Event:
    """Azure DevOps service hook. Its commits carry no file lists."""
    facts = BY_NAME["azure-devops"]
    payload = load_payload(headers, body)
    event = required_str(payload, "eventType")
    if event not in facts.push_events:
        return None
    # The event id is in the body: the same for every retry of this notification.
    delivery = optional_str(payload, "id") or delivery
    repo = urls_at(
        payload,
        (
            "resource.repository.remoteUrl",
            "resource.repository.sshUrl",
            "resource.repository.webUrl",
        ),
        required="resource.repository.remoteUrl",
    )
    moved: list[tuple[str, str | None]] = []
    for update in objects(payload, "resource.refUpdates"):
        ref = required_str(update, "name", within="resource.refUpdates[].")
        moved.append((ref, optional_str(update, "newObjectId")))
    return multi_push(facts.name, repo, moved, delivery)


def read_generic(
    headers: Mapping[str, str], body: bytes, delivery: str | None, files_wanted: FilesWanted
) -> Event:
    """syncd's own format: {"repository": URL, "ref": REF, "paths": [...], "after": SHA}."""
    payload = load_payload(headers, body)
    repo = urls_at(payload, ("repository",), required="repository")
    ref = required_str(payload, "ref")
    if not ref.startswith("refs/"):
        ref = f"{HEADS}{ref}"  # a bare branch name
    listed = payload.get("paths")
    paths = None
    if listed is not None:
        if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
            raise bad("payload field paths is not a list of strings")
        paths = frozenset(listed)
    return single_push("generic", repo, ref, optional_str(payload, "after"), paths, delivery)


_READERS: Mapping[str, Reader] = MappingProxyType(
    {
        "github": read_github,
        "gitlab": read_gitlab,
        "gitea": read_gitea,
        "bitbucket": read_bitbucket,
        "bitbucket-server": read_bitbucket_server,
        "azure-devops": read_azure_devops,
        "generic": read_generic,
    }
)
