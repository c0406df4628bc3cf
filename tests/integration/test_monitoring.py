"""The monitoring kit: alert rules promtool accepts and proves to fire and resolve, a dashboard
over the contract's metrics, and a /metrics page promtool accepts."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from syncd.config import parse_duration
from syncd.core.model import Run, RunResult, Status, SyncState, Trigger
from syncd.ops.metrics import Metrics

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
    "syncd_workspace_health",  # beyond the contract: Healthy, Degraded, Suspended
    "syncd_intake_process_exits_total",  # beyond the contract: server.intake_workers
}
# Exported only by replicas on a shared PostgreSQL store (a single process has none, so the
# alerts on them stay quiet there): tests/integration/test_replicas_postgres.py sees them.
REPLICAS_ONLY = {"syncd_replicas_alive"}
needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool is not installed (apt-get install prometheus; .ci/run does)",
)


def busy_metrics() -> bytes:
    m = Metrics()
    ws = type("WS", (), {"id": "prod"})()
    run = Run("r1", "prod", Trigger.WEBHOOK, "abc", RunResult.SUCCEEDED, 1.0, 2.0, 1, 2, 3)
    m.run_finished(ws, run, None, SyncState("prod", Status.SYNCED), 0.5)
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


@needs_promtool
def test_promtool_proves_every_alert_fires_and_resolves() -> None:
    tests = ROOT / "config/prometheus/syncd-alerts.test.yaml"
    done = subprocess.run(
        ["promtool", "test", "rules", str(tests)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rules = yaml.safe_load((ROOT / "config/prometheus/syncd-alerts.yaml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    cases = yaml.safe_load(tests.read_text())["tests"]
    checks = [c for t in cases for c in t["alert_rule_test"]]
    for alert in alerts:
        mine = [c for c in checks if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in mine), f"no test shows {alert} firing"
        firing = min(parse_duration(c["eval_time"]) for c in mine if c["exp_alerts"])
        later = [c for c in mine if parse_duration(c["eval_time"]) > firing]
        assert any(not c["exp_alerts"] for c in later), f"no test shows {alert} resolving"


def test_counters_exist_at_zero_for_each_workspace_and_no_created_series() -> None:
    m = Metrics()
    m.add_workspace("prod")
    text = generate_latest(m.registry).decode()
    assert "_created" not in text
    for trigger in Trigger:
        for result in RunResult:
            labels = f'result="{result}",trigger="{trigger}",workspace="prod"'
            assert f"syncd_sync_runs_total{{{labels}}} 0.0" in text
    for action in ("create", "update", "delete"):
        assert f'syncd_steps_changed_total{{action="{action}",workspace="prod"}} 0.0' in text
    assert 'syncd_sync_duration_seconds_count{workspace="prod"} 0.0' in text
    m.forget_workspace("prod")
    assert 'workspace="prod"' not in generate_latest(m.registry).decode()


def test_gauges_are_restored_from_what_the_store_knows() -> None:
    m = Metrics()
    m.restore("prod", SyncState("prod", Status.OUT_OF_SYNC, drift=3), last_success=1234.5)
    m.restore("new", SyncState("new", Status.UNKNOWN), last_success=None)
    text = generate_latest(m.registry).decode()
    assert 'syncd_workspace_last_success_timestamp_seconds{workspace="prod"} 1234.5' in text
    assert 'syncd_workspace_last_success_timestamp_seconds{workspace="new"}' not in text
    assert 'syncd_workspace_status{status="OutOfSync",workspace="prod"} 1.0' in text
    assert 'syncd_workspace_drift_steps{workspace="prod"} 3.0' in text
    assert 'syncd_sync_runs_total{result="failed",trigger="poll",workspace="new"} 0.0' in text


def test_alerts_and_dashboard_use_only_real_metrics() -> None:
    rules = yaml.safe_load((ROOT / "config/prometheus/syncd-alerts.yaml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dash = json.loads((ROOT / "config/grafana/syncd-dashboard.json").read_text())
    exprs += [t["expr"] for p in dash["panels"] for t in p["targets"]]
    known = CONTRACT_METRICS | {f"{m}_bucket" for m in CONTRACT_METRICS} | REPLICAS_ONLY
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
        "SyncdWorkspaceDegraded",
        "SyncdDown",
    } <= alerts
