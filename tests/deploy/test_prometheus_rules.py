"""The chart's alert rules and the dashboard's queries, checked by Prometheus' own promtool.

`promtool check rules` parses every PromQL expression (the rules as rendered, and each dashboard
panel query wrapped in a recording rule); `promtool test rules` replays synthetic series and asserts
which alerts fire, with which labels, and that healthy or foreign series fire nothing.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.chart import DASHBOARD_PATH, NAMESPACE, VALUES_SETS, one, render

RELEASE = "fs-classify"
JOB = f"{RELEASE}-finsignal"
ALERTS = [
    "FinsignalConsumerLagGrowing",
    "FinsignalDLQRateHigh",
    "FinsignalKBStale",
    "FinsignalKBReloadFailing",
    "FinsignalNoSignalsProduced",
    "FinsignalNotReady",
]


def _series(name: str, values: str, job: str = JOB, **labels: str) -> dict[str, str]:
    all_labels = {"job": job, "namespace": NAMESPACE, **labels}
    rendered = ",".join(f'{k}="{v}"' for k, v in all_labels.items())
    return {"series": f"{name}{{{rendered}}}", "values": values}


def _rule_groups(strip_annotations: bool) -> list[dict[str, Any]]:
    rule = one(render(VALUES_SETS["classify-keda-monitoring-values"], release=RELEASE), "PrometheusRule")
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    if strip_annotations:
        # Annotation texts are checked by `promtool check rules`; the unit tests assert labels only.
        for group in groups:
            for item in group["rules"]:
                item.pop("annotations", None)
    return groups


def _run(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_rendered_rules_pass_promtool_check(promtool: str, tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": _rule_groups(strip_annotations=False)}))
    result = _run(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_check_rejects_a_broken_expression(promtool: str, tmp_path: Path) -> None:
    broken = {
        "groups": [{"name": "x", "rules": [{"alert": "X", "expr": "sum(rate(finsignal_dlq_total[5m])"}]}]
    }
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(broken))
    assert _run(promtool, "check", "rules", "rules.yaml", cwd=tmp_path).returncode != 0


def test_every_dashboard_query_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD_PATH.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 15
    # Grafana substitutes its variables before the query reaches Prometheus; do the same.
    rules = [
        {"record": f"dashboard:query_{i}", "expr": e.replace("$__rate_interval", "5m").replace("$job", ".*")}
        for i, e in enumerate(exprs)
    ]
    (tmp_path / "dashboard.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    result = _run(promtool, "check", "rules", "dashboard.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def _unit_tests() -> list[dict[str, Any]]:
    firing = {
        "interval": "1m",
        "input_series": [
            # Lag grows by 50 a minute on news.raw; flat on news.signals.
            _series("finsignal_consumer_lag", "0+50x40", topic="news.raw", partition="0"),
            _series("finsignal_consumer_lag", "500x40", topic="news.signals", partition="0"),
            # 1 DLQ record/s for schema errors (above 0.5/s), 0.1/s for oversize messages.
            _series("finsignal_dlq_total", "0+60x40", reason="schema"),
            _series("finsignal_dlq_total", "0+6x40", reason="too_large"),
            _series("finsignal_kb_stale", "1x40", pod="fs-a"),
            _series("finsignal_kb_stale", "0x40", pod="fs-b"),
            _series("finsignal_kb_reload_failures_total", "0x5 1x35", pod="fs-a"),
            # Messages come in, no signal goes out.
            _series("finsignal_messages_consumed_total", "0+100x40", pod="fs-a"),
            _series("finsignal_signals_produced_total", "0x40", pod="fs-a"),
            _series("finsignal_ready", "0x40", pod="fs-a"),
            _series("finsignal_ready", "1x40", pod="fs-b"),
        ],
        "alert_rule_test": [
            {"eval_time": "25m", "alertname": "FinsignalConsumerLagGrowing",
             "exp_alerts": [{"exp_labels": {"severity": "warning", "topic": "news.raw"}}]},
            {"eval_time": "25m", "alertname": "FinsignalDLQRateHigh",
             "exp_alerts": [{"exp_labels": {"severity": "warning", "reason": "schema"}}]},
            {"eval_time": "25m", "alertname": "FinsignalKBStale",
             "exp_alerts": [{"exp_labels": {"severity": "warning", "pod": "fs-a"}}]},
            {"eval_time": "10m", "alertname": "FinsignalKBReloadFailing",
             "exp_alerts": [{"exp_labels": {"severity": "info"}}]},
            {"eval_time": "25m", "alertname": "FinsignalNoSignalsProduced",
             "exp_alerts": [{"exp_labels": {"severity": "critical"}}]},
            {"eval_time": "25m", "alertname": "FinsignalNotReady",
             "exp_alerts": [{"exp_labels": {"severity": "warning", "pod": "fs-a"}}]},
            # `for:` holds an alert back: nothing fires in the first minutes.
            {"eval_time": "4m", "alertname": "FinsignalConsumerLagGrowing", "exp_alerts": []},
            {"eval_time": "4m", "alertname": "FinsignalNotReady", "exp_alerts": []},
        ],
    }  # fmt: skip
    healthy = {
        "interval": "1m",
        "input_series": [
            _series("finsignal_consumer_lag", "20x40", topic="news.raw", partition="0"),
            _series("finsignal_dlq_total", "0+1x40", reason="schema"),
            _series("finsignal_kb_stale", "0x40", pod="fs-a"),
            _series("finsignal_kb_reload_failures_total", "0x40", pod="fs-a"),
            _series("finsignal_messages_consumed_total", "0+100x40", pod="fs-a"),
            _series("finsignal_signals_produced_total", "0+99x40", pod="fs-a"),
            _series("finsignal_ready", "1x40", pod="fs-a"),
            # Another release's trouble is not this release's alert.
            _series("finsignal_dlq_total", "0+600x40", job="other-finsignal", reason="schema"),
            _series("finsignal_kb_stale", "1x40", job="other-finsignal", pod="other-a"),
        ],
        "alert_rule_test": [{"eval_time": "30m", "alertname": name, "exp_alerts": []} for name in ALERTS],
    }
    return [firing, healthy]


def test_alerts_fire_on_trouble_and_stay_silent_when_healthy(promtool: str, tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": _rule_groups(strip_annotations=True)}))
    spec = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": _unit_tests()}
    (tmp_path / "rules_test.yaml").write_text(yaml.safe_dump(spec))
    result = _run(promtool, "test", "rules", "rules_test.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("alert", ["FinsignalDLQRateHigh", "FinsignalKBStale"])
def test_promtool_unit_test_fails_when_an_expected_alert_is_missing(
    promtool: str, tmp_path: Path, alert: str
) -> None:
    # The same harness must be able to fail: expect an alert under healthy series.
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": _rule_groups(strip_annotations=True)}))
    healthy = _unit_tests()[1]
    healthy["alert_rule_test"] = [
        {"eval_time": "30m", "alertname": alert, "exp_alerts": [{"exp_labels": {"severity": "warning"}}]}
    ]
    spec = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [healthy]}
    (tmp_path / "rules_test.yaml").write_text(yaml.safe_dump(spec))
    assert _run(promtool, "test", "rules", "rules_test.yaml", cwd=tmp_path).returncode != 0
