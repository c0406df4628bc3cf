"""Helpers shared by the integration and end-to-end tests: configs and step files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]

from syncd.core.model import WEBHOOK_PROVIDERS, StepContent
from syncd.core.steps import render_step_file, step_file_name
from syncd.demo.gitserver import GitServer, WorkTree

GIT_PASSWORD_ENV = "SYNCD_TEST_GIT_TOKEN"
API_TOKEN = "test-api-token-0123456789"
READ_TOKEN = "test-read-token-0123456789"
WEBHOOK_SECRET = "test-webhook-secret-0123"


def write_step(
    tree: WorkTree,
    name: str,
    do: str = "done()",
    if_: str = "true",
    enabled: bool = True,
    folder: str = "export/steps",
) -> str:
    path = f"{folder}/{step_file_name(name)}"
    tree.write(path, render_step_file(name, StepContent(if_, do, enabled)))
    return path


def workspace(
    ws_id: str, url: str, server: GitServer, mode: str = "automatic", **extra: Any
) -> dict[str, Any]:
    ws: dict[str, Any] = {
        "id": ws_id,
        "name": f"ws-{ws_id}",
        "mode": mode,
        "source": {
            "url": url,
            "branch": "main",
            "path": "export/steps",
            "username": server.username,
            "password_env": GIT_PASSWORD_ENV,
            "ca_file": str(server.ca_file),
        },
        "poll_interval": "0s",
    }
    source_extra = extra.pop("source", {})
    ws["source"].update(source_extra)
    ws.update(extra)
    return ws


def write_config(tmp: Path, workspaces: list[dict[str, Any]], **top: Any) -> Path:
    doc: dict[str, Any] = {
        "state_dir": str(tmp / "state"),
        "tokens": [
            {
                "name": "ci",
                "token_env": "SYNCD_TEST_API_TOKEN",
                "scopes": ["read", "sync", "write", "export"],
            },
            {"name": "viewer", "token_env": "SYNCD_TEST_READ_TOKEN", "scopes": ["read"]},
        ],
        "webhooks": {p: {"secrets_env": ["SYNCD_TEST_WEBHOOK_SECRET"]} for p in WEBHOOK_PROVIDERS},
        "workspaces": workspaces,
    }
    doc.update(top)
    path = tmp / "syncd.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def daemon_env(server: GitServer) -> dict[str, str]:
    """The environment a syncd under test needs: its secrets, and no one else's."""
    env = dict(os.environ)
    env.update(
        {
            GIT_PASSWORD_ENV: server.password,
            "SYNCD_TEST_API_TOKEN": API_TOKEN,
            "SYNCD_TEST_READ_TOKEN": READ_TOKEN,
            "SYNCD_TEST_WEBHOOK_SECRET": WEBHOOK_SECRET,
        }
    )
    return env
