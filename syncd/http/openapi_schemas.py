"""The component schemas of the OpenAPI document (`syncd.http.openapi`), its operations'
parameters, and the small vocabulary they are written in (`obj`, `fields`, `nullable`...).
Pure: data and functions that build dicts, nothing else.

Each schema mirrors a shape the API answers with: the `to_dict` of syncd/core/model.py and the
views of syncd/service/views.py.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    """`schema` or null: `type: [X, "null"]` for plain types, anyOf for references."""
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    return {**schema, "type": [schema["type"], "null"]}


def obj(props: dict[str, Schema], required: list[str] | None = None, **extra: Any) -> Schema:
    """An object; every property is required unless `required` says otherwise."""
    req = list(props) if required is None else required
    return {"type": "object", "properties": props, "required": req, **extra}


def enum(*values: str) -> Schema:
    return {"type": "string", "enum": list(values)}


BASIC = {t: {"type": t} for t in ("string", "integer", "number", "boolean")}
STR, INT, NUM, BOOL = BASIC.values()
ALIASES = {"str": "string", "int": "integer", "num": "number", "bool": "boolean"}


def fields(spec: str, **override: Schema) -> dict[str, Schema]:
    """Properties from `name:type` words: type is str, int, num, bool or a component's name,
    `?` after it allows null and `[]` makes a list. A bare name takes its schema from `override`.
    """
    out: dict[str, Schema] = {}
    for word in spec.split():
        name, _, kind = word.partition(":")
        if not kind:
            out[name] = override[name]
            continue
        base = kind.rstrip("?").removesuffix("[]")
        schema = BASIC[ALIASES[base]] if base in ALIASES else ref(base)
        if kind.rstrip("?").endswith("[]"):
            schema = {"type": "array", "items": schema}
        out[name] = nullable(schema) if kind.endswith("?") else dict(schema)
    return out


TIME = {**STR, "format": "date-time", "description": "RFC 3339, UTC"}
TIME_OR_NULL = nullable(TIME)
SCHEMAS: dict[str, Schema] = {
    "Error": obj(
        fields("error:str detail", detail={"description": "any JSON value; often null"}),
        description="Every error response.",
    ),
    "Mode": enum("automatic", "manual"),
    "Status": enum("Synced", "OutOfSync", "Unknown"),
    "HealthStatus": enum("Healthy", "Degraded", "Suspended"),
    "WorkspaceHealth": obj(
        fields("status:HealthStatus since error:str? failures:int", since=TIME_OR_NULL),
        description="Beside the sync status: `Degraded` when the source cannot be read (auth, "
        "TLS, DNS, 5xx, timeout) or the last run failed; `Suspended` when automation applies "
        "nothing by itself (suspended, or an automatic workspace pinned to a revision). "
        "`since` (RFC 3339, UTC) is when this health began, null if never assessed; `error` "
        "is what made it Degraded; `failures` counts failed runs and source reads in a row.",
    ),
    "Trigger": enum("webhook", "poll", "manual", "drift", "startup"),
    "RunResult": enum("succeeded", "failed", "planned"),
    "Origin": enum("git", "outside"),
    "StepContent": obj(
        fields("if:str do:str enabled:bool valid:bool"),
        description="What a step does: the part of a step syncd compares.",
    ),
    "StepContentInput": obj(fields("if:str do:str enabled:bool valid:bool"), ["if", "do"]),
    "StepEdit": obj(
        fields("content:StepContentInput"),
        description="An edit outside git. The content object is also accepted at the top level.",
    ),
    "Step": obj(
        fields(
            "id:str name:str content:StepContent enabled:bool valid:bool version:int"
            " content_hash:str updated_at origin:Origin",
            updated_at=TIME,
        ),
        description="A live step, as the workspace holds it. `content_hash` is the sha256 of "
        "the canonical JSON of `content`.",
    ),
    "StepList": obj(fields("steps:Step[]")),
    "StepChange": obj(
        fields(
            "action name:str before:StepContent? after:StepContent? diff:str",
            action=enum("create", "update", "delete"),
        ),
        description="`before` is null for a create, `after` for a delete; `diff` is a unified "
        "diff of `if` and `do`.",
    ),
    "Plan": obj(
        fields(
            "workspace:str revision:str create:StepChange[] update:StepChange[]"
            " delete:StepChange[] unchanged:int"
        ),
        description="The plan now, against commit `revision`: what a sync would change.",
    ),
    "Preview": obj(
        fields(
            "workspace:str revision:str would_apply:bool refused:str? signed_by:str?"
            " create:StepChange[] update:StepChange[] delete:StepChange[] unchanged:int"
        ),
        description="What commit `revision` (the full sha) would do to the workspace now: "
        "`would_apply`, else `refused` says why (then the lists hold what was planned before "
        "the refusal, empty when the commit could not be read); `signed_by`: whose verified "
        "signature it carries (with `verify`).",
    ),
    "Run": obj(
        fields(
            "id:str workspace:str trigger:Trigger revision:str? result:RunResult created:int"
            " updated:int deleted:int started_at finished_at error:str? dry_run:bool"
            " actor:str? message:str? author:str? signed_by:str? checks:CheckOutcome[]",
            started_at=TIME,
            finished_at=TIME_OR_NULL,
        ),
        description="One sync attempt; times are RFC 3339 in UTC. `created`, `updated` and "
        "`deleted` count the run's plan: applied (succeeded) or only planned (planned, dry run); "
        "0 for a failed run. `actor`: who asked for it (a token's name, `local:<user>`) or the "
        "trigger that started it; `message` (first line) and `author`: the commit it read; "
        "`signed_by`: whose verified signature the commit carries (with `verify`), else null.",
    ),
    "CheckOutcome": obj(
        fields("name:str result:str detail:str duration:num"),
        description="A check run after the run's apply (`checks:`): `result` ok or failed, "
        "`duration` in seconds (its tries included).",
    ),
    "RunList": obj(fields("runs:Run[]"), description="Newest first."),
    "WaitResult": obj(
        fields(
            "workspace:str revision:str result applied_revision:str? status:Status"
            " health:HealthStatus last_run:Run?",
            result=enum("applied", "failed", "waiting"),
        ),
        description="`revision`: the full sha waited for (HEAD resolved when asked). "
        "`result`: `applied` when the applied revision is it or a descendant and the "
        "workspace is Healthy; `failed` when the last run, of it or a descendant, failed (or "
        "such a commit is marked failed); `waiting` when the time ran out first.",
    ),
    "SyncAccepted": obj(
        fields("workspace:str run_id:str coalesced:bool suspended:bool"),
        description="`coalesced`: the request joined a run that was already waiting. "
        "`suspended`: the request pins an automatic workspace to a revision, so once applied "
        "its automation is suspended until `resume`.",
    ),
    "SyncResult": obj(
        fields(
            "id:str workspace:str trigger:Trigger revision:str? result:RunResult created:int"
            " updated:int deleted:int started_at finished_at error:str? dry_run:bool"
            " actor:str? message:str? author:str? signed_by:str? checks:CheckOutcome[]"
            " suspended:bool"
            " pinned_revision:str?",
            started_at=TIME,
            finished_at=TIME_OR_NULL,
        ),
        description="The finished run (as `Run`), and the workspace after it: `suspended` "
        "when its automation applies nothing by itself (a pinned sync of an automatic "
        "workspace suspends it), `pinned_revision` the commit it is pinned to.",
    ),
    "SyncRequest": obj(
        {
            "dry_run": {**BOOL, "default": False},
            "revision": {
                **nullable({**STR, "pattern": "^[0-9a-fA-F]{4,40}$"}),
                "default": None,
                "description": "a commit sha, 4 to 40 hex digits; null for the branch head",
            },
        },
        [],
    ),
    "Source": obj(fields("url:str branch:str path:str"), description="`url` is redacted."),
    "Workspace": obj(
        fields(
            "id:str name:str tags:str[] mode:Mode status:Status health:WorkspaceHealth"
            " suspended:bool pinned_revision:str? source:Source poll_interval:num"
            " last_applied_revision:str? signed_by:str? last_seen_revision:str?"
            " failed_revision:str? drift:int last_run:Run? blocked:Blocked?"
        ),
        description="`poll_interval` in seconds (0: webhooks only); `drift` counts the steps "
        "changed outside git. `status` is measured against the branch head: a sync pinned to "
        "another commit (`pinned_revision`) leaves it OutOfSync. `suspended`: automation "
        "applies nothing by itself (polls, webhooks and self-heal only record what they see). "
        "`signed_by`: whose verified signature the applied revision carries (the SSH principal, "
        "or the OpenPGP fingerprint and user id), from the run that applied it with `verify`; "
        "else null. `blocked`: what holds an automatic workspace's changes back now (a closed "
        "change window, a promotion), else null.",
    ),
    "Blocked": obj(
        fields("reason until detail:str", reason=enum("window", "promotion"), until=TIME_OR_NULL),
        description="`until` (RFC 3339, UTC): when the change applies by itself; null when not "
        "known (no window opening within 400 days; an upstream that has yet to apply the "
        "commit or turn Healthy).",
    ),
    "WorkspaceList": obj(
        fields(
            "workspaces:Workspace[] next_cursor",
            next_cursor={
                **nullable(STR),
                "description": "`cursor` of the next page; null: the last page, or the whole list",
            },
        )
    ),
    "Health": obj(
        fields(
            "workspace:str health:WorkspaceHealth suspended:bool pinned_revision:str?"
            " source_reachable:bool? local_failure:bool last_error:str? webhook_last_seen"
            " webhooks_unused:str[] invalid_steps:str[] disabled_steps:str[]"
            " changed_outside_git:str[] report_error:ReportFailure?",
            webhook_last_seen={"type": "object", "additionalProperties": TIME_OR_NULL},
        ),
        description="`source_reachable` is null before the first run (and while a local "
        "failure hides it); `local_failure`: this host's state directory or disk fails, not "
        "the remote; `webhook_last_seen` "
        "maps each configured provider to an RFC 3339 time, or null if never seen; "
        "`webhooks_unused` names each configured secret (`provider: env VAR` or "
        "`provider: file PATH`, never its value) that no delivery has used since start; "
        "`report_error`: the last report to the git host that failed (until one succeeds), "
        "else null.",
    ),
    "ReportFailure": obj(
        fields("provider:str kind:str error:str at", at=TIME),
        description="A report to the git host (a commit status, a pull request's plan) that "
        "failed: the `providers` entry, what was reported, the host's answer, and when.",
    ),
    "ExportRequest": obj(
        {
            "branch": {
                **STR,
                "description": "the branch to push to, created from the tracked branch's head "
                "when it does not exist; `refs/heads/` may be left out",
            },
            "message": {**STR, "description": "the commit message (default: names the workspace)"},
            "allow_tracked_branch": {
                **BOOL,
                "default": False,
                "description": "allow pushing to a branch an automatic workspace tracks",
            },
            "include_disabled": {
                **BOOL,
                "default": False,
                "description": "carry disabled steps too, as step files with `enabled: false` "
                "(no .mts file); by default they are left out, as the SDK does, and a promotion "
                "merging the branch deletes them from the target workspace",
            },
        },
        ["branch"],
    ),
    "ExportResult": obj(
        fields("commit:str branch:str files:int changed:bool left_out:LeftOutStep[]"),
        description="`commit` is the branch head after the export; `files` counts the files "
        "written (step files and .mts files); `changed` is false when the branch already held "
        "them and no commit was made; `left_out` names every live step the export does not "
        "carry (a promotion merging the branch deletes them from the target workspace).",
    ),
    "LeftOutStep": obj(
        {
            "id": STR,
            "name": STR,
            "reason": {
                **enum("disabled", "no name"),
                "description": "`disabled`: send `include_disabled: true` to carry it",
            },
        }
    ),
    "ServiceStatus": obj({"status": enum("ok", "ready")}),
    "Replica": obj(
        {
            **fields("id:str host:str pid:int"),
            "started_at": TIME,
            "last_seen": TIME,
            **fields("alive:bool holds:str[] this:bool"),
        },
        description="`alive`: its heartbeat (every 2 s) is under 6 s old; `holds`: the "
        "workspaces it runs or is about to run; `this`: the replica that answered.",
    ),
    "ReplicaList": obj(
        fields("shared:bool replicas:Replica[]"),
        description="`shared` is false with a SQLite store (one process, listed alone).",
    ),
    "HookAccepted": obj(fields("matched:str[] queued:str[]"), description="Workspace ids."),
    "HookHandled": {
        "description": "A ping, an event syncd ignores, or a redelivery (same delivery id).",
        "oneOf": [
            obj({"ping": {"const": "ok"}}),
            obj(fields("ignored matched:str[] queued:str[]", ignored={"const": True})),
            obj(fields("duplicate matched:str[] queued:str[]", duplicate={"const": True})),
        ],
    },
}


# -- parameters, shared by the operations -----------------------------------------------------


def param(name: str, where: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema,
        "description": description,
    }


ID = param("id", "path", STR, "workspace id")
RUN_ID = param("run_id", "path", STR, "run id")
STEP = param(
    "name",
    "path",
    {"type": "string", "minLength": 1, "maxLength": 1024},
    "Step name, 1 to 1024 characters, no NUL. It may contain `/`: percent-encode it (`/` as "
    "`%2F`); the server decodes the path and takes all the rest of it as the name.",
)
TAG = param("tag", "query", STR, "only the workspaces with this tag")
WAIT = param(
    "wait", "query", {**BOOL, "default": False}, "`true`, `1` or `yes`: answer 200 with the run"
)
REVISION = param(
    "revision",
    "query",
    {**STR, "default": "HEAD"},
    "`HEAD` (the branch head, resolved when the request comes) or a commit sha (4 to 40 hex "
    "digits) on the workspace's branch",
)
PREVIEWED = {
    **param(
        "revision",
        "query",
        {**STR, "pattern": "^[0-9a-fA-F]{7,40}$"},
        "the commit: a sha of 7 to 40 hex digits, on the workspace's branch or the head of a "
        "pull request syncd has fetched; missing or malformed is a 400",
    ),
    "required": True,
}
TIMEOUT = param(
    "timeout",
    "query",
    {**INT, "minimum": 0, "maximum": 300, "default": 30},
    "seconds to hold the request at most; out of range is a 400",
)
LIMIT = param(
    "limit",
    "query",
    {**INT, "minimum": 1, "maximum": 1000, "default": 50},
    "how many; out of range is a 400",
)
