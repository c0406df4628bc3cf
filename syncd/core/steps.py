"""The workspace-sdk export format: parse and validate step files, and write them. Pure.

A step file is a JSON object with `name` and `content` (`if`, `do`, `enabled`, `valid`).
Every failure names the file, because the person reading it has to go and fix that file.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from syncd.core.errors import StepFileError
from syncd.core.model import Step, StepContent
from syncd.core.refs import MODE_SUBMODULE, MODE_SYMLINK

SUFFIX = ".step.json"
MAX_FILE_BYTES = 1024 * 1024
# Twice the largest estates syncd is sized for (100,000 steps in one workspace); a commit with
# more is refused by its count, before any file is read.
MAX_STEPS = 200_000
MAX_NAME_CHARS = 1024
# Error messages list at most this many files, so a broken 100,000-file repo gives a readable error.
MAX_LISTED_ERRORS = 20

_SEPARATORS = re.compile(r"[/ ]+")


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A file in the tree under the workspace path, known before its content is read."""

    path: str
    mode: int
    size: int


def step_file_name(name: str) -> str:
    """`and-done/greeting done` -> `and-done__greeting__done.step.json`."""
    return _SEPARATORS.sub("__", name) + SUFFIX


def check_entries(entries: Sequence[FileEntry]) -> None:
    """Refuse what must never be read: symlinks, submodules, oversized files, too many steps."""
    check_count(len(entries))
    problems = [p for p in map(entry_problem, entries) if p is not None]
    if problems:
        raise StepFileError(summarize(problems))


def check_count(count: int) -> None:
    if count > MAX_STEPS:
        raise StepFileError(f"{count} step files, over the limit of {MAX_STEPS}")


def entry_problem(e: FileEntry) -> str | None:
    """Why this file must not be read (its name, mode or size), or None."""
    if not _is_text(e.path):
        return f"{_printable(e.path)}: the file name is not UTF-8"
    if e.mode == MODE_SYMLINK:
        return f"{e.path}: is a symlink; step paths must be plain files"
    if e.mode == MODE_SUBMODULE:
        return f"{e.path}: is a submodule; step paths must be plain files"
    if e.size > MAX_FILE_BYTES:
        return f"{e.path}: is {e.size} bytes, over the limit of {MAX_FILE_BYTES}"
    return None


def check_sizes(files: Iterable[tuple[str, int]]) -> None:
    """Refuse files over MAX_FILE_BYTES by their size alone, before any is read."""
    problems = [
        f"{path}: is {size} bytes, over the limit of {MAX_FILE_BYTES}"
        for path, size in files
        if size > MAX_FILE_BYTES
    ]
    if problems:
        raise StepFileError(summarize(problems))


def parse_step_file(path: str, data: bytes) -> tuple[str, StepContent]:
    """Parse one step file; StepFileError names the file and what is wrong with it."""
    if len(data) > MAX_FILE_BYTES:
        raise StepFileError(f"{path}: is {len(data)} bytes, over the limit of {MAX_FILE_BYTES}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise StepFileError(f"{path}: is not UTF-8 (byte {e.start})") from e
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as e:
        raise StepFileError(f"{path}: duplicate key {e.key!r}: the file reads two ways") from e
    except json.JSONDecodeError as e:
        raise StepFileError(f"{path}: is not valid JSON: {e.msg} at line {e.lineno}") from e
    except RecursionError as e:
        raise StepFileError(f"{path}: is not valid JSON: nested too deeply") from e
    except ValueError as e:  # an integer of more than 4,300 digits
        raise StepFileError(f"{path}: is not valid JSON: a number is too long") from e
    if not isinstance(doc, dict):
        raise StepFileError(f"{path}: must be a JSON object, got {_type_name(doc)}")
    name = doc.get("name")
    if not isinstance(name, str):
        raise StepFileError(f"{path}: `name` must be a string, got {_type_name(name)}")
    if not name.strip():
        raise StepFileError(f"{path}: `name` is empty")
    if len(name) > MAX_NAME_CHARS or "\x00" in name:
        raise StepFileError(f"{path}: `name` is over {MAX_NAME_CHARS} characters or holds NUL")
    content = doc.get("content")
    if not isinstance(content, dict):
        raise StepFileError(f"{path}: `content` must be an object, got {_type_name(content)}")
    for key in ("if", "do"):
        if not isinstance(content.get(key), str):
            got = _type_name(content.get(key))
            raise StepFileError(f"{path}: `content.{key}` must be a string, got {got}")
    texts = {"name": name, "content.if": content["if"], "content.do": content["do"]}
    texts |= {k: doc[k] for k in ("json", "hash") if isinstance(doc.get(k), str)}
    for key, value in texts.items():
        if not _is_text(value):
            raise StepFileError(f"{path}: `{key}` holds a lone surrogate escape (\\ud800-\\udfff)")
    for key in ("enabled", "valid"):
        if key in content and not isinstance(content[key], bool):
            got = _type_name(content[key])
            raise StepFileError(f"{path}: `content.{key}` must be true or false, got {got}")
    if "json" in doc and "hash" in doc:
        _check_hash(path, doc["json"], doc["hash"])
    parsed = StepContent.from_dict(content)
    if "json" in doc:
        _check_json(path, doc["json"], parsed)
    return name, parsed


def parse_step(path: str, blob: str, data: bytes) -> Step:
    name, content = parse_step_file(path, data)
    return Step(name=name, content=content, path=path, blob=blob)


# How a reading turns a file into a step: (path, blob, read) -> Step, StepFileError if bad.
StepParser = Callable[[str, str, Callable[[str], bytes]], Step]


def read_step(path: str, blob: str, read: Callable[[str], bytes]) -> Step:
    """Read a blob and parse it (ParsedSteps.parse does the same through its cache)."""
    return parse_step(path, blob, read(blob))


def check_unique(steps: Iterable[Step]) -> None:
    """Two files with the same step name fail the sync; the error names both files."""
    problems = duplicate_problems(steps)
    if problems:
        raise StepFileError(summarize(problems))


def duplicate_problems(steps: Iterable[Step]) -> list[str]:
    seen: dict[str, str] = {}
    problems: list[str] = []
    for s in steps:
        first = seen.setdefault(s.name, s.path)
        if first != s.path:
            problems.append(duplicate_problem(first, s))
    return problems


def duplicate_problem(first_path: str, step: Step) -> str:
    return f"{first_path} and {step.path}: both define step {step.name!r}"


class Problems:
    """Every wrong step file of one reading, so that one run names them all (not one per push).

    `parse` keeps reading after a bad file; `raise_if_any` ends the reading with all of them.
    """

    def __init__(self) -> None:
        self.found: list[str] = []

    def add(self, problem: str | None) -> bool:
        """Record a problem; True when there was one."""
        if problem is not None:
            self.found.append(problem)
        return problem is not None

    def parse(
        self, path: str, blob: str, read: Callable[[str], bytes], parse: StepParser = read_step
    ) -> Step | None:
        try:
            return parse(path, blob, read)
        except StepFileError as e:
            self.found.append(str(e))
            return None

    def raise_if_any(self) -> None:
        if self.found:
            # In path order, so a duplicate name sits among the other problems of its files.
            raise StepFileError(summarize(sorted(self.found)))


def render_step_file(name: str, content: StepContent) -> bytes:
    """The file syncd writes for a step: `name`, `content`, and `json`/`hash` over content."""
    compact = content.canonical_json()
    doc: dict[str, Any] = {
        "name": name,
        "content": content.to_dict(),
        "json": compact,
        "hash": hashlib.sha256(compact.encode("utf-8")).hexdigest(),
    }
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


class _DuplicateKey(ValueError):
    """A key repeated in one JSON object of a step file (raised from inside json.loads)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are unique: with a repeated key (`name`, `do`), a reviewer
    and a parser that keeps the last one read different files."""
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise _DuplicateKey(key)
        doc[key] = value
    return doc


def _check_json(path: str, json_text: object, content: StepContent) -> None:
    """`json` is the canonical form of `content`; a file where they differ is refused, since
    a tool reading `json` and syncd reading `content` would apply different steps."""
    if not isinstance(json_text, str):
        raise StepFileError(f"{path}: `json` must be a string, got {_type_name(json_text)}")
    canonical = content.canonical_json()
    if json_text != canonical:
        raise StepFileError(
            f"{path}: `json` disagrees with `content`: `json` is {_clip(json_text)},"
            f" `content` is {_clip(canonical)}"
        )


def _clip(text: str, limit: int = 200) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _check_hash(path: str, json_text: object, hash_text: object) -> None:
    if not isinstance(json_text, str) or not isinstance(hash_text, str):
        raise StepFileError(f"{path}: `json` and `hash` must be strings")
    actual = hashlib.sha256(json_text.encode("utf-8")).hexdigest()
    if actual != hash_text.lower():
        raise StepFileError(
            f"{path}: is corrupt: `hash` {hash_text[:16]!r}... is not the sha256 of `json`"
            f" ({actual[:16]}...)"
        )


def _is_text(text: str) -> bool:
    """False for strings with lone surrogates (git file names that are not UTF-8, JSON
    escapes like \\ud800): they cannot be stored or shown as text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(path: str) -> str:
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def summarize(problems: list[str]) -> str:
    """One line for every problem, up to MAX_LISTED_ERRORS, then how many more."""
    shown = problems[:MAX_LISTED_ERRORS]
    more = len(problems) - len(shown)
    head = f"{len(problems)} step files are wrong: " if len(problems) > 1 else ""
    return head + "; ".join(shown) + (f"; and {more} more" if more else "")


def _type_name(value: object) -> str:
    if value is None:
        return "nothing"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )
