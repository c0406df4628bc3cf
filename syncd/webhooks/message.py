"""A webhook request's headers and body, read without trusting them.

Pure. Headers are a mapping with lower-case keys; the body is bytes that may hold anything.
Whatever they hold ends in a value or in MalformedPayload naming the field, never in another
exception.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from syncd.webhooks.errors import MalformedPayload


def _fast_json() -> Callable[[bytes], Any]:
    """orjson's loads where it is installed (several times faster on a push payload), else
    the standard library's. Either way a body it refuses goes the slow path for the message."""
    try:
        import orjson  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # pragma: no cover - orjson is a dependency; a wheel may be missing
        # Decoded first: given bytes, json.loads would also take UTF-16 and UTF-32.
        return lambda body: json.loads(body.decode("utf-8"))
    loads: Callable[[bytes], Any] = orjson.loads
    return loads


fast_loads = _fast_json()
_JSON_TYPES = frozenset(("", "application/json", "text/json"))
_BOM = b"\xef\xbb\xbf"


class Lowered(dict[str, str]):
    """Headers whose names are lower-case already: `lowered` hands them on without a copy
    (verify and parse each ask for lower-case names, once per request is enough)."""


def lowered(headers: Mapping[str, str]) -> Lowered:
    if isinstance(headers, Lowered):
        return headers
    return Lowered({k.lower(): v for k, v in headers.items()})


def header(headers: Mapping[str, str], name: str) -> str:
    """The stripped value of header `name` (lower-case); "" when absent."""
    value = headers.get(name)
    return value.strip() if isinstance(value, str) else ""


def raw(value: str) -> bytes:
    """A header's bytes as received: Starlette decodes header values as latin-1."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return utf8(value)


def utf8(text: str) -> bytes:
    """UTF-8 bytes of any str, even one holding lone surrogates (as os.environ can)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def bad(message: str) -> MalformedPayload:
    return MalformedPayload(message)


# --- the body ---------------------------------------------------------------------------------


def load_payload(headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """The JSON object the body holds, sent as JSON or as a form's `payload` field."""
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    # The common case, a JSON object in plain UTF-8, in one call; anything else (a BOM, a
    # form, bad bytes, bad JSON, a non-object) takes the careful path below, which names the
    # problem exactly as before.
    if media_type in _JSON_TYPES and not body.startswith(_BOM):
        try:
            payload = fast_loads(body)
        except (ValueError, RecursionError):
            pass
        else:
            if isinstance(payload, dict):
                return payload
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
    # partition, not split: no list per call (a push payload is read a dozen fields deep).
    key, dot, rest = path.partition(".")
    while True:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
        if not dot:
            return obj
        key, dot, rest = rest.partition(".")


def required_str(obj: Any, path: str, within: str = "") -> str:
    """The string at path; MalformedPayload naming the field (within + path) when missing."""
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
    """The non-empty strings among values, in order and without repeats; else name `required`."""
    found = [v for v in values if isinstance(v, str) and v.strip()]
    if not found:
        raise bad(f"payload field {required} is missing: no repository URL in the payload")
    return tuple(dict.fromkeys(found))


def urls_at(obj: Any, paths: tuple[str, ...], *, required: str) -> tuple[str, ...]:
    return urls([field(obj, p) for p in paths], required=required)


def urls_in(obj: Any, parent: str, keys: tuple[str, ...], *, required: str) -> tuple[str, ...]:
    """`urls_at` for fields of one object: parent is looked up once, not once a key."""
    found = field(obj, parent)
    return urls([found.get(k) for k in keys] if isinstance(found, dict) else [], required=required)
