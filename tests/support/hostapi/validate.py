"""One validating core for the three fake hosts: a request is matched to an operation of the
host's published API description (OpenAPI 3 for GitHub, Swagger 2 for Gitea and for the GitLab
subset written from its docs) and its path parameters, query parameters and JSON body are
checked against their schemas with `jsonschema`.

Stricter than a real host on one point, on purpose: a query parameter the operation does not
declare is a violation (a real host ignores it; for us it is a typo or a wrong API version).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

# jsonschema comes with check-jsonschema (a test dependency); it ships no type stubs.
from jsonschema import Draft4Validator  # type: ignore[import-untyped]

SPECS = Path(__file__).parent / "specs"


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # path, query, header
    required: bool
    schema: dict[str, Any]


@dataclass
class Operation:
    id: str
    method: str
    template: str
    params: list[Param]
    body: dict[str, Any] | None  # the request body's JSON schema
    body_required: bool
    raw: dict[str, Any] = field(repr=False)  # the operation as the description has it
    pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        self.pattern = re.compile(f"^{regex}$")


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SPECS / name).read_text())
    return doc


def openapi3(doc: dict[str, Any], prefix: str = "") -> list[Operation]:
    """Operations of an OpenAPI 3 description whose $refs are inlined (as github.json is)."""
    ops = []
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            params = [
                Param(p["name"], p["in"], bool(p.get("required")), p.get("schema", {}))
                for p in op.get("parameters", [])
            ]
            body = op.get("requestBody")
            schema = body["content"]["application/json"]["schema"] if body else None
            ops.append(
                Operation(
                    op["operationId"],
                    method.upper(),
                    prefix + path,
                    params,
                    schema,
                    bool(body and body.get("required")),
                    op,
                )
            )
    return ops


_SWAGGER_KEYS = ("type", "format", "enum", "items", "minimum", "maximum", "pattern")


def swagger2(doc: dict[str, Any], tighten: dict[str, Any] | None = None) -> list[Operation]:
    """Operations of a Swagger 2 description; `tighten` overrides definitions (see gitea.py)."""
    definitions = {**doc.get("definitions", {}), **(tighten or {})}
    ops = []
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            params, body, required = [], None, False
            for p in op.get("parameters", []):
                if p["in"] == "body":
                    body = {**p["schema"], "definitions": definitions}
                    required = bool(p.get("required"))
                else:
                    schema = {k: p[k] for k in _SWAGGER_KEYS if k in p}
                    params.append(Param(p["name"], p["in"], bool(p.get("required")), schema))
            ops.append(
                Operation(
                    op["operationId"],
                    method.upper(),
                    doc.get("basePath", "") + path,
                    params,
                    body,
                    required,
                    op,
                )
            )
    return ops


@dataclass
class Checked:
    """A request matched to its operation: its decoded parameters and body, or what is wrong."""

    operation: Operation | None
    path: dict[str, Any]
    query: dict[str, Any]
    body: Any
    errors: list[str]


def _coerce(value: str, schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if kind == "integer" and re.fullmatch(r"-?\d+", value):
        return int(value)
    if kind == "number":
        try:
            return float(value)
        except ValueError:
            return value
    if kind == "boolean" and value in ("true", "false"):
        return value == "true"
    return value


def _check(name: str, value: Any, schema: dict[str, Any], errors: list[str]) -> None:
    for error in Draft4Validator(schema).iter_errors(value):
        errors.append(f"{name}: {error.message}")


def check(
    operations: list[Operation],
    method: str,
    target: str,
    headers: dict[str, str],
    raw_body: bytes,
) -> Checked:
    """Match and validate one request (`target` as sent: path and query, percent-encoded)."""
    parts = urlsplit(target)
    errors: list[str] = []
    for op in operations:
        found = op.pattern.match(parts.path)
        if found and op.method == method:
            break
    else:
        return Checked(None, {}, {}, None, [f"no operation {method} {parts.path} in the API"])
    path_values: dict[str, Any] = {}
    query_values: dict[str, Any] = {}
    sent_query = dict(parse_qsl(parts.query, keep_blank_values=True))
    declared = {p.name for p in op.params if p.where == "query"}
    for extra in sorted(set(sent_query) - declared):
        errors.append(f"query parameter {extra!r} is not one of {op.id}'s")
    lowered = {k.lower(): v for k, v in headers.items()}
    for p in op.params:
        if p.where == "path":
            value = _coerce(unquote(found.group(p.name)), p.schema)
            _check(f"path parameter {p.name}", value, p.schema, errors)
            path_values[p.name] = value
        elif p.where == "query":
            if p.name in sent_query:
                value = _coerce(sent_query[p.name], p.schema)
                _check(f"query parameter {p.name}", value, p.schema, errors)
                query_values[p.name] = value
            elif p.required:
                errors.append(f"query parameter {p.name} is required")
        elif p.where == "header" and p.required and p.name.lower() not in lowered:
            errors.append(f"header {p.name} is required")
    body: Any = None
    if raw_body:
        if op.body is None:
            errors.append(f"{op.id} takes no request body")
        elif not lowered.get("content-type", "").startswith("application/json"):
            errors.append("the body is not sent as application/json")
        else:
            try:
                body = json.loads(raw_body)
            except ValueError as e:
                errors.append(f"the body is not JSON: {e}")
            else:
                _check("body", body, op.body, errors)
    elif op.body_required:
        errors.append(f"{op.id} requires a body")
    return Checked(op, path_values, query_values, body, errors)
