"""Webhook intake, the use case: with a scheduler and metrics that keep state, no HTTP."""

from __future__ import annotations

import hashlib
import hmac
import json
from asyncio import run
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from syncd.config import Config, load_config
from syncd.core.model import Trigger
from syncd.runs.requests import QueueFull
from syncd.service.deliveries import DeliveryLog
from syncd.service.intake import DeliveryOutcome, Intake, Overloaded, Receipt
from syncd.webhooks import BadSignature, MalformedPayload, ProviderNotDetected, UnknownProvider
from tests.support.fakes import FakeStore

SECRET = "intake-secret"
URL = "https://git.example.com/team/steps.git"
NOW = 1_700_000_000.0

CONFIG = f"""
state_dir: state
webhooks:
  generic: {{secrets_env: [OLD_SECRET, HOOK_SECRET]}}
  github: {{secrets_env: HOOK_SECRET}}
workspaces:
  - {{id: a, name: a, source: {{url: {URL}, branch: main, path: export/steps}}}}
  - {{id: b, name: b, source: {{url: {URL}, branch: dev, path: export/steps}}}}
"""


@dataclass
class FakeScheduler:
    """Takes requests until `room` runs out, then refuses as a full queue does."""

    room: int = 100
    requested: list[tuple[str, Trigger]] = field(default_factory=list)

    async def request(self, ws_id: str, trigger: Trigger) -> Any:
        if len(self.requested) >= self.room:
            raise QueueFull(f"too many sync requests are waiting (workspace {ws_id})")
        self.requested.append((ws_id, trigger))
        return _Ticket(ws_id)


@dataclass(frozen=True)
class _Ticket:
    workspace: str


@dataclass
class FakeMetrics:
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def webhook(self, provider: str, result: str) -> None:
        self.counts[(provider, result)] += 1


@dataclass
class Setup:
    intake: Intake
    scheduler: FakeScheduler
    metrics: FakeMetrics
    config: list[Config]


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    path = tmp_path / "syncd.yaml"
    path.write_text(CONFIG)
    config = [load_config(path, environ={"HOOK_SECRET": SECRET, "OLD_SECRET": "old"})]
    scheduler, metrics = FakeScheduler(), FakeMetrics()
    intake = Intake(lambda: config[0], scheduler, metrics, clock=lambda: NOW)
    return Setup(intake, scheduler, metrics, config)


def generic(ref: str = "main", delivery: str = "d-1", **extra: Any) -> tuple[dict[str, str], bytes]:
    body = json.dumps({"repository": URL, "ref": ref, **extra}).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Signature": f"sha256={signature}", "X-Delivery-Id": delivery}, body


def test_a_signed_push_requests_a_sync_of_each_matched_workspace(setup: Setup) -> None:
    headers, body = generic(paths=["export/steps/a.step"])
    receipt = run(setup.intake.receive_push("generic", headers, body))
    assert receipt.outcome is DeliveryOutcome.ACCEPTED
    assert receipt.matched == receipt.queued == ("a",)
    assert setup.scheduler.requested == [("a", Trigger.WEBHOOK)]
    assert setup.metrics.counts == {("generic", "accepted"): 1}
    # Health's view: the provider and the second configured secret were seen.
    assert setup.intake.webhook_last_seen == {"generic": NOW}
    assert set(setup.intake.secret_last_seen) == {("generic", 1)}


def test_the_provider_is_detected_when_the_path_names_none(setup: Setup) -> None:
    headers, body = generic()
    assert run(setup.intake.receive_push(None, headers, body)).provider == "generic"
    with pytest.raises(ProviderNotDetected):
        run(setup.intake.receive_push(None, {}, body))
    assert setup.metrics.counts[("unknown", "malformed")] == 1


def test_a_redelivery_starts_nothing_new(setup: Setup) -> None:
    headers, body = generic()
    run(setup.intake.receive_push("generic", headers, body))
    again = run(setup.intake.receive_push("generic", headers, body))
    assert again.outcome is DeliveryOutcome.DUPLICATE and again.matched == ()
    assert len(setup.scheduler.requested) == 1
    assert setup.metrics.counts[("generic", "duplicate")] == 1


def test_an_unsigned_request_is_refused_before_it_is_read(setup: Setup) -> None:
    headers, _ = generic()
    with pytest.raises(BadSignature):
        run(setup.intake.receive_push("generic", {**headers, "X-Signature": "sha256=00"}, b"{"))
    assert setup.metrics.counts == {("generic", "unauthorized"): 1}
    assert setup.scheduler.requested == [] and setup.intake.webhook_last_seen == {}


def test_a_signed_but_malformed_payload(setup: Setup) -> None:
    body = b'{"ref": "main"}'
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    with pytest.raises(MalformedPayload, match="repository"):
        run(setup.intake.receive_push("generic", {"x-signature": f"sha256={signature}"}, body))
    assert setup.metrics.counts == {("generic", "malformed"): 1}


def test_an_unknown_provider(setup: Setup) -> None:
    with pytest.raises(UnknownProvider):
        run(setup.intake.receive_push("svn", {}, b""))
    assert setup.metrics.counts == {("unknown", "malformed"): 1}


def test_ping_ignored_and_unmatched(setup: Setup) -> None:
    body = b"{}"
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    for event, outcome in (("ping", DeliveryOutcome.PING), ("issues", DeliveryOutcome.IGNORED)):
        headers = {"x-github-event": event, "x-hub-signature-256": signature}
        assert run(setup.intake.receive_push("github", headers, body)).outcome is outcome
    headers, body = generic(ref="feature")
    assert (
        run(setup.intake.receive_push("generic", headers, body)).outcome
        is DeliveryOutcome.UNMATCHED
    )
    assert setup.scheduler.requested == []
    assert setup.metrics.counts == {
        ("github", "ping"): 1,
        ("github", "ignored"): 1,
        ("generic", "unmatched"): 1,
    }


def test_a_full_queue_refuses_and_the_delivery_may_be_sent_again(setup: Setup) -> None:
    setup.scheduler.room = 0
    headers, body = generic()
    with pytest.raises(Overloaded) as e:
        run(setup.intake.receive_push("generic", headers, body))
    assert (e.value.matched, e.value.queued) == (("a",), ())
    assert "too many sync requests" in str(e.value)
    assert setup.metrics.counts == {("generic", "overloaded"): 1}
    setup.scheduler.room = 1
    assert (
        run(setup.intake.receive_push("generic", headers, body)).outcome is DeliveryOutcome.ACCEPTED
    )


def test_targets_are_worked_out_once_per_config(setup: Setup, tmp_path: Path) -> None:
    first = setup.intake.targets()
    assert [t.workspace_id for t in first] == ["a", "b"]
    assert setup.intake.targets() is first
    path = tmp_path / "other.yaml"
    path.write_text(CONFIG.replace("branch: dev", "branch: main"))
    setup.config[0] = load_config(path, environ={"HOOK_SECRET": SECRET, "OLD_SECRET": "old"})
    assert setup.intake.targets() is not first
    headers, body = generic(delivery="d-2")
    assert run(setup.intake.receive_push("generic", headers, body)).matched == ("a", "b")


def test_a_secret_rotated_out_by_a_reload_signs_nothing_more(setup: Setup, tmp_path: Path) -> None:
    """The signature checks are set up per config: the next config's secrets replace them."""
    headers, body = generic(delivery="d-3")
    assert (
        run(setup.intake.receive_push("generic", headers, body)).outcome is DeliveryOutcome.ACCEPTED
    )
    path = tmp_path / "rotated.yaml"
    path.write_text(CONFIG)
    setup.config[0] = load_config(path, environ={"HOOK_SECRET": "new-secret", "OLD_SECRET": "o"})
    headers, body = generic(delivery="d-4")  # signed with the secret that was rotated out
    with pytest.raises(BadSignature):
        run(setup.intake.receive_push("generic", headers, body))
    assert setup.metrics.counts[("generic", "unauthorized")] == 1


def test_a_redelivery_after_a_restart_is_known_from_the_store(setup: Setup) -> None:
    store = FakeStore(clock=lambda: NOW)

    def started() -> Intake:  # a new process: nothing in memory, the same store
        return Intake(lambda: setup.config[0], setup.scheduler, setup.metrics, DeliveryLog(store))

    headers, body = generic(delivery="d-9")
    assert run(started().receive_push("generic", headers, body)).outcome is DeliveryOutcome.ACCEPTED
    assert (
        run(started().receive_push("generic", headers, body)).outcome is DeliveryOutcome.DUPLICATE
    )
    assert len(setup.scheduler.requested) == 1


def test_a_refused_delivery_is_forgotten_by_the_store_too(setup: Setup) -> None:
    store = FakeStore(clock=lambda: NOW)
    log = DeliveryLog(store)
    intake = Intake(lambda: setup.config[0], setup.scheduler, setup.metrics, log, lambda: NOW)
    setup.scheduler.room = 0
    headers, body = generic(delivery="d-10")
    with pytest.raises(Overloaded):
        run(intake.receive_push("generic", headers, body))
    assert store.snapshot().deliveries == {}
    setup.scheduler.room = 1
    assert run(intake.receive_push("generic", headers, body)).outcome is DeliveryOutcome.ACCEPTED
    assert set(store.snapshot().deliveries) == {("generic", "d-10")}


def test_dedupe_falls_back_to_memory_when_the_store_fails(setup: Setup) -> None:
    class Down:
        def remember_delivery(self, provider: str, delivery: str, now: float) -> bool:
            raise OSError("connection refused")

        def forget_delivery(self, provider: str, delivery: str) -> None:
            raise OSError("connection refused")

    log = DeliveryLog(Down())
    intake = Intake(lambda: setup.config[0], setup.scheduler, setup.metrics, log, lambda: NOW)
    headers, body = generic(delivery="d-11")
    assert run(intake.receive_push("generic", headers, body)).outcome is DeliveryOutcome.ACCEPTED
    assert run(intake.receive_push("generic", headers, body)).outcome is DeliveryOutcome.DUPLICATE


def test_memory_answers_a_redelivery_without_asking_the_store() -> None:
    store = FakeStore()
    log = DeliveryLog(store, capacity=2)
    assert run(log.claim("github", "a", NOW)) and not run(log.claim("github", "a", NOW + 1))
    store.forget_delivery("github", "a")  # memory alone still knows it
    assert not run(log.claim("github", "a", NOW + 2))
    assert run(log.claim("github", "b", NOW)) and run(log.claim("github", "c", NOW))
    # "a" fell out of the bounded memory; the store (where it was forgotten) takes it anew.
    assert run(log.claim("github", "a", NOW + 3))
    assert run(log.claim("github", None, NOW)) and run(log.claim("github", None, NOW))


# --- a push's changed files, listed only for a repository some workspace follows a folder of ---

OTHER = "https://git.example.com/team/other.git"  # followed whole, by workspace "c"
NOBODY = "https://git.example.com/team/nobody.git"  # followed by no workspace


@pytest.fixture
def folders(tmp_path: Path) -> Setup:
    """CONFIG's two workspaces on export/steps of URL, and "c" on all of OTHER."""
    path = tmp_path / "folders.yaml"
    whole = f"  - {{id: c, name: c, source: {{url: {OTHER}, branch: main, path: .}}}}\n"
    path.write_text(CONFIG + whole)
    config = [load_config(path, environ={"HOOK_SECRET": SECRET, "OLD_SECRET": "old"})]
    scheduler, metrics = FakeScheduler(), FakeMetrics()
    intake = Intake(lambda: config[0], scheduler, metrics, clock=lambda: NOW)
    return Setup(intake, scheduler, metrics, config)


def github(url: str, commits: Any, delivery: str = "g-1") -> tuple[dict[str, str], bytes]:
    """GitHub's push of main in `url`, one branch already there, listing `commits`."""
    payload = {
        "ref": "refs/heads/main",
        "before": "1" * 40,
        "after": "2" * 40,
        "created": False,
        "deleted": False,
        "forced": False,
        "commits": commits,
        "repository": {"clone_url": url},
    }
    body = json.dumps(payload).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": f"sha256={signature}",
        "Content-Type": "application/json",
    }
    return headers, body


def touching(*files: str) -> list[dict[str, Any]]:
    return [{"added": list(files), "modified": [], "removed": []}]


def test_a_workspace_on_a_folder_is_matched_by_the_files_a_push_changed(folders: Setup) -> None:
    inside = run(
        folders.intake.receive_push("github", *github(URL, touching("export/steps/x.json")))
    )
    assert inside.outcome is DeliveryOutcome.ACCEPTED and inside.matched == ("a",)
    outside = run(folders.intake.receive_push("github", *github(URL, touching("README.md"), "g-2")))
    assert outside.outcome is DeliveryOutcome.UNMATCHED
    # Files not all listed (here: a commit without its lists) might touch the folder.
    unknown = [{"id": "3" * 40}]
    assert run(folders.intake.receive_push("github", *github(URL, unknown, "g-3"))).matched == (
        "a",
    )
    # A workspace on the whole repository takes a push whatever it changed.
    whole = run(folders.intake.receive_push("github", *github(OTHER, touching("README.md"), "g-4")))
    assert whole.matched == ("c",)


@pytest.mark.parametrize("commits", ["not a list", [1], [{"added": "x"}], [{"added": [2]}]])
def test_commits_github_cannot_list_are_answered_alike_wherever_the_push_goes(
    folders: Setup, commits: Any
) -> None:
    # GitHub's commit list only ever narrows a match: one that cannot be read means unknown
    # files, for a repository with a folder followed (listed), or without (not listed).
    def receive(*args: Any) -> Receipt:
        return run(folders.intake.receive_push(*args))

    assert receive("github", *github(URL, commits, "g-1")).matched == ("a",)
    assert receive("github", *github(OTHER, commits, "g-2")).matched == ("c",)
    assert receive("github", *github(NOBODY, commits, "g-3")).outcome is DeliveryOutcome.UNMATCHED


@pytest.mark.parametrize("url", [URL, OTHER, NOBODY])
def test_a_malformed_paths_list_is_400_for_matched_and_unmatched_repositories(
    folders: Setup, url: str
) -> None:
    body = json.dumps({"repository": url, "ref": "main", "paths": ["ok", 3]}).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    with pytest.raises(MalformedPayload, match="paths"):
        run(folders.intake.receive_push("generic", {"x-signature": f"sha256={signature}"}, body))
    assert folders.metrics.counts == {("generic", "malformed"): 1}
    assert folders.scheduler.requested == []


@pytest.mark.parametrize("url", [URL, OTHER, NOBODY])
def test_a_malformed_github_push_is_400_for_matched_and_unmatched_repositories(
    folders: Setup, url: str
) -> None:
    headers, body = github(url, touching("export/steps/x.json"))
    payload = json.loads(body)
    payload["ref"] = 7
    body = json.dumps(payload).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers["X-Hub-Signature-256"] = f"sha256={signature}"
    with pytest.raises(MalformedPayload, match="ref"):
        run(folders.intake.receive_push("github", headers, body))
    assert folders.metrics.counts == {("github", "malformed"): 1}
