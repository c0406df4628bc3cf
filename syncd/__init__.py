"""syncd: keeps workspaces' steps in step with git."""

__version__ = "0.1.0"
