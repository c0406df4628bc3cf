"""schemathesis against /openapi.json: no request breaks the API, and every answer is documented.

The real app, built and started as `syncd serve` builds it (daemon.Daemon: app, scheduler,
lifespan), driven in-process through httpx's ASGI transport on an event loop of its own, as in
tests/integration/test_webhook_fuzz.py. schemathesis generates the requests from the document the
app serves and judges the answers; it does not send them, because its own ASGI client ends the
app's lifespan after every test, and a syncd lifespan runs once. The config holds two workspaces
on an https remote nobody listens on, and every token. Requests carry a valid token, so they
reach the handlers rather than stopping at 401: mostly the one with every scope, sometimes the
read-only one, to meet the 403s (negative cases damage the header too). A share of the cases aims
at a configured workspace, a live step or a recorded run, or schema-random ids would only ever
meet 404.

For every operation in the document, with positive and negative data:
- no 5xx but the documented 502 (the git remote failed) and 503 (queue full);
- the status is one the operation documents, with the documented content type and headers;
- the body matches the documented schema;
- no answer carries a configured secret.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from syncd import app as app_module
from syncd.config import load_config
from syncd.core.model import StepContent
from syncd.core.retry import Policy
from syncd.daemon import Daemon
from syncd.git import GitSource
from syncd.http.openapi import openapi_document
from syncd.ops.sdnotify import Notifier
from tests.support import API_TOKEN, READ_TOKEN, WEBHOOK_SECRET, write_config

FAR_URL = "https://127.0.0.1:9/x.git"  # nothing listens on the discard port
WORKSPACES = ("far", "far-manual")
LIVE_STEP = "and-done/greeting done"
SECRETS = (API_TOKEN, READ_TOKEN, WEBHOOK_SECRET)
ENV = {
    "SYNCD_TEST_API_TOKEN": API_TOKEN,
    "SYNCD_TEST_READ_TOKEN": READ_TOKEN,
    "SYNCD_TEST_WEBHOOK_SECRET": WEBHOOK_SECRET,
}
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}  # every scope
BASE_URL = "http://syncd.test"
# Examples per operation and data mode: bounded for CI, more in the full reliability run.
FULL = os.environ.get("SYNCD_RELIABILITY", "").lower() == "full"
EXAMPLES = 200 if FULL else 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# 5xx statuses the document promises for a reason: the git remote failed, the queue is full.
EXPECTED_5XX = {502, 503}
OPERATIONS = [
    (f"{method.upper()} {path}", bool(op.get("parameters") or op.get("requestBody")))
    for path, item in openapi_document()["paths"].items()
    for method, op in item.items()
]
# Negative data needs an input the document constrains: a parameter, or a body with a schema.
# The badge takes no token and only a free-form id: there is no invalid request to generate.
NOT_NEGATABLE = {"POST /hooks", "GET /api/v1/workspaces/{id}/badge.svg"}
NEGATABLE = {label for label, has_input in OPERATIONS if has_input and label not in NOT_NEGATABLE}
# What requests.Request takes of schemathesis's transport arguments.
REQUEST_ARGS = ("method", "url", "headers", "params", "cookies", "json", "data", "files", "auth")


@dataclass
class Api:
    """The running app, its document as schemathesis reads it, and a way to send it a case."""

    daemon: Daemon
    portal: BlockingPortal
    client: httpx.AsyncClient
    schema: Any  # schemathesis's OpenApiSchema
    run_ids: list[str]  # runs the store holds, one per workspace

    def send(self, case: Any, token: str = API_TOKEN) -> httpx.Response:
        # requests serializes the case exactly as schemathesis's own transport would; httpx
        # carries the bytes to the app on the loop that runs its lifespan.
        auth = {"Authorization": f"Bearer {token}"}
        kwargs = case.as_transport_kwargs(base_url=BASE_URL, headers=auth)
        prepared = requests.Request(**{k: v for k, v in kwargs.items() if k in REQUEST_ARGS})
        request = prepared.prepare()
        headers = [(_wire(k), _wire(v)) for k, v in request.headers.items()]
        body = request.body.encode() if isinstance(request.body, str) else request.body
        # Prepared from data, json or files, never a stream: bytes (or nothing).
        assert body is None or isinstance(body, bytes), type(body)
        send = functools.partial(
            self.client.request, request.method or "GET", request.url or "", headers=headers,
            content=body or b"",
        )  # fmt: skip
        response: httpx.Response = self.portal.call(send)
        return response


def _wire(text: str | bytes) -> bytes:
    """A header as a raw client puts it on the wire: latin-1 when it can, else UTF-8 bytes."""
    if isinstance(text, bytes):
        return text
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp: Path = tmp_path_factory.mktemp("api-schema")
    source = {"url": FAR_URL, "branch": "main", "path": "export/steps"}
    workspaces = [
        {"id": ws_id, "name": ws_id, "mode": mode, "source": source, "poll_interval": "0s"}
        for ws_id, mode in zip(WORKSPACES, ("automatic", "manual"), strict=True)
    ]
    config = load_config(write_config(tmp, workspaces, git={"timeout": "2s"}), environ=ENV)
    with pytest.MonkeyPatch.context() as mp:
        # One attempt per git operation: a refused connection would otherwise be retried with
        # backoff for seconds, and `diff` and `sync?wait=true` wait for it.
        mp.setattr(
            app_module,
            "GitSource",
            functools.partial(GitSource, attempt_policy=Policy(base=0.01, cap=0.01, attempts=1)),
        )
        daemon = Daemon(config, notifier=Notifier(environ={}))
    # Live steps, so that the step operations also answer 200 with real bodies.
    for ws_id in WORKSPACES:
        for name in ("greet", LIVE_STEP):
            daemon.parts.core.store.put_outside(ws_id, name, StepContent("true", "done()"))
    app = daemon.asgi()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    with start_blocking_portal() as portal:
        # The lifespan as uvicorn runs it: scheduler started, startup comparison requested.
        with portal.wrap_async_context_manager(daemon.lifespan(app)):
            assert daemon.parts.ready
            client = httpx.AsyncClient(transport=transport, base_url=BASE_URL)
            try:
                document = portal.call(client.get, "/openapi.json").json()
                schema = schemathesis.openapi.from_dict(document)
                # One finished run per workspace (it fails: nobody listens), for GET /runs/{id}.
                run_ids = []
                for ws_id in WORKSPACES:
                    path = f"/api/v1/workspaces/{ws_id}/sync?wait=true"
                    r = portal.call(functools.partial(client.post, path, headers=AUTH))
                    assert r.status_code == 200, r.text
                    run_ids.append(r.json()["id"])
                yield Api(daemon, portal, client, schema, run_ids)
            finally:
                portal.call(client.aclose)
        # Leaving the lifespan is syncd's staged shutdown: it must have finished cleanly.
        assert daemon.parts.stopping and not daemon.parts.scheduler.accepting
        assert daemon.parts.scheduler.busy() == []


def cases(api: Api, label: str, mode: GenerationMode) -> st.SearchStrategy[Any]:
    """Cases for one operation: schema-random, and aimed at a configured workspace or step."""
    operation = api.schema.find_operation_by_label(label)
    assert operation is not None, label
    params = {p.name for p in operation.path_parameters}
    pins: list[dict[str, str] | None] = [None]
    if "id" in params:
        pins += [{"id": ws_id} for ws_id in WORKSPACES]
    if "name" in params:
        pins.append({"id": WORKSPACES[0], "name": LIVE_STEP})
    if "run_id" in params:
        pins += [{"run_id": run_id} for run_id in api.run_ids]
    return st.one_of(
        [operation.as_strategy(generation_mode=mode, path_parameters=pin) for pin in pins]
    )


# The daemon's own threads (the scheduler's backoff jitter) draw from `random` while
# hypothesis generates; that is not the strategies using it.
RANDOM_IN_DAEMON = "ignore:Do not use the `random` module inside strategies"


@pytest.mark.filterwarnings(RANDOM_IN_DAEMON)
@pytest.mark.parametrize(
    ("label", "mode"),
    [
        pytest.param(label, mode, id=f"{label}-{mode.value}")
        for label, _ in OPERATIONS
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        if mode is GenerationMode.POSITIVE or label in NEGATABLE
    ],
)
def test_every_operation_answers_as_documented(api: Api, label: str, mode: GenerationMode) -> None:
    strategy = cases(api, label, mode)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(strategy)
        # Mostly the token with every scope; sometimes the read-only one, for the 403s.
        response = api.send(case, data.draw(st.sampled_from([API_TOKEN] * 3 + [READ_TOKEN])))
        shown = f"{label} -> {response.status_code} {response.text[:300]!r}"
        for secret in SECRETS:
            assert secret not in response.text, f"a secret in the response: {shown}"
            assert all(secret not in v for v in response.headers.values()), shown
        checks = CHECKS if response.status_code not in EXPECTED_5XX else CHECKS[1:]
        case.validate_response(response, checks=checks)

    run()
