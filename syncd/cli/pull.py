"""`syncd pull`: write workspaces' live steps into a git checkout, the way the workspace SDK does.

It reads the steps through the HTTP API of a running syncd (token scope `read`), lays them out
with syncd.layout (`src/steps/**.mts` and `export/steps/*.step.json`), writes what changed and
removes the files of steps the workspaces no longer have. The checkout then holds exactly the
steps of the workspaces pulled together: pull them all at once (list them in `.aloma.yaml`).

As the SDK, it leaves disabled steps out, and says which: a promotion that merges the checkout
deletes them from the target workspace. `--include-disabled` writes them as step files with
`enabled: false` (and no `.mts` file), for teams who promote without rebuilding through the SDK.

Exit status: 0 done, 1 the server or the files failed us, 2 bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]

from syncd.cli.apiclient import ApiClient
from syncd.cli.apierrors import ApiNotFound, BadServer, ClientError, Forbidden, Unauthorized
from syncd.cli.options import (
    DEFAULT_SERVER,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    client_limits,
    server_from,
    token_from,
    token_of,
)
from syncd.cli.options import server_url as checked_url
from syncd.core.errors import ConfigError, SyncdError
from syncd.core.layout import (
    DISABLED,
    MTS,
    SDK_DIR,
    STEPS_DIR,
    FileChanges,
    LayoutError,
    LeftOut,
    PulledStep,
    is_pulled,
    layout_files,
    left_out,
    plan_files,
)
from syncd.core.model import StepContent
from syncd.core.steps import SUFFIX, check_sizes
from syncd.core.times import parse_time

ALOMA_FILE = ".aloma.yaml"
MAX_LISTED = 20  # left-out steps named per workspace; the rest are counted

ALOMA_EXAMPLE = """pull:
  workspaces:
    - a-workspace-id
"""
TOKEN_HELP = """no API token: give --token-file, or set SYNCD_TOKEN (or ALOMA_KEY), with a syncd
API token with the `read` scope. To create one, add it to syncd's config (syncd.yaml) and
reload syncd:

  tokens:
    - {name: pull, token_env: SYNCD_PULL_TOKEN, scopes: [read]}

start syncd with SYNCD_PULL_TOKEN set to a long random value (for example from
`openssl rand -hex 32`; or use token_file with a systemd credential), then here:

  export SYNCD_TOKEN=<that value>     (or write it to a file only you can read: --token-file)
"""


class UsageError(SyncdError):
    """The command line, the checkout or .aloma.yaml is not usable."""


class ServerError(SyncdError):
    """The syncd server could not be reached or refused the request."""


def add_command(sub: Any, common: argparse.ArgumentParser) -> None:
    help_text = "write workspaces' steps into this git checkout (src/steps, export/steps)"
    cmd = sub.add_parser("pull", parents=[common], help=help_text, description=help_text)
    cmd.add_argument(
        "workspaces", metavar="WS", nargs="*", help="workspace ids (default: .aloma.yaml)"
    )
    cmd.add_argument("--dir", type=Path, default=Path("."), help="where to write (default: .)")
    cmd.add_argument(
        "--include-disabled",
        action="store_true",
        help="write disabled steps too, as step files with enabled: false (no .mts file); "
        "by default they are left out, as the SDK does",
    )
    cmd.set_defaults(handler=cmd_pull)


def cmd_pull(args: argparse.Namespace) -> int:
    try:
        # --server, --token-file and --ca-file are global options (syncd.cli.parser); pull's
        # server by default: $SYNCD_SERVER, else DEFAULT_SERVER
        return pull(
            args.workspaces,
            args.server,
            args.dir,
            os.environ,
            args.include_disabled,
            token=token_of(args),  # the other commands' --token-file and variables
            ca_file=getattr(args, "ca_file", None),
            limits=client_limits(args),
        )
    except (UsageError, ConfigError) as e:
        print(f"syncd pull: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (ServerError, LayoutError, OSError) as e:
        print(f"syncd pull: {e}", file=sys.stderr)
        return EXIT_FAILED


def pull(
    workspaces: Sequence[str],
    server: str | None,
    target: Path,
    environ: Mapping[str, str] = os.environ,
    include_disabled: bool = False,
    token: str | None = None,
    ca_file: Path | None = None,
    limits: Mapping[str, Any] | None = None,
) -> int:
    # 1. where: the target folder, which must lie in a git checkout
    root = target.resolve()
    top = checkout_top(root)
    # 2. what: the ids given, else .aloma.yaml's pull.workspaces
    ids = list(workspaces) or aloma_workspaces(root, top)
    # 3. from where: the server and the token
    base = server_url(server_from(server, environ) or DEFAULT_SERVER)
    token = token or token_from(None, environ)
    if not token:
        raise UsageError(TOKEN_HELP)
    # one client for the whole pull: --deadline holds for all its requests together
    client = ApiClient(base, token, ca_file, **(limits or {}))
    # 4. read every workspace's live steps, then lay them out together
    steps: list[PulledStep] = []
    skipped: list[LeftOut] = []
    for ws_id in ids:
        name, found = fetch_workspace(client, ws_id)
        kept = sum(is_pulled(s, include_disabled) for s in found)
        print(f"Pulling workspace {name} (id: {ws_id}): {kept} steps")
        mine = left_out(found, include_disabled)
        report_left_out(mine)
        skipped += mine
        steps.extend(found)
    desired = layout_files(steps, include_disabled=include_disabled)
    # 5. compare with the files there, write, remove what is stale
    changes = plan_files(desired, read_existing(root))
    apply_changes(root, changes)
    report(changes)
    if any(o.reason == DISABLED for o in skipped):
        print(
            "Disabled steps are left out, as the SDK does: a promotion that merges this checkout "
            "deletes them from the target workspace. --include-disabled writes them as disabled."
        )
    return EXIT_OK


# -- the checkout -------------------------------------------------------------------------------


def checkout_top(start: Path) -> Path:
    """The top of the git checkout that holds `start` (a `.git` folder, or the `.git` file of
    a worktree or submodule)."""
    if not start.is_dir():
        raise UsageError(f"{start} is not a folder")
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    raise UsageError(
        f"{start} is not inside a git checkout; clone the repository (or `git init`) and run "
        "syncd pull there"
    )


def aloma_workspaces(root: Path, top: Path) -> list[str]:
    """`pull.workspaces` from the nearest .aloma.yaml between `root` and the checkout top."""
    folders = [root, *(p for p in root.parents if p == top or top in p.parents)]
    path = next((f / ALOMA_FILE for f in folders if (f / ALOMA_FILE).is_file()), None)
    where = path or top / ALOMA_FILE
    missing = (
        f"no workspace ids given and {where} "
        f"{'lists none' if path else 'does not exist'}; "
        f"name them (syncd pull WS...) or create {ALOMA_FILE} with:\n\n{ALOMA_EXAMPLE}"
    )
    if path is None:
        raise UsageError(missing)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise UsageError(f"{path}: cannot be read: {e}\n\nexpected:\n\n{ALOMA_EXAMPLE}") from e
    section = doc.get("pull") if isinstance(doc, dict) else None
    found = section.get("workspaces") if isinstance(section, dict) else None
    if found is None or found == []:
        raise UsageError(missing)
    if not isinstance(found, list) or not all(isinstance(w, str | int) for w in found):
        raise UsageError(f"{path}: pull.workspaces must be a list of ids:\n\n{ALOMA_EXAMPLE}")
    return [str(w) for w in found]


def read_existing(root: Path) -> dict[str, bytes]:
    """Every `*.step.json` under export/steps and `*.mts` under src/steps, path -> content.

    Symlinks are listed with empty content, never followed."""
    found: dict[str, bytes] = {}
    for folder, suffix in ((STEPS_DIR, SUFFIX), (SDK_DIR, MTS)):
        base = root / folder
        if not base.is_dir():
            continue
        _check_inside(root, base)
        for dirpath, _dirs, files in os.walk(base):
            for file in files:
                if not file.endswith(suffix):
                    continue
                path = Path(dirpath) / file
                rel = path.relative_to(root).as_posix()
                if path.is_symlink():
                    found[rel] = b""
                    continue
                # The size before the read: a huge file is refused, never loaded.
                check_sizes([(rel, path.stat().st_size)])
                found[rel] = path.read_bytes()
    return found


def apply_changes(root: Path, changes: FileChanges) -> None:
    # Every folder is checked before the first file is written: a refusal leaves the checkout
    # as it was, not half pulled.
    for rel in [*changes.written, *changes.changed, *changes.removed]:
        _check_inside(root, _deepest_existing((root / rel).parent, root))
    for rel, data in {**changes.written, **changes.changed}.items():
        _write(root, rel, data)
    for rel in changes.removed:
        path = root / rel
        _check_inside(root, path.parent)
        path.unlink(missing_ok=True)
        _prune_empty(root, path.parent)


def report_left_out(skipped: Sequence[LeftOut]) -> None:
    """Name the steps a workspace's pull leaves out, and why."""
    if not skipped:
        return
    reasons = sorted({o.reason for o in skipped})
    steps = "step" if len(skipped) == 1 else "steps"
    print(f"  left out {len(skipped)} {steps} ({', '.join(reasons)}):")
    for o in skipped[:MAX_LISTED]:
        print(f"    {_show(o.name) if o.name.strip() else '(id ' + o.id + ')'}: {o.reason}")
    if len(skipped) > MAX_LISTED:
        print(f"    and {len(skipped) - MAX_LISTED} more")


def report(changes: FileChanges) -> None:
    for label, paths in (
        ("wrote", changes.written),
        ("changed", changes.changed),
        ("removed", changes.removed),
    ):
        for rel in paths:
            print(f"  {label:<8}{_show(rel)}")
    print(
        f"{len(changes.written)} written, {len(changes.changed)} changed, "
        f"{len(changes.removed)} removed, {changes.unchanged} unchanged"
    )


def _write(root: Path, rel: str, data: bytes) -> None:
    """Write through a temporary file and a rename: a symlink at `rel` is replaced, never
    followed, and no half-written file is left behind."""
    path = root / rel
    _check_inside(root, path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    _check_inside(root, path.parent)
    tmp = path.parent / f".syncd-pull-{uuid.uuid4().hex}.tmp"
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _check_inside(root: Path, folder: Path) -> None:
    """`folder`, symlinks resolved, lies in the checkout and not in its .git."""
    resolved = folder.resolve()
    if resolved != root and root not in resolved.parents:
        raise LayoutError(f"refusing to write in {folder}: it leads outside {root}")
    if ".git" in resolved.relative_to(root).parts:
        raise LayoutError(f"refusing to write in {folder}: it leads into .git")


def _deepest_existing(folder: Path, root: Path) -> Path:
    """`folder`, or the nearest of its parents that exists (a write would create the rest)."""
    while folder != root and not folder.exists() and not folder.is_symlink():
        folder = folder.parent
    return folder


def _prune_empty(root: Path, folder: Path) -> None:
    """Remove folders a removal left empty, up to (not including) src/steps, export/steps."""
    stops = {root / STEPS_DIR, root / SDK_DIR, root}
    while folder not in stops and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:  # not empty, or already gone
            return
        folder = folder.parent


def _show(rel: str) -> str:
    return rel if rel.isprintable() else repr(rel)


# -- the server ---------------------------------------------------------------------------------


def server_url(text: str) -> str:
    try:
        return checked_url(text)
    except BadServer as e:
        raise UsageError(str(e)) from None


def fetch_workspace(client: ApiClient, ws_id: str) -> tuple[str, list[PulledStep]]:
    """The workspace's name and its live steps."""
    path = f"/api/v1/workspaces/{urllib.parse.quote(ws_id, safe='')}"
    info = _get(client, path, ws_id)
    answer = _get(client, f"{path}/steps", ws_id)
    try:
        name = str(info.get("name") or ws_id)
        return name, [_step(ws_id, s) for s in answer["steps"]]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        said = client.clean(repr(e))
        raise ServerError(f"{client.base}{path}/steps: unexpected answer ({said})") from e


def _step(ws_id: str, doc: dict[str, Any]) -> PulledStep:
    content = doc["content"]
    if not isinstance(doc["name"], str) or not all(
        isinstance(content[k], str) for k in ("if", "do")
    ):
        raise ValueError(f"step {doc.get('name')!r} lacks a name, `if` or `do`")
    return PulledStep(
        workspace=ws_id,
        id=str(doc.get("id", "")),
        name=doc["name"],
        content=StepContent.from_dict(content),
        version=int(doc.get("version", 0)),
        updated_at=parse_time(doc.get("updated_at", 0.0)),
    )


def _get(client: ApiClient, path: str, ws_id: str) -> dict[str, Any]:
    try:
        return client.get(path)
    except ApiNotFound as e:
        raise UsageError(f"{client.base}: no workspace {ws_id!r} ({e})") from None
    except Unauthorized as e:
        raise ServerError(str(e)) from None
    except Forbidden as e:
        raise ServerError(f"{e}; the token needs the `read` scope") from None
    except ClientError as e:
        raise ServerError(str(e)) from None
