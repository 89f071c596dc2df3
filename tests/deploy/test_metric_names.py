"""Every metric the dashboard and the alert rules query exists in what the worker exports.

Checked against the DESIGN.md contract and against the worker's own prometheus registry (importing
the modules that define metrics). tests/integration/test_dashboard_metrics.py does the same by
scraping a running `finsignal run`.
"""

from __future__ import annotations

import importlib
import re

import prometheus_client
import pytest

from tests.deploy.chart import DASHBOARD_PATH, VALUES_SETS, render
from tests.deploy.metric_refs import (
    CONTRACT,
    CONTRACT_LABELS,
    contract_names,
    dashboard_exprs,
    exported_names,
    referenced_metrics,
    rule_exprs,
)

# Modules that define the worker's metrics (the run loop's and the alert stage's).
METRIC_MODULES = ["worker.metrics", "worker.alerts.metrics"]


def _all_rule_exprs() -> list[str]:
    exprs: list[str] = []
    for values in VALUES_SETS.values():
        on = {**values, "prometheusRule": {**values.get("prometheusRule", {}), "enabled": True}}
        exprs += rule_exprs(render(on))
    return exprs


def test_exposition_names_expand_histograms_counters_and_unobserved_labels() -> None:
    registry = prometheus_client.CollectorRegistry()
    prometheus_client.Counter("finsignal_t_dlq", "d", ["reason"], registry=registry)
    prometheus_client.Histogram("finsignal_t_seconds", "s", registry=registry)
    prometheus_client.Gauge("finsignal_t_lag", "l", ["topic", "partition"], registry=registry)
    names = exported_names(prometheus_client.generate_latest(registry).decode())
    assert {"finsignal_t_dlq_total", "finsignal_t_seconds_bucket", "finsignal_t_seconds_sum",
            "finsignal_t_seconds_count", "finsignal_t_lag"} <= names  # fmt: skip
    assert "finsignal_t_seconds" not in names  # not queryable: PromQL must use _bucket/_sum/_count


def test_every_query_uses_at_least_one_finsignal_metric() -> None:
    for expr in dashboard_exprs(DASHBOARD_PATH) + _all_rule_exprs():
        assert referenced_metrics([expr]), expr


def test_dashboard_and_rules_use_only_contract_metrics() -> None:
    used = referenced_metrics(dashboard_exprs(DASHBOARD_PATH) + _all_rule_exprs())
    assert used - contract_names() == set()


def test_dashboard_covers_the_required_panels() -> None:
    used = referenced_metrics(dashboard_exprs(DASHBOARD_PATH))
    for metric, kind in CONTRACT.items():
        if kind == "histogram":
            assert f"{metric}_bucket" in used, f"no latency/size quantiles for {metric}"
        else:
            assert metric in used, f"{metric} is on no panel"
    exprs = "\n".join(dashboard_exprs(DASHBOARD_PATH))
    assert "histogram_quantile(0.5," in exprs and "histogram_quantile(0.99," in exprs
    for metric, labels in CONTRACT_LABELS.items():
        for label in labels:
            assert re.search(rf"by \([^)]*\b{label}\b[^)]*\) \((rate|increase)?\(?{metric}", exprs), (
                metric,
                label,
            )


def _worker_exposition() -> str:
    registries = []
    for name in METRIC_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if not (exc.name and name.startswith(exc.name)):
                raise
            continue
        registries.append(getattr(module, "REGISTRY", prometheus_client.REGISTRY))
    if not registries:
        pytest.fail(f"none of {METRIC_MODULES} exists yet: the worker defines no metrics")
    return "".join(
        prometheus_client.generate_latest(r).decode() for r in {id(r): r for r in registries}.values()
    )


def test_worker_registry_exports_every_metric_the_dashboard_and_rules_use() -> None:
    exported = exported_names(_worker_exposition())
    used = referenced_metrics(dashboard_exprs(DASHBOARD_PATH) + _all_rule_exprs())
    assert used - exported == set(), "queried but not exported by the worker"


def test_worker_metrics_carry_the_labels_the_dashboard_groups_by() -> None:
    _worker_exposition()  # imports the metric modules
    registry = prometheus_client.REGISTRY
    collectors = {name: c for c, names in registry._collector_to_names.items() for name in names}  # noqa: SLF001
    for metric, labels in CONTRACT_LABELS.items():
        collector = collectors.get(metric)
        assert collector is not None, f"{metric} not registered"
        assert labels <= set(getattr(collector, "_labelnames", ())), metric
