"""`syncd demo`: syncd's main job end to end, offline, with nothing but loopback.

`run` holds the command and its phases, `gitserver` the https git remote it pushes to, and
`webhook` the signed GitHub push it delivers. Only the command is imported here: the CLI
imports this package for every command, and the rest waits until the demo runs.
"""

from __future__ import annotations

from syncd.demo.run import DemoFailed, add_command, run_demo

__all__ = ["DemoFailed", "add_command", "run_demo"]
