"""The monitoring kit: alert rules promtool accepts, a dashboard over the contract's metrics,
and a /metrics page promtool accepts."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from syncd.metrics import Metrics
from syncd.model import Run, RunResult, Status, SyncState, Trigger

ROOT = Path(__file__).resolve().parents[2]
CONTRACT_METRICS = {
    "syncd_sync_runs_total",
    "syncd_sync_duration_seconds",
    "syncd_steps_changed_total",
    "syncd_workspace_status",
    "syncd_workspace_drift_steps",
    "syncd_workspace_last_success_timestamp_seconds",
    "syncd_git_operations_total",
    "syncd_git_operation_duration_seconds",
    "syncd_webhook_requests_total",
    "syncd_config_reloads_total",
    "syncd_notifications_sent_total",
    "syncd_build_info",
}
needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian package prometheus) not here"
)


def busy_metrics() -> bytes:
    m = Metrics()
    ws = type("WS", (), {"id": "prod"})()
    run = Run("r1", "prod", Trigger.WEBHOOK, "abc", RunResult.SUCCEEDED, 1.0, 2.0, 1, 2, 3)
    m.run_finished(ws, run, None, SyncState("prod", Status.SYNCED), 0.5)  # type: ignore[arg-type]
    m.git_operation("fetch", "ok", 0.2)
    m.webhook("github", "accepted")
    return generate_latest(m.registry)


def test_every_contract_metric_is_exported() -> None:
    text = busy_metrics().decode()
    names = set(re.findall(r"^# TYPE (\S+)", text, re.M))
    assert names >= CONTRACT_METRICS, CONTRACT_METRICS - names


@needs_promtool
def test_promtool_accepts_the_metrics_page() -> None:
    done = subprocess.run(
        ["promtool", "check", "metrics"], input=busy_metrics(), capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_accepts_the_alert_rules() -> None:
    done = subprocess.run(
        ["promtool", "check", "rules", str(ROOT / "config/prometheus/syncd-alerts.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_alerts_and_dashboard_use_only_real_metrics() -> None:
    rules = yaml.safe_load((ROOT / "config/prometheus/syncd-alerts.yaml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dash = json.loads((ROOT / "config/grafana/syncd-dashboard.json").read_text())
    exprs += [t["expr"] for p in dash["panels"] for t in p["targets"]]
    known = CONTRACT_METRICS | {f"{m}_bucket" for m in CONTRACT_METRICS}
    for expr in exprs:
        for name in re.findall(r"\bsyncd_[a-z_]+", expr):
            assert name in known, f"{name} in {expr!r}"
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert {
        "SyncdWorkspaceFailing",
        "SyncdWorkspaceOutOfSync",
        "SyncdNoRecentSuccess",
        "SyncdGitRemoteErrors",
        "SyncdConfigReloadRefused",
    } <= alerts
