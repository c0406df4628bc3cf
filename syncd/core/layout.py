"""Where a workspace's steps live in a checkout, as `syncd pull` and the export write them. Pure.

Each step becomes two files, relative to the root of the layout (the checkout for a pull):
- `export/steps/<step_file_name(name)>`: the contract's step file, the one syncd syncs from, so
  a pulled checkout is syncable at once;
- `src/steps/<folders>/<last part>.mts`: the workspace SDK's view of the same step, with its
  header comment (Name, ID, Version, Path, UpdatedAt, Workspace), `match` and the body.

As in the SDK, only enabled steps with a name are written, and name parts that are empty or
start with `.` are dropped from the `.mts` path. `left_out` names the steps left out, and why:
merging such a layout into a promotion deletes them from the target workspace. With
`include_disabled`, disabled steps are written too, as step files with `enabled: false` but
without an `.mts` file: the SDK's file cannot say "disabled", and a build from it would enable
the step. A name can never lead outside the layout: no
part is `..`, `.` or empty, none holds NUL, and none is longer than a file name may be. Names
that would share a file (`a b` and `a/b`, or names differing only in case) each get a short
hash of the name in their file names; reading never depends on file names.

Files syncd manages, and so may change or remove: every `*.step.json` under the steps folder,
and every `*.mts` under the SDK folder that carries the SDK header. Anything else is left alone,
and a step that would overwrite it is refused.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from syncd.core.errors import SyncdError
from syncd.core.model import StepContent
from syncd.core.steps import MAX_NAME_CHARS, SUFFIX, render_step_file, step_file_name

STEPS_DIR = "export/steps"
SDK_DIR = "src/steps"
MTS = ".mts"
MAX_FILE_NAME_BYTES = 255  # ext4, APFS, NTFS: longer names fail to be written

# The header the SDK writes; its first lines tell a pulled file from a hand-written one.
_HEADER_START = b"/**\n  Name:"
_HEADER_WORKSPACE = b"\n  Workspace:"
_HEADER_END = b"*/"


class LayoutError(SyncdError):
    """The steps cannot be laid out: a duplicate name, a name no file can carry, or a file
    that syncd does not manage in the way. The message names the step or the file."""


@dataclass(frozen=True, slots=True)
class PulledStep:
    """A live step, as the API gives it, with the workspace it came from."""

    workspace: str  # the workspace id
    id: str
    name: str
    content: StepContent
    version: int
    updated_at: float  # unix seconds


DISABLED = "disabled"
NO_NAME = "no name"


@dataclass(frozen=True, slots=True)
class LeftOut:
    """A live step the layout does not carry, and why (`disabled`, `no name`)."""

    workspace: str
    id: str
    name: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class FileChanges:
    """What bringing a folder to the layout takes: new files, changed files, removals."""

    written: dict[str, bytes]
    changed: dict[str, bytes]
    removed: tuple[str, ...]
    unchanged: int

    @property
    def empty(self) -> bool:
        return not (self.written or self.changed or self.removed)

    def edits(self) -> dict[str, bytes | None]:
        """Every path to write (bytes) or remove (None)."""
        return {**self.written, **self.changed, **dict.fromkeys(self.removed)}


# -- names to paths ------------------------------------------------------------------------------


def is_pulled(step: PulledStep, include_disabled: bool = False) -> bool:
    """The SDK's filter: enabled, with a name (or any step with a name, `include_disabled`)."""
    return bool(step.name.strip()) and (include_disabled or step.content.enabled)


def left_out(steps: Iterable[PulledStep], include_disabled: bool = False) -> list[LeftOut]:
    """The steps the layout does not carry, by workspace and name, each with its reason."""
    out = [
        LeftOut(s.workspace, s.id, s.name, NO_NAME if not s.name.strip() else DISABLED)
        for s in steps
        if not is_pulled(s, include_disabled)
    ]
    return sorted(out, key=lambda o: (o.workspace, o.name, o.id))


def name_parts(name: str) -> list[str]:
    """`a/ b/.hidden//c` -> ["a", "b", "c"]: trimmed, without empty parts or parts with a
    leading `.` (which also removes `.` and `..`)."""
    return [p for p in (part.strip() for part in name.split("/")) if p and not p.startswith(".")]


def layout_files(
    steps: Iterable[PulledStep],
    steps_dir: str = STEPS_DIR,
    sdk_dir: str | None = SDK_DIR,
    include_disabled: bool = False,
) -> dict[str, bytes]:
    """Every file of the layout, path -> content; no `.mts` files when `sdk_dir` is None.
    `include_disabled` adds the disabled steps' step files (and no `.mts` for them).

    Raises LayoutError when two steps share a name (from one workspace or from several)."""
    chosen = sorted((s for s in steps if is_pulled(s, include_disabled)), key=lambda s: s.name)
    _check_names(chosen)
    files: dict[str, bytes] = {}
    json_names = _disambiguate(
        {s.name: _fit(step_file_name(s.name).removesuffix(SUFFIX), SUFFIX, s.name) for s in chosen}
    )
    for step in chosen:
        files[_join(steps_dir, json_names[step.name])] = render_step_file(step.name, step.content)
    if sdk_dir is not None:
        sdk_steps = [s for s in chosen if s.content.enabled and name_parts(s.name)]
        mts_paths = _disambiguate({s.name: _mts_path(s.name) for s in sdk_steps})
        for step in sdk_steps:
            if step.name in mts_paths:
                path = _join(sdk_dir, mts_paths[step.name])
                files[path] = render_mts(step, path)
    for path in files:
        check_relative(path)
    return files


def render_mts(step: PulledStep, path: str) -> bytes:
    """The SDK's file for a step; header values never end the comment or add a line."""
    try:
        updated = datetime.fromtimestamp(step.updated_at, UTC).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):  # not a time a server would send
        updated = str(step.updated_at)
    text = f"""/**
  Name:       {_header(step.name)}

  ID:         {_header(step.id)}
  Version:    {step.version}
  Path:       ./{_header(path)}
  UpdatedAt:  {updated.replace("+00:00", "Z")}

  Workspace:  {_header(step.workspace)}
*/

// @ts-nocheck

export const match = () => ({step.content.if_});

export default async (data: any) => {{
{step.content.do}
}}
"""
    return text.encode("utf-8")


def check_relative(path: str) -> None:
    """A path the layout may write: relative, no `..`/`.`/empty part, no NUL, no `.git`."""
    parts = path.split("/")
    if (
        path.startswith("/")
        or "\x00" in path
        or any(p in ("", ".", "..") or p.lower() == ".git" for p in parts)
        or any(len(p.encode("utf-8")) > MAX_FILE_NAME_BYTES for p in parts)
    ):
        raise LayoutError(f"refusing to write {path!r}: not a clean relative path")


# -- which files are syncd's ------------------------------------------------------------------


def is_managed(path: str, data: bytes, steps_dir: str = STEPS_DIR, sdk_dir: str = SDK_DIR) -> bool:
    """A file a pull or an export may change or remove."""
    if path.endswith(SUFFIX) and _under(path, steps_dir):
        return True
    if path.endswith(MTS) and _under(path, sdk_dir):
        head = data[:16384].replace(b"\r\n", b"\n")  # a checkout with autocrlf
        end = head.find(_HEADER_END)
        return head.startswith(_HEADER_START) and _HEADER_WORKSPACE in head[: max(end, 0)]
    return False


def plan_files(
    desired: Mapping[str, bytes],
    existing: Mapping[str, bytes],
    steps_dir: str = STEPS_DIR,
    sdk_dir: str = SDK_DIR,
) -> FileChanges:
    """What turns the files under the layout's folders (`existing`) into `desired`.

    Files syncd does not manage are never changed or removed: a desired path that holds one is
    a LayoutError naming it."""
    written: dict[str, bytes] = {}
    changed: dict[str, bytes] = {}
    unchanged = 0
    refused: list[str] = []
    for path, data in sorted(desired.items()):
        if path not in existing:
            written[path] = data
        elif not is_managed(path, existing[path], steps_dir, sdk_dir):
            refused.append(path)
        elif existing[path] == data:
            unchanged += 1
        else:
            changed[path] = data
    if refused:
        raise LayoutError(
            "these files were not written by syncd or the workspace SDK, and a step would "
            f"overwrite them; move them away: {', '.join(refused)}"
        )
    removed = tuple(
        sorted(
            path
            for path, data in existing.items()
            if path not in desired and is_managed(path, data, steps_dir, sdk_dir)
        )
    )
    return FileChanges(written, changed, removed, unchanged)


# -- helpers --------------------------------------------------------------------------------------


def _check_names(steps: list[PulledStep]) -> None:
    owners: dict[str, list[str]] = defaultdict(list)
    problems: list[str] = []
    for s in steps:
        owners[s.name].append(s.workspace)
        if len(s.name) > MAX_NAME_CHARS or "\x00" in s.name:
            problems.append(f"step {s.name[:80]!r}: name over {MAX_NAME_CHARS} chars or has NUL")
    for name, workspaces in owners.items():
        if len(workspaces) > 1:
            where = ", ".join(sorted(workspaces))
            problems.append(
                f"step {name!r} is in workspaces {where}; a name may come from one workspace only"
            )
    if problems:
        raise LayoutError("; ".join(problems))


def _mts_path(name: str) -> str:
    parts = name_parts(name)
    folders = [_fit(p, "", p) for p in parts[:-1]]
    return "/".join([*folders, _fit(parts[-1], MTS, parts[-1])])


def _disambiguate(paths: dict[str, str]) -> dict[str, str]:
    """Name -> path, where paths that several names share (ignoring case and Unicode
    normalization, for macOS and Windows checkouts: `café` in NFC and in NFD are one file name
    there) or that are also a folder of another path get the name's hash."""
    by_key: dict[str, list[str]] = defaultdict(list)
    for name, path in paths.items():
        by_key[_file_key(path)].append(name)
    folders = {
        "/".join(_file_key(path).split("/")[:i])
        for path in paths.values()
        for i in range(1, path.count("/") + 1)
    }
    out = dict(paths)
    for key, names in by_key.items():
        if len(names) > 1 or key in folders:
            for name in names:
                out[name] = _with_hash(paths[name], name)
    return out


def _file_key(path: str) -> str:
    """What a case-insensitive, normalization-insensitive file system sees of a path."""
    return unicodedata.normalize("NFC", path).casefold()


def _with_hash(path: str, name: str) -> str:
    folder, _, file = path.rpartition("/")
    suffix = SUFFIX if file.endswith(SUFFIX) else MTS
    stem = file.removesuffix(suffix)
    tag = "~" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    fitted = _fit(stem, tag + suffix, name)
    return f"{folder}/{fitted}" if folder else fitted


def _fit(stem: str, suffix: str, key: str) -> str:
    """`stem + suffix`, shortened (with a hash of `key`) to fit in one file name."""
    if len((stem + suffix).encode("utf-8")) <= MAX_FILE_NAME_BYTES:
        return stem + suffix
    tag = "~" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
    room = MAX_FILE_NAME_BYTES - len((tag + suffix).encode("utf-8"))
    cut = stem.encode("utf-8")[:room].decode("utf-8", "ignore")
    return cut + tag + suffix


def _join(folder: str, path: str) -> str:
    folder = folder.strip("/")
    return f"{folder}/{path}" if folder else path


def _under(path: str, folder: str) -> bool:
    folder = folder.strip("/")
    return not folder or path.startswith(folder + "/")


def _header(text: str) -> str:
    """One line of the header comment: line breaks written as `\\n`, `*/` as `*\\/`."""
    return text.replace("*/", "*\\/").replace("\r", "\\r").replace("\n", "\\n")
