"""What each git host's push webhook says: its payload read into a Push, a Ping or nothing.

Pure: bytes and headers in, values out. Anything a payload can hold must end in a value or in
WebhookRejected(400) naming the field, never in another exception; the signature has been
checked before any of this runs (see syncd.webhooks).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from syncd.errors import SyncdError

# GitHub's Events API caps a push at 20 commits and its webhooks document a larger cap; a push
# listing this many may have lost some, and a lost file could be the one that matters.
GITHUB_MAX_LISTED_COMMITS = 20


class WebhookRejected(SyncdError):
    """A webhook request syncd refuses: `status` is the HTTP status the API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Push:
    """Branches of one repository moved."""

    provider: str
    repo_urls: tuple[str, ...]  # every URL form the payload gave (clone, ssh, web), as given
    branches: tuple[str, ...]  # "refs/heads/main" -> "main"; deleted branches are left out
    paths: frozenset[str] | None  # changed files when the payload lists them all, else None
    delivery: str | None = None
    after: str | None = None  # the new head commit, when one branch moved


@dataclass(frozen=True, slots=True)
class Ping:
    """The provider checks that the hook is reachable."""

    provider: str
    delivery: str | None = None


Event = Push | Ping | None
Reader = Callable[[Mapping[str, str], bytes, str | None], Event]


def bad(message: str) -> WebhookRejected:
    return WebhookRejected(400, message)


# --- the body ---------------------------------------------------------------------------------


def load_payload(headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """The JSON object the body holds, sent as JSON or as a form's `payload` field."""
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise bad(f"body is not UTF-8 (byte {e.start})") from e
    if media_type == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(text, keep_blank_values=True, errors="strict", max_num_fields=100)
        except ValueError as e:
            raise bad(f"form body cannot be read: {type(e).__name__}") from e
        if len(fields.get("payload", [])) != 1:
            raise bad("form body must carry exactly one 'payload' field")
        text = fields["payload"][0]
    elif (
        media_type
        and media_type not in ("application/json", "text/json")
        and not (media_type.startswith("application/") and media_type.endswith("+json"))
    ):
        raise bad(
            f"content type {media_type[:80]!r} is not application/json "
            "or application/x-www-form-urlencoded"
        )
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as e:
        raise bad(f"body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from e
    except (ValueError, RecursionError) as e:  # digits beyond int's limit, absurd nesting
        raise bad(f"body is not usable JSON: {type(e).__name__}") from e
    if not isinstance(payload, dict):
        raise bad(f"payload must be a JSON object, not {type(payload).__name__}")
    return payload


# --- typed access -----------------------------------------------------------------------------


def field(obj: Any, path: str) -> Any:
    """obj["a"]["b"] for path "a.b"; None when any part is missing or not an object."""
    for key in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def required_str(obj: Any, path: str, within: str = "") -> str:
    """The string at path; 400 naming the field (within + path) when it is missing."""
    value = field(obj, path)
    if not isinstance(value, str):
        missing = "missing" if value is None else f"not a string ({type(value).__name__})"
        raise bad(f"payload field {within}{path} is {missing}")
    return value


def optional_str(obj: Any, path: str) -> str | None:
    value = field(obj, path)
    return value if isinstance(value, str) else None


def objects(obj: Any, path: str) -> list[dict[str, Any]]:
    """The list at path, which must be a list of objects."""
    value = field(obj, path)
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise bad(f"payload field {path} is missing or not a list of objects")
    return value


def urls(values: list[Any], *, required: str) -> tuple[str, ...]:
    """The non-empty strings among values, in order and without repeats; 400 naming `required`."""
    found = [v for v in values if isinstance(v, str) and v.strip()]
    if not found:
        raise bad(f"payload field {required} is missing: no repository URL in the payload")
    return tuple(dict.fromkeys(found))


def urls_at(obj: Any, paths: tuple[str, ...], *, required: str) -> tuple[str, ...]:
    return urls([field(obj, p) for p in paths], required=required)


# --- refs and commits -------------------------------------------------------------------------

# What git's check-ref-format refuses in a branch name (enough of it that no hostile ref
# survives as a branch): control characters, space, ~^:?*[\, "..", "@{", "//".
_BAD_BRANCH = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|(^|/)\.|\.lock(/|$)")


def branch_of(ref: str) -> str | None:
    """ "refs/heads/main" -> "main"; None for tags, other refs and names git would refuse."""
    if not ref.startswith("refs/heads/"):
        return None
    name = ref[len("refs/heads/") :]
    if not name or len(name) > 255 or name == "@" or name.endswith(("/", ".")):
        return None
    if name.startswith("/") or not name.isprintable() or _BAD_BRANCH.search(name):
        return None
    return name


def is_zero(sha: str | None) -> bool:
    """The all-zero id providers send for the missing side of a created or deleted ref."""
    return bool(sha) and set(sha or "") == {"0"}


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
    provider: str,
    repo: tuple[str, ...],
    ref: str,
    after: str | None,
    paths: frozenset[str] | None,
    delivery: str | None,
) -> Push | None:
    """A push of one ref: nothing for tags and other refs, nor for a deleted branch."""
    if not ref.startswith("refs/heads/") or is_zero(after):
        return None
    branch = branch_of(ref)
    # A branch name git would refuse is still a push, of a branch that nothing tracks.
    return Push(provider, repo, (branch,) if branch else (), paths, delivery, after)


def multi_push(
    provider: str,
    repo: tuple[str, ...],
    moved: list[tuple[str, str | None]],
    delivery: str | None,
) -> Push | None:
    """A push of several refs, each (ref, new head); None when no branch is left standing."""
    kept = [(ref, after) for ref, after in moved if ref.startswith("refs/heads/")]
    kept = [(ref, after) for ref, after in kept if not is_zero(after)]
    if not kept:
        return None
    branches = tuple(dict.fromkeys(b for ref, _ in kept if (b := branch_of(ref))))
    after = kept[0][1] if len(kept) == 1 else None
    return Push(provider, repo, branches, None, delivery, after)


# --- the providers ----------------------------------------------------------------------------


def read_github(headers: Mapping[str, str], body: bytes, delivery: str | None) -> Event:
    event = headers.get("x-github-event", "").strip().lower()
    if not event:
        raise bad("missing X-GitHub-Event header")
    if event == "ping":
        return Ping("github", delivery)
    if event != "push":
        return None
    payload = load_payload(headers, body)
    ref = required_str(payload, "ref")
    after = optional_str(payload, "after")
    if field(payload, "deleted") is True:
        return None
    repo = urls_at(
        payload,
        (
            "repository.clone_url",
            "repository.html_url",
            "repository.ssh_url",
            "repository.git_url",
            "repository.url",
        ),
        required="repository.clone_url",
    )
    commits = field(payload, "commits")
    paths = None
    if (
        isinstance(commits, list)
        and 0 < len(commits) < GITHUB_MAX_LISTED_COMMITS
        # A created branch or a force push changes more than its new commits show.
        and field(payload, "created") is False
        and field(payload, "forced") is False
    ):
        paths = listed_files(commits)
    return single_push("github", repo, ref, after, paths, delivery)


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


def read_gitlab(headers: Mapping[str, str], body: bytes, delivery: str | None) -> Event:
    event = headers.get("x-gitlab-event", "").strip()
    if not event:
        raise bad("missing X-Gitlab-Event header")
    if event not in ("Push Hook", "System Hook"):
        return None  # "Tag Push Hook" and every non-push event
    payload = load_payload(headers, body)
    kind = field(payload, "object_kind") or field(payload, "event_name")
    if event == "System Hook" and kind != "push":
        return None
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
    paths = _commit_list_paths(payload, "total_commits_count", total_required=True)
    return single_push("gitlab", repo, ref, after, paths, delivery)


def read_gitea(headers: Mapping[str, str], body: bytes, delivery: str | None) -> Event:
    """Gitea, Forgejo and Gogs, which share one payload."""
    names = ("x-forgejo-event", "x-gitea-event", "x-gogs-event", "x-github-event")
    event = next((headers[n].strip().lower() for n in names if headers.get(n, "").strip()), "")
    if not event:
        raise bad("missing X-Gitea-Event header (or X-Forgejo-Event, X-Gogs-Event)")
    if event == "ping":
        return Ping("gitea", delivery)
    if event != "push":
        return None
    payload = load_payload(headers, body)
    repo = urls_at(
        payload,
        ("repository.clone_url", "repository.ssh_url", "repository.html_url"),
        required="repository.clone_url",
    )
    ref, after = required_str(payload, "ref"), optional_str(payload, "after")
    paths = _commit_list_paths(payload, "total_commits", total_required=False)
    return single_push("gitea", repo, ref, after, paths, delivery)


def read_bitbucket(headers: Mapping[str, str], body: bytes, delivery: str | None) -> Event:
    """Bitbucket Cloud. Its push lists commits but never files, so paths are unknown."""
    event = headers.get("x-event-key", "").strip()
    if not event:
        raise bad("missing X-Event-Key header")
    if event != "repo:push":
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
            moved.append((f"refs/heads/{name}", optional_str(new, "target.hash")))
    return multi_push("bitbucket", repo, moved, delivery)


def read_bitbucket_server(headers: Mapping[str, str], body: bytes, delivery: str | None) -> Event:
    """Bitbucket Server and Data Center. Its refs_changed lists no files either."""
    event = headers.get("x-event-key", "").strip()
    if event == "diagnostics:ping":
        return Ping("bitbucket-server", delivery)
    payload = load_payload(headers, body)
    event = event or (optional_str(payload, "eventKey") or "")
    if not event:
        raise bad("missing X-Event-Key header")
    if event == "diagnostics:ping":
        return Ping("bitbucket-server", delivery)
    if event != "repo:refs_changed":
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
    return multi_push("bitbucket-server", repo, moved, delivery)


def read_azure_devops(headers: Mapping[str, str], body: bytes, delivery: str | None) -> Event:
    """Azure DevOps service hook. Its commits carry no file lists."""
    payload = load_payload(headers, body)
    event = required_str(payload, "eventType")
    if event != "git.push":
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
    return multi_push("azure-devops", repo, moved, delivery)


def read_generic(headers: Mapping[str, str], body: bytes, delivery: str | None) -> Event:
    """syncd's own format: {"repository": URL, "ref": REF, "paths": [...], "after": SHA}."""
    payload = load_payload(headers, body)
    repo = urls_at(payload, ("repository",), required="repository")
    ref = required_str(payload, "ref")
    if not ref.startswith("refs/"):
        ref = f"refs/heads/{ref}"  # a bare branch name
    listed = payload.get("paths")
    paths = None
    if listed is not None:
        if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
            raise bad("payload field paths is not a list of strings")
        paths = frozenset(listed)
    return single_push("generic", repo, ref, optional_str(payload, "after"), paths, delivery)


READERS: dict[str, Reader] = {
    "github": read_github,
    "gitlab": read_gitlab,
    "gitea": read_gitea,
    "bitbucket": read_bitbucket,
    "bitbucket-server": read_bitbucket_server,
    "azure-devops": read_azure_devops,
    "generic": read_generic,
}
