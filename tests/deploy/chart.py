"""Render the Helm chart offline with a real Helm engine (helm-python-sdk, Helm's Go SDK via ctypes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "helm" / "finsignal"
CI_VALUES_DIR = CHART_DIR / "ci"
DASHBOARD_PATH = CHART_DIR / "dashboards" / "finsignal.json"
RELEASE = "fs"
NAMESPACE = "markets"

# name -> values: the defaults plus every file of helm/finsignal/ci (the chart-testing convention).
VALUES_SETS: dict[str, dict[str, Any]] = {"defaults": {}} | {
    path.stem: yaml.safe_load(path.read_text()) for path in sorted(CI_VALUES_DIR.glob("*.yaml"))
}


def render(values: dict[str, Any], release: str = RELEASE) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders for these values (NOTES.txt and empty files left out)."""
    with helm.Chart.load(str(CHART_DIR)) as chart:
        manifests = chart.render(values, name=release, namespace=NAMESPACE)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        for document in yaml.safe_load_all(text):
            if document:
                objects.append(document)
    return objects


def render_notes(values: dict[str, Any]) -> str:
    with helm.Chart.load(str(CHART_DIR)) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    return next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def lint(values: dict[str, Any] | None = None) -> dict[str, Any]:
    return helm.lint(str(CHART_DIR), values or {}, strict=True, namespace=NAMESPACE)
