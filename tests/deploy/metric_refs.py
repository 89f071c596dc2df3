"""Metric names that the dashboard and the alert rules use, and the names a worker exports.

Prometheus exposes a histogram ``x`` as ``x_bucket``, ``x_sum`` and ``x_count``, and prometheus-client
names counters ``x_total``; a metric with labels and no observation yet has HELP/TYPE lines but no
samples. ``exported_names`` expands each TYPE line accordingly, so the comparison does not depend on
which metrics happened to be observed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

METRIC_RE = re.compile(r"\bfinsignal_[a-zA-Z0-9_]*[a-zA-Z0-9]")

# DESIGN.md's metric contract, plus kb_stale and ready (the dashboard and rules rely on them) and the
# alert stage's own metrics.
CONTRACT: dict[str, str] = {
    "finsignal_messages_consumed_total": "counter",
    "finsignal_signals_produced_total": "counter",
    "finsignal_dlq_total": "counter",
    "finsignal_alerts_total": "counter",
    "finsignal_batch_size": "histogram",
    "finsignal_inference_seconds": "histogram",
    "finsignal_end_to_end_seconds": "histogram",
    "finsignal_consumer_lag": "gauge",
    "finsignal_kb_version": "gauge",
    "finsignal_kb_entries": "gauge",
    "finsignal_kb_reload_seconds": "histogram",
    "finsignal_kb_reload_failures_total": "counter",
    "finsignal_kb_stale": "gauge",
    "finsignal_ready": "gauge",
    # alert stage (worker/alerts/metrics.py)
    "finsignal_alerts_firing": "gauge",
    "finsignal_alerts_late_events_total": "counter",
    "finsignal_alerts_invalid_signals_total": "counter",
}
# Labels the dashboard and the rules group by.
CONTRACT_LABELS: dict[str, set[str]] = {
    "finsignal_dlq_total": {"reason"},
    "finsignal_alerts_total": {"severity"},
    "finsignal_consumer_lag": {"topic", "partition"},
}


def expand(name: str, kind: str) -> set[str]:
    """Names a PromQL query can use for one metric family of this type."""
    if kind == "counter":
        base = name.removesuffix("_total")
        return {base + "_total"}
    if kind == "histogram":
        return {name + "_bucket", name + "_sum", name + "_count"}
    if kind == "summary":
        return {name, name + "_sum", name + "_count"}
    return {name}


def contract_names() -> set[str]:
    names: set[str] = set()
    for name, kind in CONTRACT.items():
        names |= expand(name, kind)
    return names


def exported_names(exposition: str) -> set[str]:
    """All queryable names in a Prometheus text exposition (from TYPE lines and samples)."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names |= expand(name, kind.strip())
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def exported_labels(exposition: str) -> dict[str, set[str]]:
    """Label names seen on samples, by sample name (only metrics that have samples appear)."""
    labels: dict[str, set[str]] = {}
    for line in exposition.splitlines():
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\}\s", line)
        if match:
            found = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', match.group(2)))
            labels.setdefault(match.group(1), set()).update(found)
    return labels


def dashboard_exprs(path: Path) -> list[str]:
    dashboard = json.loads(path.read_text())
    exprs = []
    for panel in _panels(dashboard["panels"]):
        exprs += [target["expr"] for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if variable["type"] == "query":
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def rule_exprs(objects: list[dict[str, Any]]) -> list[str]:
    return [
        str(rule["expr"])
        for obj in objects
        if obj["kind"] == "PrometheusRule"
        for group in obj["spec"]["groups"]
        for rule in group["rules"]
    ]


def referenced_metrics(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in METRIC_RE.findall(expr)}


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    flat = []
    for panel in panels:
        flat.append(panel)
        flat += _panels(panel.get("panels", []))
    return flat
