"""What the tests share: the git server with faults, configs and step files, the daemon
harness, and webhooks as each git host sends them (`tests.support.payloads`).

The names most tests need are re-exported here; the daemon harness lives in
`tests.support.daemon`. Fixtures stay in the conftest.py files, built from these.
"""

from __future__ import annotations

from tests.support.configs import (
    API_TOKEN,
    GIT_PASSWORD_ENV,
    READ_TOKEN,
    WEBHOOK_SECRET,
    daemon_env,
    workspace,
    write_config,
    write_step,
)
from tests.support.gitserver import FAULTS, Fault, GitServer, WorkTree

__all__ = [
    "API_TOKEN",
    "FAULTS",
    "GIT_PASSWORD_ENV",
    "READ_TOKEN",
    "WEBHOOK_SECRET",
    "Fault",
    "GitServer",
    "WorkTree",
    "daemon_env",
    "workspace",
    "write_config",
    "write_step",
]
