"""Sessions that end and guessing that is throttled, against the real daemon (`syncd serve`):

- a token given a new value in the config, then SIGHUP: the console sessions made with the old
  value end;
- with a configured session key, a session signed out stays refused after a restart (the list
  of signed-out sessions is in the store, as replicas share it), while one not signed out lives on;
- wrong bearer tokens from one address: 429 with Retry-After past the limit (also for the right
  token, and for the console's sign-in, from that address), other addresses and /healthz and
  /metrics untouched, and one summary line in the log; also through an intake process, which
  hands the client's address on to the daemon.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]

from syncd.http.console.sessions import COOKIE
from tests.support import API_TOKEN, READ_TOKEN, GitServer, WorkTree, workspace
from tests.support.console import SAME_ORIGIN, csrf_of
from tests.support.console import sign_in as sign_in_with
from tests.support.daemon import Daemon, kill_daemon, rewrite_config, start_daemon, stop_daemon

NEXT_TOKEN = "next-api-token-0123456789"
SESSION_KEY = "a-console-session-key-of-enough-length-0123"
SUMMARY = "failed sign-ins and bad API tokens"


def sign_in(
    d: Daemon, token: str = API_TOKEN, headers: dict[str, str] | None = None
) -> httpx.Client:
    """A client of its own (with `headers` on every request), signed in with `token`."""
    client = httpx.Client(base_url=d.url, timeout=10, headers=headers or {})
    sign_in_with(client, token)
    return client


def ended(answer: httpx.Response) -> bool:
    return answer.status_code == 303 and answer.headers["location"] == "/ui/login?notice=ended"


def test_a_token_given_a_new_value_and_sighup_ends_its_old_sessions(
    tmp_path: Path, git_server: GitServer, repo: tuple[str, WorkTree]
) -> None:
    url, tree = repo
    workspaces = [workspace("manual", url, git_server, "manual")]
    env = {"SYNCD_TEST_NEXT_TOKEN": NEXT_TOKEN}
    d = start_daemon(tmp_path, git_server, tree, url, workspaces, env_extra=env)
    try:
        ci, viewer = sign_in(d), sign_in(d, READ_TOKEN)
        assert ci.get("/ui/", follow_redirects=False).status_code == 200
        doc = yaml.safe_load(d.config_path.read_text())
        doc["tokens"][0]["token_env"] = "SYNCD_TEST_NEXT_TOKEN"  # "ci", with another value
        rewrite_config(d, doc)
        d.process.send_signal(signal.SIGHUP)
        d.wait_until(lambda: "config reloaded" in d.log(), 20, "the reload")
        assert ended(ci.get("/ui/", follow_redirects=False))
        assert ci.get("/ui/events").status_code == 401
        # The viewer's token did not change: its session lives on.
        assert viewer.get("/ui/", follow_redirects=False).status_code == 200
        with d.client(NEXT_TOKEN) as api:
            assert api.get("/api/v1/workspaces").status_code == 200
        assert sign_in(d, NEXT_TOKEN).get("/ui/", follow_redirects=False).status_code == 200
    finally:
        kill_daemon(d)


def test_a_signed_out_session_stays_ended_after_a_restart(
    tmp_path: Path, git_server: GitServer, repo: tuple[str, WorkTree]
) -> None:
    url, tree = repo
    workspaces = [workspace("manual", url, git_server, "manual")]
    env = {"SYNCD_TEST_SESSION_KEY": SESSION_KEY}
    console = {"session_key_env": "SYNCD_TEST_SESSION_KEY"}
    d = start_daemon(tmp_path, git_server, tree, url, workspaces, env_extra=env, console=console)
    try:
        leaving, staying = sign_in(d), sign_in(d)
        copied = leaving.cookies.get(COOKIE)
        kept = staying.cookies.get(COOKIE)
        assert copied and kept
        page = leaving.get("/ui/", follow_redirects=False)
        answer = leaving.post("/ui/logout", data={"csrf": csrf_of(page.text)}, headers=SAME_ORIGIN)
        assert answer.status_code == 303
        replay = httpx.get(f"{d.url}/ui/", cookies={COOKIE: copied}, follow_redirects=False)
        assert ended(replay)
    finally:
        stop_daemon(d)
    d = start_daemon(tmp_path, git_server, tree, url, workspaces, env_extra=env, console=console)
    try:
        replay = httpx.get(f"{d.url}/ui/", cookies={COOKIE: copied}, follow_redirects=False)
        assert ended(replay)
        alive = httpx.get(f"{d.url}/ui/", cookies={COOKIE: kept}, follow_redirects=False)
        assert alive.status_code == 200  # the key is configured: sessions outlive a restart
    finally:
        kill_daemon(d)


@pytest.mark.parametrize("intake_workers", [0, 1])
def test_wrong_tokens_from_one_address_are_throttled_and_summed_up(
    tmp_path: Path, git_server: GitServer, repo: tuple[str, WorkTree], intake_workers: int
) -> None:
    url, tree = repo
    workspaces = [workspace("manual", url, git_server, "manual")]
    options = {"intake_workers": intake_workers}
    d = start_daemon(tmp_path, git_server, tree, url, workspaces, server_options=options)
    # Loopback is a trusted proxy (uvicorn's default): X-Forwarded-For names the client.
    attacker = {"X-Forwarded-For": "203.0.113.9"}
    try:
        statuses, waits = [], []
        for i in range(20):
            answer = httpx.get(
                f"{d.url}/api/v1/workspaces",
                headers={"Authorization": f"Bearer guess-{i:04d}-0123456789", **attacker},
                timeout=10,
            )
            statuses.append(answer.status_code)
            if answer.status_code == 429:
                waits.append(int(answer.headers["retry-after"]))
        assert statuses == [401] * 10 + [429] * 10, statuses
        assert all(1 <= w <= 60 for w in waits), waits
        right = {"Authorization": f"Bearer {API_TOKEN}"}
        # The right token from that address waits too: a right guess looks like a wrong one.
        answer = httpx.get(f"{d.url}/api/v1/workspaces", headers={**right, **attacker})
        assert answer.status_code == 429 and "retry-after" in answer.headers
        form = httpx.get(f"{d.url}/ui/login", headers=attacker)
        sign = httpx.post(
            f"{d.url}/ui/login",
            data={"token": API_TOKEN, "csrf": csrf_of(form.text)},
            cookies=form.cookies,
            headers={**attacker, **SAME_ORIGIN},
        )
        assert sign.status_code == 429 and "retry-after" in sign.headers
        # Other addresses, and what needs no token, are not touched.
        other = {"X-Forwarded-For": "198.51.100.7"}
        assert (
            httpx.get(f"{d.url}/api/v1/workspaces", headers={**right, **other}).status_code == 200
        )
        assert httpx.get(f"{d.url}/api/v1/workspaces", headers=right).status_code == 200
        assert httpx.get(f"{d.url}/healthz", headers=attacker).status_code == 200
        assert httpx.get(f"{d.url}/metrics", headers=attacker).status_code == 200
        # One summary line for the window, naming the address; never a line per guess.
        d.wait_until(lambda: SUMMARY in d.log(), 20, "the summary line")
        time.sleep(0.5)
        lines = [line for line in d.log().splitlines() if SUMMARY in line]
        assert len(lines) == 1, lines
        assert "failed=10" in lines[0] and "refused_429=12" in lines[0], lines[0]
        assert "top_address=203.0.113.9" in lines[0], lines[0]
        assert "guess-" not in d.log() and API_TOKEN not in d.log()
    finally:
        kill_daemon(d)
