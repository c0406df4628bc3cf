"""The OpenAPI 3.1 document of syncd's HTTP API (served at /openapi.json): its operations and
shared responses; the component schemas and parameters are in `syncd.http.openapi_schemas`.
Pure: the document is built from constants, once.

Written by hand to say exactly what syncd/http/routes.py does: each operation lists the
statuses its handler can really answer with. Errors are always `{"error": ..., "detail": ...}`.
"""

from __future__ import annotations

import functools
from typing import Any

from syncd import __version__
from syncd.http.openapi_audit import AUDIT_OPERATION_IDS, AUDIT_SCHEMAS, audit_paths
from syncd.http.openapi_schemas import (
    ID,
    INT,
    LIMIT,
    PREVIEWED,
    REVISION,
    RUN_ID,
    SCHEMAS,
    STEP,
    STR,
    TIMEOUT,
    WAIT,
    Schema,
    enum,
    param,
    ref,
)
from syncd.http.openapi_workspaces import list_operation

JSON = "application/json"
WS = "/api/v1/workspaces/{id}"


def error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """An error response: always the Error schema."""
    out = {"description": description, "content": {JSON: {"schema": ref("Error")}}}
    return out | ({"headers": headers} if headers else {})


RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": INT}}
WWW_AUTH = {"WWW-Authenticate": {"description": 'Bearer realm="syncd"', "schema": STR}}
RESPONSES = {
    "400": error("Malformed: the body is missing, not JSON or not an object; or a bad query."),
    "401": error("Missing or invalid bearer token.", WWW_AUTH),
    "403": error("The token lacks this operation's scope."),
    "404": error("No such workspace, run or step."),
    "413": error("The body is over the size limit."),
    "422": error("Well formed, but a value is not acceptable."),
    "429": error(
        "Too many reads from git remotes at once (`server.max_remote_reads`), or too many "
        "wrong tokens from this client address (no token is checked until `Retry-After` "
        "has passed); try again later.",
        RETRY_AFTER,
    ),
    "500": error("Internal error; see syncd's log."),
    "502": error("The git remote failed."),
    "503": error("The run queue is full or syncd is stopping.", RETRY_AFTER),
    "504": error("The run did not finish in time; `detail` is `{run_id}`."),
}


def ok(schema: str | Schema, description: str = "OK", media: str = JSON) -> dict[str, Any]:
    """A success response; a string names a component schema."""
    body = ref(schema) if isinstance(schema, str) else schema
    return {"description": description, "content": {media: {"schema": body}}}


def ok200(schema: str) -> dict[str, Any]:
    return {"200": ok(schema)}


def op(
    scope: str | None,
    summary: str,
    responses: dict[str, Any],
    errors: str = "",
    *params: Schema,
    body: str | None = None,
    text: str = "",
) -> dict[str, Any]:
    """One operation: `errors` names shared error responses; a `scope` needs a bearer token."""
    codes = errors.split() + (["401", "403", "429"] if scope else []) + ["500"]
    shared = {c: {"$ref": f"#/components/responses/{c}"} for c in codes}
    auth = f"Requires a bearer token with the `{scope}` scope. " if scope else ""
    out: dict[str, Any] = {
        "summary": summary,
        "description": (auth + text).strip() or "No authentication.",
        "security": [{"bearer": []}] if scope else [],
        "responses": dict(sorted((shared | responses).items())),
    }
    if scope:
        out["x-syncd-scope"] = scope
    if params:
        out["parameters"] = list(params)
    if body:  # "Name?": the body may be left out
        schema = {"schema": ref(body.rstrip("?"))}
        out["requestBody"] = {"required": not body.endswith("?"), "content": {JSON: schema}}
    return out


SIGNATURES = {
    "github": "X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>",
    "gitlab": "X-Gitlab-Token, or webhook-id, webhook-timestamp and webhook-signature",
    "gitea": "X-Forgejo-Signature, X-Gitea-Signature, X-Gogs-Signature or X-Hub-Signature-256",
    "bitbucket": "X-Hub-Signature: sha256=<hex>",
    "bitbucket-server": "X-Hub-Signature: sha256=<hex>",
    "azure-devops": "Authorization: Basic <user:secret>",
    "generic": "X-Signature: sha256=<hex>",
}


def hook(by_path: bool) -> dict[str, Any]:
    """POST /hooks/{provider} (by_path), or POST /hooks, which tells the provider by headers."""
    signed = "; ".join(f"{p}: {h}" for p, h in SIGNATURES.items())
    text = (
        "A push webhook. No bearer token: a configured secret of the provider must sign the "
        f"request ({signed}), checked before the body is parsed. 200 for a ping, an ignored "
        "event or a redelivery. 503 carries Retry-After; if the queue fills midway, `detail` "
        "is `{matched, queued}`."
    )
    responses = {
        "200": ok("HookHandled"),
        "202": ok("HookAccepted", "Accepted"),
        "400": error("Malformed headers or payload" + ("." if by_path else ", or no provider.")),
        "401": error("Bad or missing signature, or no secret configured for the provider."),
    }
    if by_path:
        responses["404"] = error("Unknown provider; `detail` is `{providers: [...]}`.")
    else:
        text += " azure-devops sends no telling header and must use /hooks/{provider}."
    result = op(None, "Receive a push webhook", responses, "413 503", text=text)
    payload = {"description": "the provider's payload: JSON, or form-encoded `payload=<json>`"}
    forms = {JSON: {"schema": payload}, "application/x-www-form-urlencoded": {}}
    result["requestBody"] = {"required": True, "content": forms}
    if by_path:
        result["parameters"] = [param("provider", "path", enum(*SIGNATURES), "the provider")]
    return result


def paths() -> dict[str, Any]:
    edit = "The workspace becomes OutOfSync; automatic mode overwrites the edit on its next sync."
    sync = {"202": ok("SyncAccepted", "Queued"), "200": ok("SyncResult", "Finished (with ?wait)")}
    ready = {
        "200": ok("ServiceStatus"),
        "503": ok(
            "Error", "Not ready: `{stopping: bool, store: why it cannot be written, or null}`"
        ),
    }
    metrics = {"200": ok(STR, "Prometheus text format", "text/plain")}
    step, gone = {"200": ok("Step")}, {"204": {"description": "Deleted"}}
    return {
        "/hooks": {"post": hook(by_path=False)},
        "/hooks/{provider}": {"post": hook(by_path=True)},
        "/api/v1/workspaces": {"get": list_operation(op)},
        WS: {"get": op("read", "A workspace", ok200("Workspace"), "404", ID)},
        f"{WS}/diff": {
            "get": op(
                "read",
                "The plan now",
                ok200("Plan"),
                "404 422 429 502",
                ID,
                text="It asks the remote for the branch head: at most `server.max_remote_reads` "
                "run at once, and one more answers 429 with Retry-After.",
            )
        },
        f"{WS}/preview": {
            "get": op(
                "read",
                "What a commit would do to the workspace now",
                ok200("Preview"),
                "400 404 429 502 503",
                ID,
                PREVIEWED,
                text="The plan of `revision` against the live steps, shaped as `/diff`'s, and "
                "whether a sync of it would apply (`would_apply`) or why not (`refused`: a bad "
                "step file, the wipe guard, an unverified signature; then the lists hold what "
                "was planned before the refusal, or nothing). Nothing is applied or recorded. "
                "404 when no such commit is known. It may fetch from the remote: at most "
                "`server.max_remote_reads` run at once, and one more answers 429.",
            )
        },
        f"{WS}/sync": {
            "post": op(
                "sync",
                "Sync now, in either mode",
                sync,
                "400 404 413 422 502 503 504",
                ID,
                WAIT,
                body="SyncRequest?",
                text="202 with the run id; with ?wait, 200 and the finished run (504 after 600 s).",
            )
        },
        f"{WS}/suspend": {
            "post": op(
                "sync",
                "Suspend automation",
                ok200("Workspace"),
                "404",
                ID,
                text="Polls, webhooks and self-heal of the workspace apply nothing by "
                "themselves (they still record what they see) until `resume`; a manual sync "
                "still applies. Kept across restarts. Answers the workspace.",
            )
        },
        f"{WS}/resume": {
            "post": op(
                "sync",
                "Resume automation and return to the branch head",
                {"202": ok("SyncAccepted", "Queued")},
                "404 503",
                ID,
                text="Ends a suspension and requests a sync to the branch head (which also "
                "ends a pin); a manual workspace only compares with the head (a planned run, "
                "trigger `poll`) and applies nothing. 202 with its run id, as `POST .../sync` "
                "answers.",
            )
        },
        f"{WS}/runs": {
            "get": op("read", "Runs, newest first", ok200("RunList"), "400 404", ID, LIMIT)
        },
        "/api/v1/runs/{run_id}": {"get": op("read", "A run", ok200("Run"), "404", RUN_ID)},
        f"{WS}/wait": {
            "get": op(
                "read",
                "Wait until a revision is applied and healthy",
                ok200("WaitResult"),
                "400 404 422 502",
                ID,
                REVISION,
                TIMEOUT,
                text="Resolves `revision` (HEAD asks the remote for the branch head), then "
                "holds the request until the workspace has applied that commit or a "
                "descendant and is Healthy, a run of it failed, or `timeout` passed; always "
                "200, `result` says which. 422 when `revision` is not a revision or not on the "
                "workspace's branch. To wait longer than one request, ask again with the "
                "`revision` the answer gives (a full sha): `syncd wait --revision` does so.",
            )
        },
        "/api/v1/replicas": {
            "get": op(
                "read",
                "The replicas sharing the store, alive or lately gone",
                ok200("ReplicaList"),
                "503",
            )
        },
        f"{WS}/steps": {"get": op("read", "Live steps", ok200("StepList"), "404", ID)},
        f"{WS}/steps/{{name}}": {
            "get": op("read", "A live step", step, "404 422", ID, STEP),
            "put": op(
                "write",
                "Edit outside git",
                step,
                "400 404 413 422",
                ID,
                STEP,
                body="StepEdit",
                text=edit,
            ),
            "delete": op("write", "Delete outside git", gone, "404 422", ID, STEP, text=edit),
        },
        f"{WS}/export": {
            "post": op(
                "export",
                "Commit the live steps to a branch and push",
                {
                    "200": ok("ExportResult"),
                    "409": error(
                        "The branch moved on meanwhile (syncd never force-pushes), or an "
                        "automatic workspace tracks it and `allow_tracked_branch` is not true."
                    ),
                },
                "400 404 413 422 502",
                ID,
                body="ExportRequest",
                text="Writes the files `syncd pull` writes (`*.step.json` under the workspace's "
                "path, and `src/steps/**.mts` beside `export/steps`) on top of the branch head, "
                "commits them with the configured author and pushes over https with the "
                "workspace's credentials. No commit when nothing changed.",
            )
        },
        f"{WS}/health": {"get": op("read", "Workspace health", ok200("Health"), "404", ID)},
        f"{WS}/badge.svg": {
            "get": op(
                None,
                "Status badge",
                {"200": ok(STR, "An SVG image of the workspace's status", "image/svg+xml")},
                "404",
                ID,
                text="No token: off by default, on for a workspace with `badge: true` in the "
                "config; 404 for any other workspace. Shows Synced, OutOfSync or Unknown, and the "
                "health when it is not Healthy.",
            )
        },
        "/metrics": {"get": op(None, "Prometheus metrics", metrics)},
        "/healthz": {"get": op(None, "Alive", ok200("ServiceStatus"))},
        "/readyz": {"get": op(None, "Ready: config loaded, store open, not stopping", ready)},
        "/openapi.json": {"get": op(None, "This document", {"200": ok({"type": "object"})})},
        **audit_paths(op),
    }


# Names client generators give the methods they write; one for every operation.
OPERATION_IDS = {
    ("post", "/hooks"): "receiveWebhook",
    ("post", "/hooks/{provider}"): "receiveProviderWebhook",
    ("get", "/api/v1/workspaces"): "listWorkspaces",
    ("get", WS): "getWorkspace",
    ("get", f"{WS}/diff"): "getWorkspaceDiff",
    ("get", f"{WS}/preview"): "previewRevision",
    ("post", f"{WS}/sync"): "syncWorkspace",
    ("post", f"{WS}/suspend"): "suspendWorkspace",
    ("post", f"{WS}/resume"): "resumeWorkspace",
    ("get", f"{WS}/runs"): "listRuns",
    ("get", "/api/v1/runs/{run_id}"): "getRun",
    ("get", f"{WS}/wait"): "waitForRevision",
    ("get", "/api/v1/replicas"): "listReplicas",
    ("get", f"{WS}/steps"): "listSteps",
    ("get", f"{WS}/steps/{{name}}"): "getStep",
    ("put", f"{WS}/steps/{{name}}"): "putStep",
    ("delete", f"{WS}/steps/{{name}}"): "deleteStep",
    ("post", f"{WS}/export"): "exportWorkspace",
    ("get", f"{WS}/health"): "getWorkspaceHealth",
    ("get", f"{WS}/badge.svg"): "getWorkspaceBadge",
    ("get", "/metrics"): "getMetrics",
    ("get", "/healthz"): "getAlive",
    ("get", "/readyz"): "getReady",
    ("get", "/openapi.json"): "getOpenApiDocument",
    **AUDIT_OPERATION_IDS,
}


def named_paths() -> dict[str, Any]:
    """paths(), each operation with its operationId first."""
    return {
        path: {
            method: {"operationId": OPERATION_IDS[(method, path)], **operation}
            for method, operation in item.items()
        }
        for path, item in paths().items()
    }


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The document; built once, and the same dict is returned on every call."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "syncd",
            "version": __version__,
            "description": "Keeps workspaces' steps in step with git. Errors are JSON "
            '`{"error": ..., "detail": ...}`; unknown paths answer 404 and wrong methods 405.',
        },
        "paths": named_paths(),
        "components": {
            "schemas": SCHEMAS | AUDIT_SCHEMAS,
            "responses": RESPONSES,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token from the config; scopes: read, sync, write, "
                    "export, audit. Each operation's description names the scope it needs, and "
                    "a token limited to some workspaces finds the others not there (404).",
                }
            },
        },
    }
