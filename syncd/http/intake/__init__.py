"""Intake processes: more processes taking connections on the daemon's port
(server.intake_workers).

- `workers`: the daemon's side: starts them, hands them the settings, reads their reports.
- `front`: an intake process itself (`python -m syncd.http.intake.front`).
- `wire`: the messages between the two, typed, each with its one encoding.
- `forward`: how an intake process hands a request on to the daemon, and how the daemon
  takes it.
"""
