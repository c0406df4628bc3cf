"""The OpenAPI document: well formed, every route of the app, every $ref resolves, and the
schemas name exactly the fields the code returns."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import syncd
from syncd.core.layout import LeftOut
from syncd.core.model import (
    LiveStep,
    Origin,
    Plan,
    Run,
    RunResult,
    StepChange,
    StepContent,
    Trigger,
)
from syncd.http.openapi import openapi_document

WS = "/api/v1/workspaces/{id}"
# (method, path, bearer scope or None), as syncd/api.py routes them.
ROUTES = [
    ("post", "/hooks", None),
    ("post", "/hooks/{provider}", None),
    ("get", "/api/v1/workspaces", "read"),
    ("get", "/api/v1/audit", "audit"),
    ("get", WS, "read"),
    ("get", f"{WS}/diff", "read"),
    ("get", f"{WS}/preview", "read"),
    ("post", f"{WS}/sync", "sync"),
    ("post", f"{WS}/suspend", "sync"),
    ("post", f"{WS}/resume", "sync"),
    ("get", f"{WS}/runs", "read"),
    ("get", "/api/v1/runs/{run_id}", "read"),
    ("get", f"{WS}/wait", "read"),
    ("get", "/api/v1/replicas", "read"),
    ("get", f"{WS}/steps", "read"),
    ("get", f"{WS}/steps/{{name}}", "read"),
    ("put", f"{WS}/steps/{{name}}", "write"),
    ("delete", f"{WS}/steps/{{name}}", "write"),
    ("post", f"{WS}/export", "export"),
    ("get", f"{WS}/health", "read"),
    ("get", f"{WS}/badge.svg", None),
    ("get", "/metrics", None),
    ("get", "/healthz", None),
    ("get", "/readyz", None),
    ("get", "/openapi.json", None),
]
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return openapi_document()


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def schema(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = doc["components"]["schemas"][name]
    return found


def test_json_serializable_cached_and_versioned(doc: dict[str, Any]) -> None:
    assert openapi_document() is doc
    assert json.loads(json.dumps(doc)) == doc
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["version"] == syncd.__version__


def test_every_route_and_only_those(doc: dict[str, Any]) -> None:
    documented = sorted((m, p) for m, p, _ in operations(doc))
    assert documented == sorted((m, p) for m, p, _ in ROUTES)


def test_the_app_routes_what_the_document_lists() -> None:
    api = pytest.importorskip("syncd.http.routes")
    app = api.create_app(None)  # the routes are built without touching the runtime
    served = {
        (method.lower(), re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path))
        for route in app.routes
        for method in route.methods
        if method != "HEAD"
    }
    assert served == {(m, p) for m, p, _ in ROUTES}


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_the_app_serves_the_document() -> None:
    pytest.importorskip("httpx")
    api = pytest.importorskip("syncd.http.routes")
    from starlette.testclient import TestClient

    response = TestClient(api.create_app(None)).get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == json.loads(json.dumps(openapi_document()))


def test_security_and_scopes(doc: dict[str, Any]) -> None:
    scheme = doc["components"]["securitySchemes"]["bearer"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    for method, path, scope in ROUTES:
        op = doc["paths"][path][method]
        if scope is None:
            assert op["security"] == [], (method, path)
            assert "401" not in op["responses"] or path.startswith("/hooks")
        else:
            assert op["security"] == [{"bearer": []}], (method, path)
            assert f"`{scope}` scope" in op["description"]
            assert {"401", "403"} <= set(op["responses"]), (method, path)


def test_path_parameters_are_declared(doc: dict[str, Any]) -> None:
    for method, path, op in operations(doc):
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"\{(\w+)\}", path)), (method, path)
        assert all(p["required"] for p in op.get("parameters", []) if p["in"] == "path")
    step = doc["paths"][f"{WS}/steps/{{name}}"]["get"]["parameters"][1]
    assert step["name"] == "name" and "%2F" in step["description"]


def test_statuses(doc: dict[str, Any]) -> None:
    def codes(method: str, path: str) -> set[str]:
        return set(doc["paths"][path][method]["responses"])

    assert {"200", "202", "400", "404", "413", "422", "503", "504"} <= codes("post", f"{WS}/sync")
    assert {"200", "400", "401", "404", "413", "503"} <= codes("post", "/hooks/{provider}")
    assert "404" not in codes("post", "/hooks")
    assert {"200", "404", "422"} <= codes("put", f"{WS}/steps/{{name}}")
    assert "204" in codes("delete", f"{WS}/steps/{{name}}")
    assert {"200", "503"} <= codes("get", "/readyz")
    assert "502" in codes("get", f"{WS}/diff")
    assert {"200", "400", "404", "409", "422", "502"} <= codes("post", f"{WS}/export")
    assert "text/plain" in doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    busy = doc["components"]["responses"]["503"]
    assert "Retry-After" in busy["headers"]


def test_every_ref_resolves(doc: dict[str, Any]) -> None:
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        node: Any = doc
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, ref
            node = node[part]


def test_providers_match_the_webhook_module(doc: dict[str, Any]) -> None:
    from syncd import webhooks

    params = doc["paths"]["/hooks/{provider}"]["post"]["parameters"]
    assert params[0]["schema"]["enum"] == list(webhooks.PROVIDERS)


def assert_shape(doc: dict[str, Any], name: str, value: dict[str, Any]) -> None:
    """The schema lists exactly the keys the code returns, all required, none closed."""
    s = schema(doc, name)
    assert set(s["properties"]) == set(value), name
    assert set(s["required"]) == set(value), name
    assert s.get("additionalProperties", True) is not False, name


def test_schemas_match_the_models(doc: dict[str, Any]) -> None:
    content = StepContent("true", "echo", enabled=False)
    run = Run("r1", "ws", Trigger.MANUAL, None, RunResult.PLANNED, 1.0)
    step = LiveStep("s1", "a/b", content, 2, content.content_hash(), 3.0, Origin.OUTSIDE)
    change = StepChange("create", "a/b", None, content)
    assert_shape(doc, "Run", run.to_dict())
    assert_shape(doc, "Step", step.to_dict())
    assert_shape(doc, "StepContent", content.to_dict())
    assert_shape(doc, "StepChange", change.to_dict())
    plan = {"workspace": "ws", "revision": "abc", **Plan(creates=(change,)).to_dict()}
    assert_shape(doc, "Plan", plan)
    previewing = pytest.importorskip("syncd.sync.previewing")
    from syncd.service.views import preview_view
    from tests.support.fakes import workspace

    for planned in (Plan(creates=(change,)), None):
        preview = previewing.Preview("ws", "abc", planned, "refused", "alice")
        assert_shape(doc, "Preview", preview_view(workspace("ws"), preview))
    assert_shape(doc, "Error", {"error": "x", "detail": None})
    export = pytest.importorskip("syncd.sync.export")
    skipped = (LeftOut("ws", "s1", "off", "disabled"),)
    result = export.ExportResult("abc", "b", 2, True, skipped).to_dict()
    assert_shape(doc, "ExportResult", result)
    assert_shape(doc, "LeftOutStep", result["left_out"][0])
    # Nullable fields say so.
    for field in ("revision", "finished_at", "error"):
        assert "null" in schema(doc, "Run")["properties"][field]["type"]
    for field in ("before", "after"):
        assert {"type": "null"} in schema(doc, "StepChange")["properties"][field]["anyOf"]


def test_workspace_schema_matches_the_view(doc: dict[str, Any]) -> None:
    config = pytest.importorskip("syncd.config")
    from syncd.core.model import Mode, SyncState
    from syncd.service.views import workspace_view

    ws = config.WorkspaceConfig(
        id="1",
        name="prod",
        tags=("prod",),
        mode=Mode.MANUAL,
        source=config.SourceConfig("https://git.example.com/a.git"),
        poll_interval=30.0,
        allow_empty=False,
        notify=(),
        file=Path("syncd.yaml"),
    )
    view = workspace_view(ws, SyncState("1"), None)
    assert_shape(doc, "Workspace", view)
    assert_shape(doc, "Source", view["source"])


def test_sync_result_and_health_schemas_match_the_views(doc: dict[str, Any]) -> None:
    from syncd.core.model import Health, HealthRecord, SyncState
    from syncd.service.views import sync_result_view
    from syncd.sync.engine import Outcome
    from tests.support.fakes import workspace

    run = Run("r1", "ws", Trigger.MANUAL, "abc", RunResult.SUCCEEDED, 1.0, 2.0)
    outcome = Outcome(run, None, SyncState("ws", pinned_revision="abc"))
    answer = sync_result_view(workspace("ws"), outcome)
    assert_shape(doc, "SyncResult", answer)
    assert answer["suspended"] is True and answer["pinned_revision"] == "abc"
    assert_shape(doc, "WorkspaceHealth", HealthRecord("ws").to_dict())
    assert schema(doc, "HealthStatus")["enum"] == [h.value for h in Health]


def test_replica_schema_matches_the_view(doc: dict[str, Any]) -> None:
    import asyncio

    from syncd.runs.replicas import LocalCoordinator
    from syncd.service.views import replica_view

    (replica,) = asyncio.run(LocalCoordinator(holds=lambda: ["ws"]).replicas())
    answer = replica_view(replica)
    assert_shape(doc, "Replica", answer)
    assert answer["holds"] == ["ws"] and answer["this"] is True and answer["alive"] is True
    assert set(schema(doc, "ReplicaList")["properties"]) == {"shared", "replicas"}


def test_health_schema_matches_the_api(doc: dict[str, Any], tmp_path: Path) -> None:
    from syncd.config import WebhookConfig
    from syncd.git import GitSource
    from syncd.service.workspaces import Workspaces
    from syncd.sync.engine import Engine
    from tests.support.fakes import FakeGit, FakeStore, config, workspace

    ws = workspace("1")
    store = FakeStore()
    store.put_outside("1", "off", StepContent("true", "x()", enabled=False, valid=False))
    cfg = config(ws, webhooks={"github": WebhookConfig(secrets=())})
    # Health reads only the store and the config; the git source is never opened.
    service = Workspaces(lambda: cfg, store, GitSource(tmp_path), Engine(store, FakeGit()))
    health = service.health(ws)
    assert_shape(doc, "Health", health)
    assert health["changed_outside_git"] == health["invalid_steps"] == ["off"]
    reporter = pytest.importorskip("syncd.report.reporter")
    failed = reporter.ReportFailure("github", "status", "HTTP 500", 1.0).to_dict()
    assert_shape(doc, "ReportFailure", failed)


def test_valid_per_openapi_spec_validator(doc: dict[str, Any]) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(json.loads(json.dumps(doc)))


def test_every_operation_has_a_unique_operation_id(doc: dict[str, Any]) -> None:
    ids = [op.get("operationId") for _, _, op in operations(doc)]
    assert all(isinstance(i, str) and re.fullmatch(r"[a-z][A-Za-z]+", i) for i in ids), ids
    assert len(set(ids)) == len(ids) == len(ROUTES)
