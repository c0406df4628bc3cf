"""`syncd wait WS --revision SHA|HEAD`: for deploy scripts, a wait that ends only once the
workspace has applied that commit (or one after it) and is Healthy, in rounds the server holds
(client mode: `GET /api/v1/workspaces/{id}/wait`) or checks of this host's store (local mode).
"""

from __future__ import annotations

import argparse
import sys
import time

from syncd.cli import output as out
from syncd.cli.apierrors import ApiFailed
from syncd.cli.backend import Backend
from syncd.cli.options import EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE
from syncd.core.errors import RevisionNotFound
from syncd.service.waiting import BadRevision

# A round of `wait --revision` in client mode: the server holds each request this long at most.
WAIT_ROUND = 60.0
# Answers that say "not now" (remote reads all busy, a queue full): asked again after a pause.
BUSY = (429, 503)


def wait_revision(args: argparse.Namespace, backend: Backend, timeout: float) -> int:
    """`wait --revision`: 0 once applied (or a descendant) and healthy, 1 when a run of it
    failed, 3 on timeout; 2 when the revision is not on the branch (or not a revision)."""
    ws = backend.find(args.workspace)
    revision: str = args.revision
    deadline = time.monotonic() + timeout
    while True:
        left = max(0.0, deadline - time.monotonic())
        try:
            found = backend.wait_revision(ws, revision, min(left, WAIT_ROUND))
        except ApiFailed as e:
            if e.status in BUSY and deadline - time.monotonic() > 1.0:
                time.sleep(1.0)
                backend.next_round()
                continue
            if e.status != 422:
                raise
            print(f"syncd: {out.label(ws)}: {e.body.get('error') or e}", file=sys.stderr)
            return EXIT_USAGE
        except (RevisionNotFound, BadRevision) as e:  # local mode: not on the branch
            print(f"syncd: {out.label(ws)}: {e}", file=sys.stderr)
            return EXIT_USAGE
        revision = found["revision"]  # HEAD is resolved once: later rounds ask for its sha
        if found["result"] != "waiting" or deadline - time.monotonic() <= 0:
            break
        backend.next_round()
    if args.json:
        out.print_json(found)
    out.waited(ws, found, args.revision, args.timeout, quiet=args.json)
    return {"applied": EXIT_OK, "failed": EXIT_FAILED}.get(found["result"], EXIT_TIMEOUT)
