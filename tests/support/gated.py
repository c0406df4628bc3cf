"""`syncd` (the CLI) with its store's first apply held at a gate, so that a test can make two
processes' syncs interleave: one plans, waits at the gate, and applies after the other.

    SYNCD_TEST_APPLY_GATE=/tmp/gate python -m tests.support.gated sync --config c.yaml WS

touches `/tmp/gate.planned` when the first apply is called and waits (up to two minutes) for
`/tmp/gate.go` before it goes on. Only the first apply waits: a retry after a conflict does
not. Test code only: the product never sleeps for a test.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from syncd import cli
from syncd.store.sqlite import SqliteStore

GATE_ENV = "SYNCD_TEST_APPLY_GATE"
WAIT_SECONDS = 120.0


def hold_first_apply(gate: Path) -> None:
    from syncd.store.postgres import PostgresStore

    calls: list[None] = []

    def gate_of(original: Any) -> Any:
        def gated(self: Any, *args: Any, **kwargs: Any) -> Any:
            if not calls:
                calls.append(None)
                gate.with_suffix(".planned").touch()
                deadline = time.monotonic() + WAIT_SECONDS
                while not gate.with_suffix(".go").exists():
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{gate}.go never appeared")
                    time.sleep(0.02)
            return original(self, *args, **kwargs)

        return gated

    # Either store: the config names one.
    SqliteStore.apply = gate_of(SqliteStore.apply)  # type: ignore[method-assign]
    PostgresStore.apply = gate_of(PostgresStore.apply)  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    import os

    gate = os.environ.get(GATE_ENV)
    if gate:
        hold_first_apply(Path(gate))
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
