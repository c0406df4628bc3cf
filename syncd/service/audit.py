"""Who changed what: one `audit` line per action, wherever it came from (the API, the console,
the local CLI), written when the action ends, on its own logger so that it can be routed or
kept apart. The token's name, never its value."""

from __future__ import annotations

import getpass
import logging
from dataclasses import dataclass
from typing import Literal

from syncd.ops.logs import fields
from syncd.service.answers import verdict

audit = logging.getLogger("syncd.audit")

Via = Literal["api", "console", "local"]


@dataclass(frozen=True)
class Actor:
    """Who acts: an API token's or a console session's token name, or `local:<os user>`."""

    name: str
    via: Via

    @classmethod
    def local(cls) -> Actor:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no name for this uid (a container's numeric user)
            user = "unknown"
        return cls(f"local:{user}", "local")


def record(
    actor: Actor,
    action: str,
    workspace: str | None,
    *,
    step: str | None = None,
    revision: str | None = None,
    status: int,
    error: BaseException | None = None,
) -> None:
    """The audit line of one action: how it ended as the status its caller was answered."""
    audit.log(
        logging.INFO if status < 400 else logging.WARNING,
        "audit",
        extra=fields(
            token=actor.name,
            via=actor.via,
            action=action,
            workspace=workspace,
            step=step,
            revision=revision,
            result=verdict(status),
            status=status,
            error=None if error is None else str(error),
        ),
    )
