"""`syncd demo`, the command: syncd's main job end to end, offline, with nothing but loopback.

A throwaway https git remote with example steps, a config with a manual workspace (dev) and an
automatic one (prod), and the real daemon in this process. Then a commit is pushed and a signed
GitHub webhook delivered: prod applies it, dev shows the diff until it is synced by hand.
Heavy imports wait until the demo runs: the CLI imports this module for every command.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import shutil
import socket
import string
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from syncd.demo.webhook import github_push

PHASES = 6
WAIT_SECONDS = 30.0
GIT_ENV, TOKEN_ENV, HOOK_ENV = "SYNCD_DEMO_GIT_PASSWORD", "SYNCD_DEMO_TOKEN", "SYNCD_DEMO_HOOK"
ENV_NAMES = {"git_env": GIT_ENV, "token_env": TOKEN_ENV, "hook_env": HOOK_ENV}
FIRST = {  # step name: (if, do), as the workspace-sdk exports them
    "and-done/greeting done": (
        "message.type === 'greeting' && !message.done",
        "message.reply(`Hello, ${message.from.name}!`);\nmessage.done = true;",
    ),
    "orders/new order": (
        "order.status === 'new'",
        "await tasks.create({ title: `Pack order ${order.id}`, queue: 'warehouse' });\n"
        "order.status = 'queued';",
    ),
    "alerts/disk full": (
        "alert.kind === 'disk' && alert.usedPercent >= 90",
        "await notify.slack('#ops', `${alert.host}:${alert.mount} is ${alert.usedPercent}% full`);",
    ),
}
SECOND = {  # the pushed commit: the first step is changed, the second is new
    "orders/new order": (
        "order.status === 'new'",
        "const queue = order.express ? 'express' : 'warehouse';\n"
        "await tasks.create({ title: `Pack order ${order.id}`, queue });\norder.status = 'queued';",
    ),
    "billing/invoice paid": (
        "invoice.status === 'paid'",
        "await orders.update(invoice.orderId, { paid: true, paidAt: invoice.paidAt });",
    ),
}

# Written as a person would write it (JSON strings are YAML too). Secrets stay in the environment.
CONFIG = string.Template("""\
server: {listen: "127.0.0.1:$port"}
state_dir: $state_dir  # git mirrors and the embedded SQLite database
tokens: [{name: demo, token_env: $token_env, scopes: [read, sync, write, export]}]
webhooks: {github: {secrets_env: [$hook_env]}}
defaults: {branch: main, path: export/steps, poll_interval: 0s}  # 0s: webhooks only
workspaces:
  - id: dev
    name: dev
    mode: manual  # a change is shown as a diff, and applied when someone asks
    source: &steps
      url: $url
      username: $username
      password_env: $git_env
      ca_file: $ca_file
  - id: prod
    name: prod
    mode: automatic
    source: *steps
""")


class DemoFailed(Exception):
    """A phase did not reach the state it expected; the message says what was missing."""


def add_command(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `syncd demo` to the CLI. It writes its own config, so --config has its own meaning."""
    cmd = sub.add_parser(
        "demo",
        help="run syncd end to end on loopback: git remote, daemon, push, webhook",
        description="Start a local https git remote with example steps, a manual and an automatic "
        "workspace and the daemon; push a change and show it arrive.",
    )
    cmd.add_argument("--dir", type=Path, help="work in this new or empty dir, and keep it")
    cmd.add_argument("--keep", action="store_true", help="keep the temporary dir")
    cmd.add_argument("--port", type=int, default=0, help="API port (default: a free one)")
    cmd.add_argument("--config", type=Path, help="write the config here (a new file; kept)")
    cmd.add_argument(
        "--serve",
        action="store_true",
        help="then keep the https git remote, its CA and the config until Ctrl-C, to try "
        "configs against it (prints the URL, CA file, config and a git clone command)",
    )
    cmd.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    if args.dir and args.dir.exists() and any(args.dir.iterdir()):
        print(
            f"syncd demo: --dir {args.dir} is not empty; give a new or empty dir", file=sys.stderr
        )
        return 2
    if args.config and args.config.exists():
        print(f"syncd demo: --config {args.config} exists; it is left alone", file=sys.stderr)
        return 2
    work = (args.dir or Path(tempfile.mkdtemp(prefix="syncd-demo-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    keep = bool(args.keep or args.dir or args.config)
    demo = Demo(work, (args.config or work / "syncd.yaml").resolve(), args.port, keep)
    print(f"syncd demo: everything runs on 127.0.0.1; files in {work}", flush=True)
    try:
        demo.run()
        print("syncd demo: all steps passed", flush=True)
        if args.serve:
            from syncd.demo.serve import serve_remote

            serve_remote(demo)
    except Exception as e:
        print(f"syncd demo FAILED at [{demo.phase}/{PHASES}] {demo.title}: {e}", file=sys.stderr)
        demo.print_log_tail()
        return 1
    finally:
        demo.close()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


class Demo:
    def __init__(self, work: Path, config_path: Path, port: int, keep: bool) -> None:
        from syncd.demo.gitserver import GitServer

        self.work, self.config_path, self.port, self.keep = work, config_path, port, keep
        self.phase, self.title = 0, "start"
        self.token, self.hook_secret = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.git = GitServer(work / "git", password=secrets.token_urlsafe(16))
        self.tree: Any = None  # a WorkTree, once the remote exists
        self.sock: socket.socket | None = None
        self.server: Any = None  # the uvicorn server, and the thread it runs in
        self.thread: threading.Thread | None = None
        self.log_path, self.env_file = work / "log" / "daemon.log", work / "demo.env"
        # Not beside the config: the daemon watches that dir, and would see each log line.
        self.log_path.parent.mkdir(exist_ok=True)
        self.log_stream = self.log_path.open("a", encoding="utf-8")
        # No proxy: everything is on loopback, and a proxy from the environment would break it.
        self.http = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def run(self) -> None:
        self.step(1, "git", "a local https git remote (basic auth, throwaway CA)")
        repo_url, first = self.start_git()
        self.step(2, "config", "a manual workspace (dev) and an automatic one (prod)")
        config = self.write_config(repo_url)
        self.step(3, "daemon", f"syncd serve, in-process, on {self.base}; the startup sync")
        self.start_daemon(config)
        self.wait("the startup sync", lambda: all(w["last_run"] for w in self.workspaces()))
        self.expect("prod", "Synced", first)
        self.expect("dev", "OutOfSync")
        self.table()
        self.say(f"dev (manual) waits for a person: {self.plan_counts('dev')[0]}")

        self.step(4, "push", "change a step, add one, push with git, deliver a GitHub webhook")
        paths = [self.write_step(name, *body) for name, body in SECOND.items()]
        head = self.tree.commit("Route express orders; mark paid invoices")
        self.tree.push()
        status, answer = self.webhook(repo_url, first, head, paths)
        if status != 202:
            raise DemoFailed(f"POST /hooks/github answered {status}: {answer}")
        self.say(f"pushed {head[:12]}; POST /hooks/github -> 202, matched {answer['matched']}")
        started = time.monotonic()
        prod = self.wait("prod to apply the push", lambda: self.at("prod", head, applied=True))
        run = prod["last_run"]
        self.say(
            f"prod applied {head[:12]} in {time.monotonic() - started:.1f} s (trigger "
            f"{run['trigger']}): {run['created']} created, {run['updated']} updated, "
            f"{run['deleted']} deleted"
        )
        for step in self.api("GET", "/api/v1/workspaces/prod/steps")[1]["steps"]:
            self.say(f"  prod step v{step['version']}  {step['name']}")
        dev = self.wait("dev to see the push", lambda: self.at("dev", head, applied=False))
        counts, changes = self.plan_counts("dev")
        self.say(f"dev stays {dev['status']} (manual applies nothing by itself): {counts}")
        for change in changes:
            print("\n".join(f"        {line}" for line in change["diff"].splitlines()))

        self.step(5, "manual sync", "POST /api/v1/workspaces/dev/sync?wait=true")
        status, run = self.api("POST", "/api/v1/workspaces/dev/sync?wait=true", {"dry_run": False})
        if status != 200 or run["result"] != "succeeded":
            raise DemoFailed(f"the manual sync of dev answered {status}: {run}")
        self.say(f"run {run['id']}: {run['created']} created, {run['updated']} updated")
        self.expect("dev", "Synced", head)
        self.say(f"dev synced manually: dev and prod both hold {head[:12]}")
        self.table()

        self.step(6, "next", "where to look; then the daemon and the git server stop")
        for line in self.api("GET", "/metrics", raw=True)[1].splitlines():
            if line.startswith("syncd_sync_runs_total{") and not line.endswith(" 0.0"):
                self.say(line)
        gone = "" if self.keep else "  (removed at exit: keep it with --keep or --dir DIR)"
        self.say(f"config:  {self.config_path}{gone}")
        self.say(f"status:  . {self.env_file} && syncd status --config {self.config_path}")
        self.say(f"metrics: {self.base}/metrics (while `syncd serve --config ...` runs)")
        self.say(f"log:     {self.log_path}{gone}")
        self.stop_daemon()

    # -- the phases' parts -----------------------------------------------------------------

    def start_git(self) -> tuple[str, str]:
        from syncd.demo.gitserver import WorkTree

        self.git.start()
        url = self.git.create_repo("steps")
        self.tree = WorkTree(self.git, "steps", self.work / "checkout")
        for name, body in FIRST.items():
            self.write_step(name, *body)
        head = self.tree.commit("Add three example steps")
        self.tree.push()
        self.say(f"{url}: pushed {head[:12]} with {len(FIRST)} steps in export/steps")
        return url, head

    def write_config(self, repo_url: str) -> Any:
        from syncd.config import load_config

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind(("127.0.0.1", self.port))  # bound now, so a free port stays ours
        except OSError as e:
            raise DemoFailed(f"cannot listen on 127.0.0.1:{self.port}: {e.strerror}") from e
        self.port = self.sock.getsockname()[1]
        env = {GIT_ENV: self.git.password, TOKEN_ENV: self.token, HOOK_ENV: self.hook_secret}
        os.environ.update(env)  # secrets never sit in the config file
        self.env_file.touch(mode=0o600)
        self.env_file.write_text("".join(f"export {k}='{v}'\n" for k, v in env.items()))
        paths = {"state_dir": self.work / "state", "ca_file": self.git.ca_file, "url": repo_url}
        quoted = {key: json.dumps(str(value)) for key, value in paths.items()}
        text = CONFIG.substitute(quoted, port=self.port, username=self.git.username, **ENV_NAMES)
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(text)
        config = load_config(self.config_path)
        self.say(f"{self.config_path} (webhooks only; SQLite in {config.state_dir})")
        return config

    def start_daemon(self, config: Any) -> None:
        from syncd.daemon import Daemon, make_server
        from syncd.ops.logs import setup_logging
        from syncd.ops.sdnotify import Notifier

        with contextlib.redirect_stderr(self.log_stream):  # the daemon logs to its own file
            setup_logging("text", "info")
        daemon = Daemon(config, Notifier(environ={}))  # not systemd's, whatever runs the demo
        self.server = make_server(daemon)  # it skips signal handlers off the main thread
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="syncd", daemon=True
        )
        self.thread.start()
        self.wait("the daemon to answer /readyz", lambda: self.api("GET", "/readyz")[0] == 200)

    def stop_daemon(self) -> None:
        if self.thread is None:
            return
        # Daemon.shutdown runs in the lifespan: refuse new runs, drain, close the store.
        self.server.should_exit = True
        self.thread.join(timeout=15)
        if self.thread.is_alive():
            raise DemoFailed("the daemon did not stop within 15 s")
        self.thread = None

    def close(self) -> None:
        with contextlib.suppress(DemoFailed):
            self.stop_daemon()
        if self.sock is not None:
            self.sock.close()
        self.git.stop()
        logging.getLogger().handlers.clear()
        self.log_stream.close()

    # -- helpers ---------------------------------------------------------------------------

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def step(self, phase: int, title: str, what: str) -> None:
        self.phase, self.title = phase, title
        print(f"[{phase}/{PHASES}] {title}: {what}", flush=True)

    def say(self, text: str) -> None:
        print(f"      {text}", flush=True)

    def write_step(self, name: str, condition: str, body: str) -> str:
        from syncd.core.model import StepContent
        from syncd.core.steps import render_step_file, step_file_name

        path = f"export/steps/{step_file_name(name)}"
        self.tree.write(path, render_step_file(name, StepContent(condition, body)))
        return path

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        raw: bool = False,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Call the daemon: (status, JSON or text); status 0 when it did not answer. The bearer
        token goes along unless other headers (a webhook's) are given."""
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        headers = {
            **(headers or {"Authorization": f"Bearer {self.token}"}),
            "Content-Type": "application/json",
        }
        req = urllib.request.Request(self.base + path, data, headers, method=method)
        try:
            with self.http.open(req, timeout=WAIT_SECONDS) as resp:
                status, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        except OSError as e:
            return 0, str(e)
        return status, text if raw else json.loads(text or "null")

    def webhook(self, repo_url: str, before: str, head: str, paths: list[str]) -> tuple[int, Any]:
        """A GitHub push event for the commit, signed with the webhook secret."""
        headers, body = github_push(
            repo_url, head, self.hook_secret, before=before, added=paths[1:], modified=paths[:1]
        )
        return self.api("POST", "/hooks/github", body, headers=headers)

    def workspaces(self) -> list[dict[str, Any]]:
        status, body = self.api("GET", "/api/v1/workspaces")
        return body["workspaces"] if status == 200 else []

    def workspace(self, ws: str) -> dict[str, Any]:
        found: dict[str, Any] = self.api("GET", f"/api/v1/workspaces/{ws}")[1]
        return found

    def at(self, ws: str, head: str, applied: bool) -> dict[str, Any] | None:
        """The workspace once it has applied `head`, or (applied=False) at least compared it."""
        found = self.workspace(ws)
        seen = (
            found["last_applied_revision"] if applied else (found["last_run"] or {}).get("revision")
        )
        return found if seen == head else None

    def plan_counts(self, ws: str) -> tuple[str, list[dict[str, Any]]]:
        plan = self.api("GET", f"/api/v1/workspaces/{ws}/diff")[1]
        counts = ", ".join(f"{len(plan[a])} to {a}" for a in ("create", "update", "delete"))
        return counts, plan["create"] + plan["update"] + plan["delete"]

    def expect(self, ws: str, status: str, revision: str | None = None) -> None:
        found = self.workspace(ws)
        if found["status"] != status or (revision and found["last_applied_revision"] != revision):
            raise DemoFailed(
                f"{ws} is {found['status']} at {found['last_applied_revision']}, expected "
                f"{status} at {revision or 'any revision'}; last run: {found['last_run']}"
            )

    def table(self) -> None:
        self.say(f"{'ID':<6}{'MODE':<11}{'STATUS':<11}{'STEPS':<7}{'APPLIED':<14}LAST RUN")
        for ws in self.workspaces():
            steps = self.api("GET", f"/api/v1/workspaces/{ws['id']}/steps")[1]["steps"]
            run, applied = ws["last_run"] or {}, (ws["last_applied_revision"] or "-")[:12]
            self.say(
                f"{ws['id']:<6}{ws['mode']:<11}{ws['status']:<11}{len(steps):<7}{applied:<14}"
                f"{run.get('result', '-')} ({run.get('trigger', '-')})"
            )

    def wait(self, what: str, check: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            if self.thread is not None and not self.thread.is_alive():
                raise DemoFailed(f"the daemon stopped while waiting for {what}")
            if value := check():
                return value
            time.sleep(0.1)
        raise DemoFailed(f"timed out after {WAIT_SECONDS:.0f} s waiting for {what}")

    def print_log_tail(self, lines: int = 20) -> None:
        self.log_stream.flush()
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        if tail:
            print(f"last lines of {self.log_path}:", *tail, sep="\n", file=sys.stderr)
