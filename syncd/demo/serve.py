"""`syncd demo --serve`: after the demo, its https git remote stays up until Ctrl-C (or
SIGTERM), with its CA and a ready config, for trying real configs against it.

The remote listens on loopback only, with the demo's throwaway basic-auth password and CA; what
to use is printed once, then the process waits. Not pure: it blocks on signals.
"""

from __future__ import annotations

import shlex
import signal
import threading
from types import FrameType
from typing import Any

# A bound on the wait, so that a lost signal cannot hold the process forever: a week.
MAX_SERVE_SECONDS = 7 * 24 * 3600.0


def serve_remote(demo: Any) -> None:
    """Print what to use, then wait for SIGINT or SIGTERM; the caller stops the remote."""
    if demo.sock is not None:  # the demo's API port: free again, for `syncd serve` to take
        demo.sock.close()
        demo.sock = None
    git, url = demo.git, demo.git.url("steps")
    clone_url = url.replace("https://", f"https://{git.username}:{git.password}@", 1)
    config, env = shlex.quote(str(demo.config_path)), shlex.quote(str(demo.env_file))
    lines = [
        "syncd demo --serve: the https git remote stays up until Ctrl-C",
        f"  remote:  {url}  (branch main, steps in export/steps)",
        f"  user:    {git.username}  password: {git.password}  (also in {demo.env_file})",
        f"  CA file: {git.ca_file}  (source.ca_file; git: GIT_SSL_CAINFO)",
        f"  config:  {demo.config_path}  (its secrets: {demo.env_file})",
        # The variable, not `-c http.sslCAInfo`: a GIT_SSL_CAINFO already set would win over it.
        "  clone:   GIT_SSL_CAINFO="
        + shlex.quote(str(git.ca_file))
        + f" git clone {shlex.quote(clone_url)} steps",
        f"  serve:   . {env} && syncd serve --config {config}",
        f"  check:   . {env} && syncd check-config --config {config}",
        "  The config takes webhooks only (poll_interval: 0s): set poll_interval: 10s to see a",
        "  push arrive by polling, or point a workspace of your own config at the remote.",
    ]
    print("\n".join(lines), flush=True)
    stop = threading.Event()

    def stopped(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, stopped) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop.wait(MAX_SERVE_SECONDS)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    print("syncd demo --serve: stopping the git remote", flush=True)
