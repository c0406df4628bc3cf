"""No configured secret ever leaves syncd: logs, metrics, API answers, CLI output, e-mails.

One daemon holds every kind of secret: a git password (and a wrong one, for a workspace whose
remote rejects it), two API tokens, the webhook secret of every provider, and an SMTP password
(for a real SMTP server, aiosmtpd, that requires the login). The test then walks every path
where a secret could slip out, the error paths above all: the rejected git password, a webhook
signed with another secret, API calls with a wrong, missing or too weak token, an export whose
push is refused, a reload of a config that holds a password in plain text, and the e-mail
digest of the failing workspace. Everything syncd says is kept, and grepped for every secret,
raw and in the encodings that carry credentials (HTTP Basic, SMTP AUTH PLAIN): zero hits.
"""

from __future__ import annotations

import base64
import copy
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support import API_TOKEN, READ_TOKEN, WEBHOOK_SECRET, daemon_env, workspace
from tests.support.daemon import (
    Daemon,
    converged,
    free_port,
    remote,
    report,
    rewrite_config,
    start_daemon,
    stop_daemon,
    view,
    wait_for,
)
from tests.support.payloads import build, hex_hmac, signature_headers

GIT_PASSWORD = "git-pass-Hq7x2Vb91"
WRONG_GIT_PASSWORD = "wrong-git-pass-5521zz"
SMTP_USER, SMTP_PASSWORD = "syncd-mailer", "smtp-pass-77abQ"
INLINE_PASSWORD = "inline-secret-value-314Z"  # pasted into the config file, where it is refused
TARGET_TOKEN = "target-token-9Kd3pQw"  # in a chat target's URL, as Slack's and Discord's are
OPS = "ops@example.com"
ENV = {
    "SYNCD_TEST_WRONG_GIT_PASSWORD": WRONG_GIT_PASSWORD,
    "SYNCD_TEST_SMTP_PASSWORD": SMTP_PASSWORD,
}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


SECRETS = {
    "git password": GIT_PASSWORD,
    "wrong git password": WRONG_GIT_PASSWORD,
    "API token": API_TOKEN,
    "read-only API token": READ_TOKEN,
    "webhook secret": WEBHOOK_SECRET,
    "SMTP password": SMTP_PASSWORD,
    "chat target token": TARGET_TOKEN,
    "password written in the config": INLINE_PASSWORD,
    # The forms in which credentials travel.
    "git Basic auth": b64(f"bot:{GIT_PASSWORD}"),
    "wrong git Basic auth": b64(f"bot:{WRONG_GIT_PASSWORD}"),
    "SMTP AUTH PLAIN": b64(f"\0{SMTP_USER}\0{SMTP_PASSWORD}"),
    "SMTP AUTH LOGIN password": b64(SMTP_PASSWORD),
}


class Inbox:
    """An aiosmtpd handler: keeps every message, accepts only syncd's login."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.logins = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.original_content or envelope.content)
        return "250 Message accepted"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            SMTP_USER.encode(),
            SMTP_PASSWORD.encode(),
        )
        self.logins += ok
        return AuthResult(success=ok)


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        auth_required=True,
        auth_require_tls=False,  # loopback; the login still carries the password
        authenticator=inbox.authenticate,
    )
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


class Receiver:
    """A chat target's HTTP endpoint on loopback: refuses the first posts (500), then takes them."""

    def __init__(self, refuse: int) -> None:
        self.bodies: list[bytes] = []
        self.refuse = refuse
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.refuse > 0:
                    receiver.refuse -= 1
                    self.send_response(500)
                else:
                    receiver.bodies.append(body)
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hooks/{TARGET_TOKEN}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def target() -> Iterator[Receiver]:
    receiver = Receiver(refuse=3)  # one tick's attempts fail: the error path is walked too
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@dataclass
class Transcript:
    """Everything syncd said, each text with where it came from."""

    texts: list[tuple[str, str]] = field(default_factory=list)

    def add(self, where: str, text: str | bytes) -> None:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        self.texts.append((where, text))

    def answer(self, where: str, r: httpx.Response) -> httpx.Response:
        headers = "\n".join(f"{k}: {v}" for k, v in r.headers.items())
        self.add(f"{where} -> {r.status_code}", f"{headers}\n\n{r.text}")
        return r

    def hits(self) -> list[str]:
        return [
            f"{what} in {where}"
            for where, text in self.texts
            for what, secret in SECRETS.items()
            if secret in text
        ]


def run_cli(d: Daemon, said: Transcript, env: dict[str, str], *args: str) -> int:
    proc = subprocess.run(
        [sys.executable, "-m", "syncd", *args, "--config", str(d.config_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    said.add(f"syncd {' '.join(args)} (exit {proc.returncode})", proc.stdout + proc.stderr)
    return proc.returncode


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_no_secret_reaches_logs_metrics_answers_cli_or_email(
    tmp_path: Path, smtp: tuple[Inbox, int], target: Receiver
) -> None:
    inbox, smtp_port = smtp
    said = Transcript()
    with remote(tmp_path, password=GIT_PASSWORD) as rm:
        wrong = {"source": {"password_env": "SYNCD_TEST_WRONG_GIT_PASSWORD"}, "notify": [OPS]}
        workspaces = [
            workspace("auto", rm.url, rm.server, "automatic"),
            workspace("failing", rm.url, rm.server, "automatic", **wrong),
        ]
        notifications = {
            "interval": "2s",
            "smtp": {
                "host": "127.0.0.1",
                "port": smtp_port,
                "tls": "none",
                "from": "syncd@example.com",
                "username": SMTP_USER,
                "password_env": "SYNCD_TEST_SMTP_PASSWORD",
            },
            "targets": [{"name": "chat", "url_env": "SYNCD_TEST_TARGET_URL"}],
        }
        d = start_daemon(
            tmp_path,
            rm.server,
            rm.tree,
            rm.url,
            workspaces,
            env_extra=ENV | {"SYNCD_TEST_TARGET_URL": target.url},
            notifications=notifications,
        )
        # what the daemon was given, for the CLI
        env = daemon_env(rm.server) | ENV | {"SYNCD_TEST_TARGET_URL": target.url}
        try:
            wait_for(lambda: converged(d, "auto", rm.tree), 30, "the startup sync")
            wait_for(lambda: view(d, "failing")["last_run"], 30, "the failing workspace's run")
            exercise_api(d, said, rm.url, rm.tree.head())
            exercise_cli(d, said, env)
            # The digest of the failing workspace, sent after logging in with the password.
            wait_for(lambda: inbox.messages, 60, "the e-mail digest", every=0.5)
            wait_for(lambda: target.bodies, 90, "the chat target's message", every=0.5)
            assert "notification not sent" in d.log()
            exercise_reload_of_a_plain_password(d, said, env)
        finally:
            stop_daemon(d)
        said.add("daemon log", d.log())
    for i, raw in enumerate(inbox.messages):
        said.add(f"e-mail {i}", raw)
        for part in message_from_bytes(raw).walk():
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                said.add(f"e-mail {i}, decoded", payload)

    for i, body in enumerate(target.bodies):
        said.add(f"chat message {i}", body)

    failing = [t for w, t in said.texts if w.startswith("GET failing workspace")]
    volume = sum(len(t) for _, t in said.texts)
    hits = said.hits()
    report(
        "secrets in output",
        secrets=len(SECRETS),
        texts=len(said.texts),
        kib_scanned=round(volume / 1024),
        emails=len(inbox.messages),
        smtp_logins=inbox.logins,
        hits=len(hits),
    )
    assert inbox.logins >= 1, "syncd never logged in to the SMTP server"
    mails = [t for w, t in said.texts if w.startswith("e-mail")]
    assert any("ws-failing" in t and "rejected the credentials" in t for t in mails), mails[:1]
    assert any("rejected the credentials of user 'bot'" in t for t in failing), failing
    assert not hits, hits


def exercise_api(d: Daemon, said: Transcript, url: str, head: str) -> None:
    ws_paths = [f"/api/v1/workspaces/{ws}" for ws in ("auto", "failing")]
    with d.client() as c:
        said.answer("GET workspaces", c.get("/api/v1/workspaces"))
        for ws, path in zip(("auto", "failing"), ws_paths, strict=True):
            said.answer(f"GET {ws} workspace", c.get(path))
            said.answer(f"GET {ws} diff", c.get(f"{path}/diff"))
            said.answer(f"GET {ws} health", c.get(f"{path}/health"))
            run = said.answer(f"POST {ws} sync", c.post(f"{path}/sync?wait=true", timeout=120))
            said.answer(f"GET {ws} run", c.get(f"/api/v1/runs/{run.json()['id']}"))
            said.answer(f"GET {ws} runs", c.get(f"{path}/runs"))
            said.answer(f"GET {ws} steps", c.get(f"{path}/steps"))
            said.answer(f"GET {ws} one step", c.get(f"{path}/steps/step 0"))
            said.answer(f"POST {ws} dry run", c.post(f"{path}/sync", json={"dry_run": True}))
            export = {"branch": f"export/{ws}", "message": "export"}
            said.answer(f"POST {ws} export", c.post(f"{path}/export", json=export, timeout=120))
        said.answer("GET failing workspace", c.get(ws_paths[1]))
        said.answer("PUT step", c.put(f"{ws_paths[0]}/steps/outside", json={"if": "a", "do": "b"}))
        said.answer("DELETE step", c.delete(f"{ws_paths[0]}/steps/outside"))
        said.answer("GET unknown run", c.get("/api/v1/runs/nope"))
        said.answer("POST bad revision", c.post(f"{ws_paths[0]}/sync", json={"revision": "zz"}))
        said.answer("POST bad JSON", c.post(f"{ws_paths[0]}/sync", content=b"{"))
    for path in ("/metrics", "/healthz", "/readyz", "/openapi.json"):
        said.answer(f"GET {path}", httpx.get(f"{d.url}{path}", timeout=30))
    # Tokens that are wrong, missing, or lack the scope; a secret presented as a token.
    for i, token in enumerate(("not-the-token", WEBHOOK_SECRET, READ_TOKEN, None)):
        with d.client(token=token) as c:
            said.answer(f"POST sync with bad token {i}", c.post(f"{ws_paths[0]}/sync"))
            said.answer(f"PUT step with bad token {i}", c.put(f"{ws_paths[0]}/steps/x"))
    # Webhooks: signed right, signed with another secret, a GitLab token that is wrong.
    files = ["export/steps/step__0.step.json"]
    headers, body = build("github", url, "main", files, head, str(uuid.uuid4()))
    with httpx.Client(base_url=d.url, timeout=30) as c:
        said.answer("webhook signed right", c.post("/hooks/github", content=body, headers=headers))
        forged = headers | signature_headers("github", body, "another-secret")
        said.answer("webhook signed wrong", c.post("/hooks/github", content=body, headers=forged))
        gl_headers, gl_body = build("gitlab", url, "main", files, head, str(uuid.uuid4()))
        gl_headers["X-Gitlab-Token"] = WEBHOOK_SECRET[:-1] + "x"
        said.answer(
            "gitlab wrong token", c.post("/hooks/gitlab", content=gl_body, headers=gl_headers)
        )
        said.answer("unsigned webhook", c.post("/hooks/generic", content=b"{}"))
    # The signature syncd expected is no secret, but echoing it would let anyone forge one.
    expected = hex_hmac(body)
    assert not any(expected in text for where, text in said.texts if "signed wrong" in where)


def exercise_cli(d: Daemon, said: Transcript, env: dict[str, str]) -> None:
    for json_flag in ((), ("--json",)):
        run_cli(d, said, env, "status", *json_flag)
        for ws in ("auto", "failing"):
            run_cli(d, said, env, "status", ws, *json_flag)
            run_cli(d, said, env, "steps", ws, *json_flag)
            run_cli(d, said, env, "diff", ws, *json_flag)
            run_cli(d, said, env, "sync", ws, *json_flag)
            run_cli(d, said, env, "sync", ws, "--dry-run", *json_flag)
    run_cli(d, said, env, "check-config")


def exercise_reload_of_a_plain_password(d: Daemon, said: Transcript, env: dict[str, str]) -> None:
    """A password written into the config is refused, and the refusal must not quote it."""
    good = yaml.safe_load(d.config_path.read_text())
    broken = copy.deepcopy(good)
    broken["workspaces"][0]["source"]["password"] = INLINE_PASSWORD
    rewrite_config(d, broken)
    d.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "config reload refused" in d.log(), 15, "the reload to be refused")
    assert run_cli(d, said, env, "check-config") == 2
    rewrite_config(d, good)
    time.sleep(0.5)  # let the file watch see the good config again
