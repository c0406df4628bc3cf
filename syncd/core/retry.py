"""The one retry policy: who retries what, how often, and why. Every retry in syncd is here.

Three layers retry, each for a reason the others cannot serve:

- **The scheduler's loop** retries a *run* that failed for a transient reason (connection,
  timeout, 5xx, a locked store), with capped, jittered exponential backoff (`RUN`), until it
  succeeds or the workspace's branch moves on. A permanent failure (a bad step file at commit
  X, a refused plan) is never retried: it waits for a new commit. A refused login is retried
  by the loop too, slowly (the backoff reaches its cap within minutes), because the fix comes
  from outside: a rotated password file or a restored account.
- **Polling** stretches the interval of a remote that keeps failing (`POLL`), so a remote that
  is down is not asked every few seconds by every replica.
- **One network attempt** (a git ls-remote, fetch or push; an SMTP send; a post to a chat or
  webhook target) is repeated a few times within seconds (`GIT_ATTEMPT`, `SMTP_ATTEMPT`,
  `TARGET_ATTEMPT`): a dropped connection or a greylisting
  server is common and short, and failing the whole run (or the whole digest) for it would
  make every blip a recorded failure and an e-mail. These attempts are bounded in count and
  time, so the loop above still sees every failure that lasts. A refused login, a TLS error
  or a missing branch is never repeated here: another attempt within seconds cannot help.

Beside these, the daemon starts again an intake process that exited, backing off while it
keeps exiting (`INTAKE_RESTART`), so that a process that cannot start is not spawned in a loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tenacity


@dataclass(frozen=True)
class Policy:
    """Exponential backoff: `base`, doubling, capped at `cap`; `attempts` 0 means unbounded."""

    base: float
    cap: float
    attempts: int = 0

    def delay(self, failures: int, rng: Callable[[], float]) -> float:
        """The wait after the `failures`-th failure in a row: jitter in the upper half."""
        delay = min(self.cap, self.base * 2 ** max(0, failures - 1))
        return float(delay * (0.5 + rng() / 2))


RUN = Policy(base=5.0, cap=300.0)
POLL = Policy(base=0.0, cap=600.0)  # base: the workspace's own poll interval
GIT_ATTEMPT = Policy(base=0.5, cap=10.0, attempts=4)
SMTP_ATTEMPT = Policy(base=1.0, cap=30.0, attempts=4)
# A chat or webhook target (Slack, Teams, a JSON webhook): a 429 or a 5xx is usually short.
# A message still refused after these waits for the next digest tick, its cursor unmoved.
TARGET_ATTEMPT = Policy(base=2.0, cap=30.0, attempts=3)
# A report to a git host (a commit status, a pull request's plan): kept off the sync's path and
# tried again for about ten minutes; a newer report of the same thing replaces it meanwhile.
REPORT_ATTEMPT = Policy(base=1.0, cap=120.0, attempts=8)
# A replica's connections to PostgreSQL while the database is away (its LISTEN session is
# opened again; requests are refused at once, a 503, instead of each waiting out a connect
# timeout): one flat second between attempts, taken whole (no jitter). Not backing off further
# because the replicas should hear the database within a second of its return, and one
# attempt a second per replica costs the server nothing.
REPLICA_RECONNECT = Policy(base=1.0, cap=1.0)
# An intake process that exits is started again after 1 s, then 2, 4... up to 30 s while it
# keeps exiting: one that cannot start (a broken install, no file descriptors left) would
# otherwise be spawned in a tight loop, each attempt a log line. One that ran for
# `INTAKE_STEADY_AFTER` seconds was working: its next exit counts as the first again. Taken
# without jitter (`rng` always 1): the processes are one daemon's children on one host, there
# is no crowd of replicas to spread out.
INTAKE_RESTART = Policy(base=1.0, cap=30.0)
INTAKE_STEADY_AFTER = 60.0


def attempts(
    policy: Policy,
    retry_if: Callable[[BaseException], bool],
    on_retry: Callable[[int, BaseException | None], None],
    sleep: Callable[[float], None] | None = None,
) -> tenacity.Retrying:
    """A tenacity runner for one operation's attempts under `policy` (bounded count)."""

    def before_sleep(state: tenacity.RetryCallState) -> None:
        on_retry(state.attempt_number, state.outcome.exception() if state.outcome else None)

    extra: dict[str, Any] = {"sleep": sleep} if sleep is not None else {}
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(1, policy.attempts)),
        wait=tenacity.wait_exponential_jitter(
            multiplier=min(policy.base, policy.cap),
            max=policy.cap,
            jitter=min(1.0, policy.cap),
        ),
        retry=tenacity.retry_if_exception(retry_if),
        before_sleep=before_sleep,
        reraise=True,
        **extra,
    )


# A caller told "busy" (HTTP 429 or 503: the queue is full, remote reads are all taken, the
# store is locked) is asked to try again after this many seconds (Retry-After).
RETRY_AFTER_SECONDS = 5
