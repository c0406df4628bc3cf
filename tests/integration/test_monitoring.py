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
from prometheus_client.parser import text_string_to_metric_families

from syncd.config import parse_duration
from syncd.config.types import MetricsConfig
from syncd.core.model import Health, Run, RunResult, Status, SyncState, Trigger
from syncd.ops.metrics import Metrics
from tests.support.daemon import metric

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
    m.add_workspace("other")
    m.set_health("prod", Health.HEALTHY)
    m.workspace_blocked("other", "window")
    return m.render()


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
    text = m.render().decode()
    assert "_created" not in text
    for result in ("failed", "succeeded"):  # what the shipped alerts compare
        assert f'syncd_sync_runs_total{{workspace="prod",result="{result}"}} 0.0' in text
    for action in ("create", "update", "delete"):
        assert f'syncd_steps_changed_total{{action="{action}"}} 0.0' in text
    for trigger in Trigger:
        for result in RunResult:
            labels = f'result="{result}",trigger="{trigger}"'
            assert f"syncd_sync_duration_seconds_count{{{labels}}} 0.0" in text
    m.forget_workspace("prod")
    assert 'workspace="prod"' not in m.render().decode()


def test_a_workspace_has_six_series_and_histograms_have_no_workspace_label() -> None:
    m = Metrics()
    m.restore("prod", SyncState("prod", Status.SYNCED), last_success=1.0)
    m.set_health("prod", Health.HEALTHY)
    mine = [line for line in m.render().decode().splitlines() if 'workspace="prod"' in line]
    assert len(mine) == 6, mine
    # The opt-in: a per-workspace histogram beside the global one, and gone again at reload.
    m.configure(MetricsConfig(per_workspace_histograms=True))
    text = m.render().decode()
    assert 'syncd_workspace_sync_duration_seconds_count{workspace="prod"} 0.0' in text
    m.configure(MetricsConfig())
    assert "syncd_workspace_sync_duration_seconds" not in m.render().decode()


def test_status_health_and_blocked_are_one_series_each_and_move() -> None:
    m = Metrics()
    m.restore("prod", SyncState("prod", Status.OUT_OF_SYNC, drift=2), last_success=None)
    m.set_health("prod", Health.DEGRADED)
    m.workspace_blocked("prod", "window")
    m.restore("prod", SyncState("prod", Status.SYNCED), last_success=None)
    m.set_health("prod", Health.HEALTHY)
    m.workspace_blocked("prod", None)
    text = m.render().decode()
    status = [line for line in text.splitlines() if line.startswith("syncd_workspace_status{")]
    assert status == ['syncd_workspace_status{workspace="prod",status="Synced"} 1']
    assert metric(text, "syncd_workspace_health", workspace="prod", health="Healthy") == 1
    assert metric(text, "syncd_workspace_health", health="Degraded") == 0
    assert "syncd_workspace_blocked{" not in text
    # Text Prometheus parses, names and all (a scrape's parser is the client library's).
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"syncd_workspace_status", "syncd_sync_runs", "syncd_workspace_blocked"} <= names


def test_gauges_are_restored_from_what_the_store_knows() -> None:
    m = Metrics()
    m.restore("prod", SyncState("prod", Status.OUT_OF_SYNC, drift=3), last_success=1234.5)
    m.restore("new", SyncState("new", Status.UNKNOWN), last_success=None)
    text = m.render().decode()
    assert 'syncd_workspace_last_success_timestamp_seconds{workspace="prod"} 1234.5' in text
    assert 'syncd_workspace_last_success_timestamp_seconds{workspace="new"}' not in text
    assert 'syncd_workspace_status{workspace="prod",status="OutOfSync"} 1' in text
    assert 'syncd_workspace_drift_steps{workspace="prod"} 3' in text
    assert 'syncd_sync_runs_total{workspace="new",result="failed"} 0.0' in text


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


def test_a_reload_never_sets_a_status_back_nor_brings_a_removed_workspace_back() -> None:
    m = Metrics()
    ws = type("WS", (), {"id": "prod"})()
    m.restore("prod", SyncState("prod", Status.OUT_OF_SYNC, drift=2), last_success=None)
    stale = SyncState("prod", Status.OUT_OF_SYNC, drift=2)  # a reload's read, before the run
    run = Run("r1", "prod", Trigger.WEBHOOK, "abc", RunResult.SUCCEEDED, 1.0, 2.0, 1, 0, 0)
    m.run_finished(ws, run, None, SyncState("prod", Status.SYNCED), 0.5)
    m.restore("prod", stale, last_success=None)  # ...restored after the run had finished
    text = m.render().decode()
    assert 'syncd_workspace_status{workspace="prod",status="Synced"} 1' in text
    # Removed by a reload while a run of it was in flight: the run's end adds nothing back.
    m.forget_workspace("prod")
    m.run_finished(ws, run, None, SyncState("prod", Status.SYNCED), 0.5)
    m.set_health("prod", Health.HEALTHY)
    m.check_finished("prod", "smoke", "ok")
    assert 'workspace="prod"' not in m.render().decode()
    m.add_workspace("prod")  # configured again
    assert 'syncd_workspace_status{workspace="prod",status="Unknown"} 1' in m.render().decode()
