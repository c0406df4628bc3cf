"""The promotion gate as a pure rule (`syncd.core.promotion.decide`): a commit applies only once
the upstream applied it (or a descendant) and stayed Healthy for the soak."""

from __future__ import annotations

from syncd.core.model import Health, HealthRecord, Run, RunResult, Trigger
from syncd.core.promotion import Upstream, decide

# A line of history: c1 <- c2 <- c3, and c9 on another line.
PARENTS = {"c2": "c1", "c3": "c2"}


def contains(upstream: str, commit: str) -> bool:
    at: str | None = upstream
    for _ in range(10):
        if at == commit:
            return True
        at = PARENTS.get(at or "")
    return False


def applied(revision: str, at: float, result: RunResult = RunResult.SUCCEEDED) -> Run:
    return Run(f"r-{revision}-{at}", "staging", Trigger.WEBHOOK, revision, result, at - 1, at)


def healthy(since: float) -> HealthRecord:
    return HealthRecord("staging", Health.HEALTHY, since)


SOAK = 900.0


def test_a_commit_the_upstream_has_not_applied_waits_without_an_until() -> None:
    up = Upstream("c1", healthy(0), [applied("c1", 100)])
    decision = decide("c2", up, SOAK, 5000, contains)
    assert not decision.ok and decision.until is None and "not applied" in decision.why
    assert not decide("c2", Upstream(None, None), SOAK, 5000, contains).ok
    assert not decide("c9", up, SOAK, 5000, contains).ok  # another line of history


def test_applied_upstream_it_waits_for_the_soak_then_applies() -> None:
    up = Upstream("c2", healthy(0), [applied("c2", 1000), applied("c1", 100)])
    soaking = decide("c2", up, SOAK, 1500, contains)
    assert not soaking.ok and soaking.until == 1900
    assert decide("c2", up, SOAK, 1900, contains).ok
    assert decide("c2", up, 0, 1000, contains).ok  # no soak: at once


def test_a_descendant_applied_upstream_counts_from_the_first_apply_holding_it() -> None:
    # c2 was applied at 1000, then c3 (which holds c2) at 1600: c2 soaks from 1000, and a busy
    # upstream does not keep pushing the soak back.
    up = Upstream("c3", healthy(0), [applied("c3", 1600), applied("c2", 1000)])
    assert decide("c2", up, SOAK, 1900, contains).ok
    assert decide("c3", up, SOAK, 1900, contains).until == 2500
    # A rollback upstream to c1 in between breaks the series: c2 counts from after it.
    rolled = [applied("c3", 1600), applied("c1", 1200), applied("c2", 1000)]
    assert decide("c2", Upstream("c3", healthy(0), rolled), SOAK, 1900, contains).until == 2500
    # Planned and failed runs do not change what was applied.
    noisy = [applied("c9", 1700, RunResult.FAILED), *up.runs]
    assert decide("c2", Upstream("c3", healthy(0), noisy), SOAK, 1900, contains).ok


def test_an_upstream_that_is_not_healthy_holds_it_and_the_soak_starts_over() -> None:
    runs = [applied("c2", 1000)]
    degraded = HealthRecord("staging", Health.DEGRADED, 1200, error="run failed", failures=1)
    held = decide("c2", Upstream("c2", degraded, runs), SOAK, 1800, contains)
    assert not held.ok and held.until is None and "Degraded" in held.why
    suspended = HealthRecord("staging", Health.SUSPENDED, 1200)
    assert not decide("c2", Upstream("c2", suspended, runs), SOAK, 5000, contains).ok
    # Healthy again at 1500: the soak counts from then.
    again = decide("c2", Upstream("c2", healthy(1500), runs), SOAK, 1800, contains)
    assert not again.ok and again.until == 2400
