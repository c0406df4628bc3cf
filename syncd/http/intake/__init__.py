"""Intake processes: more processes taking connections on the daemon's port
(server.intake_workers).
"""
