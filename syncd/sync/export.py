"""The export: commit a workspace's live steps to a branch of its source, and push it.

The files are the ones `syncd pull` writes (syncd.layout): the step files go under the
workspace's `path`, and the SDK's `.mts` files under `src/steps` beside `export/steps` when the
path ends in `export/steps`. The commit is built in memory on the mirror, on top of the head of
the named branch, or of the tracked branch when the named one does not exist yet; nothing is
checked out. As `syncd pull`, it leaves disabled steps out unless told `include_disabled`, and
its answer names every step it left out, and why. The push never forces: a branch that moved on
meanwhile is a Conflict. Pushing to a branch that an automatic workspace follows would deploy at
once, so it needs an explicit `allow_tracked_branch`.

Blocking (git and SQLite): the API runs it in a thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from syncd.config import Config, WorkspaceConfig
from syncd.core.errors import Conflict, GitError, PathNotFound, SyncdError
from syncd.core.layout import (
    SDK_DIR,
    STEPS_DIR,
    LeftOut,
    PulledStep,
    layout_files,
    left_out,
    plan_files,
)
from syncd.core.model import Mode
from syncd.core.refs import MODE_SUBMODULE, MODE_SYMLINK, branch_problem, short_branch
from syncd.core.steps import check_sizes
from syncd.core.urls import normalize_repo_url
from syncd.git import GitSource, Remote
from syncd.ops.logs import fields
from syncd.store import Store
from syncd.sync.engine import remote_for

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 65536


class InvalidExport(SyncdError):
    """The export request is not acceptable (a bad branch name or message)."""


class ExportRefused(Conflict):
    """The export would push where it must not without being told to."""


@dataclass(frozen=True, slots=True)
class ExportRequest:
    branch: str
    message: str | None = None
    allow_tracked_branch: bool = False
    include_disabled: bool = False  # carry disabled steps, as step files with enabled: false


@dataclass(frozen=True, slots=True)
class ExportResult:
    commit: str  # the branch head after the export
    branch: str
    files: int  # files of the layout: step files plus .mts files
    changed: bool  # False: the branch already held these files, and no commit was made
    left_out: tuple[LeftOut, ...] = ()  # live steps the export does not carry, and why

    def to_dict(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "branch": self.branch,
            "files": self.files,
            "changed": self.changed,
            "left_out": [o.to_dict() for o in self.left_out],
        }


def parse_export_request(body: dict[str, Any]) -> ExportRequest:
    branch = body.get("branch")
    if not isinstance(branch, str):
        raise InvalidExport('`branch` must be a branch name, e.g. "promote/dev"')
    branch = short_branch(branch)
    problem = branch_problem(branch)
    if problem:
        raise InvalidExport(f"`branch` {branch[:100]!r} is not a valid branch name: {problem}")
    message = body.get("message")
    if message is not None and (
        not isinstance(message, str)
        or not message.strip()
        or "\x00" in message
        or len(message) > MAX_MESSAGE_CHARS
    ):
        raise InvalidExport(f"`message` must be text of 1 to {MAX_MESSAGE_CHARS} characters")
    allow = body.get("allow_tracked_branch", False)
    if not isinstance(allow, bool):
        raise InvalidExport("`allow_tracked_branch` must be true or false")
    include_disabled = body.get("include_disabled", False)
    if not isinstance(include_disabled, bool):
        raise InvalidExport("`include_disabled` must be true or false")
    return ExportRequest(branch, message, allow, include_disabled)


def sdk_dir_for(steps_path: str) -> str | None:
    """`src/steps` beside `export/steps`; None (no .mts files) for any other layout."""
    path = steps_path.strip("/")
    if path == STEPS_DIR:
        return SDK_DIR
    if path.endswith("/" + STEPS_DIR):
        return path.removesuffix(STEPS_DIR) + SDK_DIR
    return None


def tracked_by(config: Config, ws: WorkspaceConfig, branch: str) -> list[str]:
    """The automatic workspaces that follow `branch` of ws's repository."""
    repo = normalize_repo_url(ws.source.url)
    return [
        other.id
        for other in config.workspaces
        if other.mode is Mode.AUTOMATIC
        and other.source.branch == branch
        and normalize_repo_url(other.source.url) == repo
    ]


def export_workspace(
    git: GitSource, store: Store, config: Config, ws: WorkspaceConfig, order: ExportRequest
) -> ExportResult:
    # 0. refuse a push that would deploy at once, unless told to
    followers = tracked_by(config, ws, order.branch)
    if followers and not order.allow_tracked_branch:
        raise ExportRefused(
            f"branch {order.branch!r} is tracked by automatic workspace(s) "
            f"{', '.join(followers)}: pushing there deploys at once. Export to another branch "
            'and open a pull request, or send "allow_tracked_branch": true'
        )
    remote = remote_for(ws)
    # 1. the base: the branch's head when it exists, else the head of the tracked branch
    heads = git.heads(remote)
    exists = order.branch in heads
    base_branch = order.branch if exists else ws.source.branch
    base = git.fetch(remote, base_branch, want=heads.get(base_branch))
    # 2. the files: the same layout as `syncd pull`, from the live steps
    steps_dir, sdk_dir = ws.source.path, sdk_dir_for(ws.source.path)
    steps = [
        PulledStep(ws.id, s.id, s.name, s.content, s.version, s.updated_at)
        for s in store.live_steps(ws.id).values()
    ]
    desired = layout_files(steps, steps_dir, sdk_dir, order.include_disabled)
    skipped = tuple(left_out(steps, order.include_disabled))
    # 3. what differs from the base; a commit only when something does
    existing = _existing(git, remote, base, steps_dir, ".step.json")
    if sdk_dir is not None:
        existing |= _existing(git, remote, base, sdk_dir, ".mts")
    changes = plan_files(desired, existing, steps_dir, sdk_dir or SDK_DIR)
    message = order.message or f"Export the steps of workspace {ws.name} ({ws.id})"
    author = (config.git.author_name, config.git.author_email)
    commit = (
        git.commit_files(remote, base, changes.edits(), message, author)
        if not changes.empty
        else None
    )
    # 4. push, never forcing; a new branch is created even when it adds nothing to its base
    if commit is not None or not exists:
        _push(git, remote, commit or base, order.branch, heads.get(order.branch))
    log.info(
        "export pushed",
        extra=fields(
            workspace=ws.id,
            branch=order.branch,
            base=base[:12],
            commit=(commit or base)[:12],
            files=len(desired),
            changed=commit is not None,
            left_out=len(skipped),
        ),
    )
    return ExportResult(commit or base, order.branch, len(desired), commit is not None, skipped)


def _push(git: GitSource, remote: Remote, commit: str, branch: str, base: str | None) -> None:
    """Push, telling a lost race from a failing remote: when the server refuses the update and
    the branch is no longer where the export found it (or now exists), another push got there
    first, which is a Conflict, whatever words the server chose ("failed to update ref")."""
    try:
        git.push(remote, commit, branch)
    except Conflict:
        raise
    except GitError as e:
        try:
            now = git.heads(remote).get(branch)
        except GitError:
            raise e from None
        if now != base:
            raise Conflict(
                f"branch {branch!r} moved on while the export was pushing (now at "
                f"{(now or 'nothing')[:12]}, was at {(base or 'nothing')[:12]}); nothing was "
                "pushed: export again to build on it"
            ) from e
        raise


def _existing(
    git: GitSource, remote: Remote, commit: str, folder: str, suffix: str
) -> dict[str, bytes]:
    """The files with `suffix` under `folder` at `commit`; symlinks with empty content."""
    try:
        entries = git.list_files(remote, commit, folder, suffix)
    except PathNotFound:
        return {}
    wanted = [e for e in entries if e.path.endswith(suffix) and e.mode != MODE_SUBMODULE]
    # Sizes from the object headers, before any blob is inflated.
    check_sizes([(e.path, e.size) for e in wanted if e.mode != MODE_SYMLINK])
    return {
        e.path: b"" if e.mode == MODE_SYMLINK else git.read_blob(remote, e.blob) for e in wanted
    }
