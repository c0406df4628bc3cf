"""The verify phase of a sync (issue #23), against the stateful fake git with real signatures:
SSH keys made by ssh-keygen, payloads signed by `ssh-keygen -Y sign` as `git commit -S` signs
them, verified by the real `verify_commit`. What a refusal leaves in the store is checked on the
fake store, SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

import pytest

from syncd.config import WorkspaceConfig
from syncd.config.types import VerifyConfig
from syncd.core.model import Health, Mode, RunResult, Status, Trigger
from syncd.git.signatures import Unverified
from syncd.git.verify import verify_commit
from syncd.runs.scheduler import should_sync
from syncd.service.answers import status_of
from syncd.service.workspaces import Workspaces
from syncd.store import Store
from syncd.sync.engine import Engine, Observers
from syncd.sync.health import HealthKeeper
from syncd.sync.verifying import Verifier
from tests.support import postgres
from tests.support.fakes import FakeGit, FakeStore, config, step_files, workspace
from tests.support.signing import SshSigner, write_allowed_signers
from tests.support.stores import KINDS, open_store

PRINCIPAL = "dev@example.com"


def ssh_sign(signer: SshSigner) -> Callable[[bytes], bytes]:
    """Sign a payload as git does with gpg.format=ssh: `ssh-keygen -Y sign -n git`."""

    def sign(payload: bytes) -> bytes:
        proc = subprocess.run(
            ["ssh-keygen", "-q", "-Y", "sign", "-n", "git", "-f", str(signer.key_file)],
            input=payload,
            capture_output=True,
            timeout=30,
            check=True,
        )
        return proc.stdout

    return sign


@dataclass
class World:
    store: Store
    git: FakeGit
    engine: Engine
    keeper: HealthKeeper
    service: Workspaces
    ws: WorkspaceConfig  # the workspace with `verify`, its allowed signers file `allowed`
    allowed: Path
    sign: Callable[[bytes], bytes]
    stranger: Callable[[bytes], bytes]
    refusals: list[tuple[str, str]] = field(default_factory=list)

    def live(self, ws_id: str = "ws") -> dict[str, str]:
        return {n: s.content.do for n, s in self.store.live_steps(ws_id).items()}

    def health(self) -> Health:
        state = self.store.state("ws")
        last = self.store.run(state.last_run_id) if state.last_run_id else None
        return self.keeper.current(self.ws, state, last).health


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[SshSigner, SshSigner]:
    root = tmp_path_factory.mktemp("keys")
    return SshSigner(root, name="dev"), SshSigner(root, name="stranger")


def make_world(
    store: Store, tmp_path: Path, keys: tuple[SshSigner, SshSigner], verify: Verifier | None = None
) -> World:
    dev, stranger = keys
    allowed = write_allowed_signers(tmp_path / "allowed_signers", dev.allowed_signers(PRINCIPAL))
    ticks = count(1000)
    git = FakeGit()
    refusals: list[tuple[str, str]] = []
    keeper = HealthKeeper(store, clock=lambda: float(next(ticks)))
    verifier = verify or Verifier(on_failure=lambda ws, reason: refusals.append((ws, reason)))
    engine = Engine(
        store,
        git,
        observer=Observers((keeper,)),
        clock=lambda: float(next(ticks)),
        verifier=verifier,
    )
    ws = workspace("ws", verify=VerifyConfig(allowed, None))
    cfg = config(ws, PLAIN)
    service = Workspaces(lambda: cfg, store, git, engine, health=keeper)  # type: ignore[arg-type]
    return World(
        store, git, engine, keeper, service, ws, allowed, ssh_sign(dev), ssh_sign(stranger),
        refusals,
    )  # fmt: skip


PLAIN = workspace("plain")  # verifies nothing


@pytest.fixture
def pg_url() -> Iterator[str]:
    postgres.require()
    with postgres.fresh_database() as url:
        yield url


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def any_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Store]:
    store = open_store(kind, tmp_path, request)
    yield store
    store.close()


@pytest.fixture
def world(any_store: Store, tmp_path: Path, keys: tuple[SshSigner, SshSigner]) -> Iterator[World]:
    yield make_world(any_store, tmp_path, keys)


@pytest.fixture
def fake_world(tmp_path: Path, keys: tuple[SshSigner, SshSigner]) -> World:
    return make_world(FakeStore(), tmp_path, keys)


# -- in the store: what a verified and a refused run leave (fake, SQLite, PostgreSQL) ---------


def test_a_commit_signed_by_a_listed_key_is_applied_and_the_run_names_the_signer(
    world: World,
) -> None:
    sha = world.git.commit(step_files({"greet": "hello()"}), sign=world.sign)
    out = world.engine.sync(world.ws, Trigger.WEBHOOK)
    assert out.run.result is RunResult.SUCCEEDED, out.run.error
    assert out.run.signed_by == PRINCIPAL
    assert world.live() == {"greet": "hello()"}
    stored = world.store.run(out.run.id)
    assert stored is not None and stored.signed_by == PRINCIPAL
    assert world.store.state("ws").last_applied_revision == sha
    # A verified sync reads one commit object more than a plain one: its signature.
    assert world.git.signatures_read == 1
    view = world.service.view(world.ws)
    assert view["signed_by"] == PRINCIPAL and view["last_run"]["signed_by"] == PRINCIPAL
    assert world.health() is Health.HEALTHY and world.refusals == []


def test_an_unsigned_commit_applies_nothing_fails_for_good_and_degrades(world: World) -> None:
    good = world.git.commit(step_files({"greet": "hello()"}), sign=world.sign)
    world.engine.sync(world.ws, Trigger.WEBHOOK)
    bad = world.git.commit(step_files({"greet": "evil()", "extra": "x()"}))
    out = world.engine.sync(world.ws, Trigger.WEBHOOK)
    assert out.run.result is RunResult.FAILED
    assert out.run.error is not None and out.run.error.startswith("unverified: ")
    assert out.run.revision == bad and out.run.signed_by is None
    assert (out.run.created, out.run.updated, out.run.deleted) == (0, 0, 0)
    # Nothing applied: the live steps and git's record are the signed commit's.
    assert world.live() == {"greet": "hello()"}
    state = world.store.state("ws")
    assert state.last_applied_revision == good and state.failed_revision == bad
    assert state.status is Status.OUT_OF_SYNC
    # Permanent: polls leave the commit alone until the branch moves on.
    assert not should_sync(Mode.AUTOMATIC, state, bad)
    stored = world.store.run(out.run.id)
    assert stored is not None and stored.error == out.run.error
    assert world.health() is Health.DEGRADED
    assert world.refusals == [("ws", "unsigned")]
    # The workspace still shows who signed what it applies.
    assert world.service.view(world.ws)["signed_by"] == PRINCIPAL
    # A signed commit on top applies and ends the failure.
    world.git.commit(step_files({"greet": "hello(2)", "extra": "x()"}), sign=world.sign)
    assert should_sync(Mode.AUTOMATIC, world.store.state("ws"), world.git.branches["main"])
    again = world.engine.sync(world.ws, Trigger.POLL)
    assert again.run.result is RunResult.SUCCEEDED, again.run.error
    assert world.live() == {"greet": "hello(2)", "extra": "x()"}
    assert world.health() is Health.HEALTHY


# -- the phase itself (fake store) ------------------------------------------------------------


def test_a_signature_by_a_key_not_listed_is_refused(fake_world: World) -> None:
    w = fake_world
    w.git.commit(step_files({"greet": "hello()"}), sign=w.stranger)
    assert isinstance(w.store, FakeStore)
    before = w.store.snapshot()
    out = w.engine.sync(w.ws, Trigger.WEBHOOK)
    assert out.run.result is RunResult.FAILED and (out.run.error or "").startswith("unverified:")
    assert w.refusals == [("ws", "unknown_key")]
    assert w.live() == {}
    assert w.store.snapshot().steps == before.steps


def test_a_workspace_without_verify_reads_no_signature(fake_world: World) -> None:
    w = fake_world
    w.git.commit(step_files({"greet": "hello()"}))
    out = w.engine.sync(PLAIN, Trigger.WEBHOOK)
    assert out.run.result is RunResult.SUCCEEDED, out.run.error
    assert out.run.signed_by is None and w.git.signatures_read == 0
    assert w.service.view(PLAIN)["signed_by"] is None


def test_a_pinned_revision_is_verified_too(fake_world: World) -> None:
    w = fake_world
    unsigned = w.git.commit(step_files({"greet": "one()"}))
    signed = w.git.commit(step_files({"greet": "two()"}), sign=w.sign)
    out = w.engine.sync(w.ws, Trigger.MANUAL, revision=unsigned)
    assert out.run.result is RunResult.FAILED and (out.run.error or "").startswith("unverified:")
    assert w.live() == {}
    out = w.engine.sync(w.ws, Trigger.MANUAL, revision=signed)
    assert out.run.result is RunResult.SUCCEEDED and out.run.signed_by == PRINCIPAL


def test_a_verifier_that_runs_out_of_time_is_retried(
    tmp_path: Path, keys: tuple[SshSigner, SshSigner]
) -> None:
    # A budget already spent: the real verify_commit refuses with "timeout" before it starts
    # ssh-keygen. Nothing the commit carries: the run is left to the retries.
    spent = Verifier(functools.partial(verify_commit, timeout=0.0))
    w = make_world(FakeStore(), tmp_path, keys, verify=spent)
    sha = w.git.commit(step_files({"greet": "hello()"}), sign=w.sign)
    out = w.engine.sync(w.ws, Trigger.WEBHOOK)
    assert out.run.result is RunResult.FAILED and "unverified:" in (out.run.error or "")
    state = w.store.state("ws")
    assert state.failed_revision is None and should_sync(Mode.AUTOMATIC, state, sha)


# -- before anything is queued, and after a reload ----------------------------------------------


def test_a_manual_sync_or_rollback_to_an_untrusted_commit_is_refused_with_422(
    fake_world: World,
) -> None:
    w = fake_world
    signed = w.git.commit(step_files({"greet": "one()"}), sign=w.sign)
    unsigned = w.git.commit(step_files({"greet": "two()"}))
    assert w.service.check_revision(w.ws, signed[:10]) == signed
    with pytest.raises(Unverified) as refused:
        w.service.check_revision(w.ws, unsigned)
    assert status_of(refused.value) == 422 and str(refused.value).startswith("unverified: ")
    with pytest.raises(Unverified):
        w.service.check_head(w.ws)  # the head is the unsigned commit
    w.service.check_head(PLAIN)  # no verify: nothing to check
    assert w.store.runs("ws") == []  # refused before any run
    assert w.refusals == [("ws", "unsigned"), ("ws", "unsigned")]


def test_a_key_taken_out_of_the_file_degrades_the_workspace_at_reload(fake_world: World) -> None:
    w = fake_world
    sha = w.git.commit(step_files({"greet": "hello()"}), sign=w.sign)
    assert w.engine.sync(w.ws, Trigger.WEBHOOK).run.result is RunResult.SUCCEEDED
    assert w.service.recheck_signatures() == []
    assert w.health() is Health.HEALTHY
    write_allowed_signers(w.allowed)  # no key listed any more
    assert w.service.recheck_signatures() == ["ws"]
    record = w.store.health("ws")
    assert record is not None and record.health is Health.DEGRADED
    assert record.error is not None and record.error.startswith("unverified: ")
    assert sha[:12] in record.error
    # Not rolled back: the steps stay as applied.
    assert w.live() == {"greet": "hello()"} and w.store.state("ws").last_applied_revision == sha
