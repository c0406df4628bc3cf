"""Log lines as logfmt text (default) or JSON lines, with secrets scrubbed on the way out.

A log call names an event and gives its fields apart from it, so that tools read them as keys:

    log.warning("sync failed", extra=fields(workspace=ws.id, run=run.id, error=run.error))

Text:  ts=2026-11-29T23:30:00.123Z level=warning logger=syncd.scheduler event="sync failed" ...
JSON:  {"ts": "2026-11-29T23:30:00.123Z", "level": "warning", ..., "event": "sync failed", ...}

Both formats are written here with the standard library: a JSON object is `json.dumps`, and
logfmt is keys and JSON-quoted values where a value needs quoting, which logfmt parsers read.
A structured-logging library would add a second logging API next to the standard one that
uvicorn and every other library log through; these two formatters cover both at once.

Every string value and every finished line goes through `scrub`, whatever its logger.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from syncd.core.times import rfc3339

FIELDS = "syncd_fields"  # the LogRecord attribute that carries an event's fields
_BASE = ("ts", "level", "logger", "event")

MIN_SECRET = 4  # shorter values are not secrets worth a mask (and would mask half of a line)
# Up to this many secrets, each is looked for in turn; past it, by their first characters.
FEW_SECRETS = 32


@dataclass(frozen=True)
class _Secrets:
    """The registered values, longest first, and each by its first MIN_SECRET characters.
    Replaced whole when a value is added: a thread that is scrubbing keeps the one it read."""

    values: tuple[str, ...] = ()
    by_head: dict[str, tuple[str, ...]] = field(default_factory=dict)


_secrets = _Secrets()
_registering = threading.Lock()  # two registrations at once must not lose either's values


def register_secrets(values: Iterable[str]) -> None:
    """Values that must never reach a log line, whatever code path tries to print them."""
    global _secrets
    added = {v for v in values if v and len(v) >= MIN_SECRET}
    with _registering:
        if added <= set(_secrets.values):
            return
        every = sorted(added | set(_secrets.values), key=lambda v: (-len(v), v))
        by_head: dict[str, list[str]] = {}
        for value in every:
            by_head.setdefault(value[:MIN_SECRET], []).append(value)
        _secrets = _Secrets(tuple(every), {head: tuple(vs) for head, vs in by_head.items()})


def scrub(text: str) -> str:
    """`text` with every registered secret in it masked: each stretch of the text that one or
    more secrets cover (overlapping ones too) becomes one `***`. With many secrets (a token per
    remote, at thousands of workspaces) the text's own character windows pick the candidates:
    a line costs the same whatever the number of secrets."""
    secrets = _secrets
    if len(secrets.values) <= FEW_SECRETS:
        candidates: Iterable[str] = secrets.values
    else:
        windows = {text[i : i + MIN_SECRET] for i in range(len(text) - MIN_SECRET + 1)}
        heads = secrets.by_head
        candidates = [v for head in windows & heads.keys() for v in heads[head]]
    spans = []
    for secret in candidates:
        at = text.find(secret)
        while at != -1:
            spans.append((at, at + len(secret)))
            at = text.find(secret, at + 1)
    if not spans:
        return text
    out, done = [], 0
    for start, end in sorted(spans):
        if start > done:
            out += [text[done:start], "***"]
        elif not out:
            out.append("***")
        done = max(done, end)
    return "".join(out) + text[done:]


def fields(**values: object) -> dict[str, Any]:
    """The `extra=` of a log call: the event's fields, in the order given; None is left out."""
    return {FIELDS: {k: v for k, v in values.items() if v is not None}}


def _value(value: object) -> object:
    """A field as JSON has it: numbers and booleans stay, the rest become scrubbed text."""
    if isinstance(value, bool | int | float):
        return value
    return scrub(str(_masked(value)))


def _masked(value: object, depth: int = 0) -> object:
    """The strings inside a list, tuple or dict field scrubbed before it becomes text: its repr
    escapes quotes and backslashes, and would hide a secret that holds one from `scrub`."""
    if isinstance(value, str):
        return scrub(value)
    if depth >= 8:
        return value
    # Exactly these types: a subclass (a named tuple) may not be built from an iterable.
    if isinstance(value, list | tuple) and type(value) in (list, tuple):
        return type(value)(_masked(v, depth + 1) for v in value)
    if isinstance(value, dict) and type(value) is dict:
        return {_masked(k, depth + 1): _masked(v, depth + 1) for k, v in value.items()}
    return value


def _document(record: logging.LogRecord, formatter: logging.Formatter) -> dict[str, object]:
    doc: dict[str, object] = {
        "ts": rfc3339(record.created),
        "level": record.levelname.lower(),
        "logger": record.name,
        "event": scrub(record.getMessage()),
    }
    extra: Mapping[str, object] = getattr(record, FIELDS, None) or {}
    for key, value in extra.items():
        doc[key if key not in _BASE else f"field_{key}"] = _value(value)
    if record.exc_info:
        doc["exc"] = scrub(formatter.formatException(record.exc_info))
    return doc


def _logfmt(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if text and all(c.isprintable() and c not in ' ="\\' for c in text):
        return text
    return json.dumps(text, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """logfmt: key=value pairs, quoted and escaped where needed; one line per record."""

    def format(self, record: logging.LogRecord) -> str:
        doc = _document(record, self)
        return scrub(" ".join(f"{k}={_logfmt(v)}" for k, v in doc.items()))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, one key per field."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(json.dumps(_document(record, self), ensure_ascii=False))


def setup_logging(fmt: str = "text", level: str = "info", stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # watchfiles logs every change it sees at INFO; a log file next to the config would
    # feed itself.
    # httpx logs every request to a git host's API at INFO: syncd logs the reports that fail.
    for noisy in ("uvicorn.access", "watchfiles", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
