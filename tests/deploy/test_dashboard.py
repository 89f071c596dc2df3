"""The Grafana dashboard JSON: well-formed for provisioning and the sidecar, panels laid out cleanly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.deploy.chart import DASHBOARD_PATH


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD_PATH.read_text()))


def test_has_a_stable_uid_and_a_datasource_variable(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "finsignal-overview"  # links and provisioning rely on it
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    assert variables["job"]["includeAll"] is True


def test_every_query_uses_the_datasource_and_job_variables(dashboard: dict[str, Any]) -> None:
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert 'job=~"$job"' in target["expr"], (panel["title"], target["expr"])


def test_panels_have_unique_ids_and_do_not_overlap(dashboard: dict[str, Any]) -> None:
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_latency_panels_use_seconds_and_show_p50_and_p99(dashboard: dict[str, Any]) -> None:
    latency = [p for p in dashboard["panels"] if p["type"] != "row" and "latency" in p["title"].lower()]
    assert len(latency) == 2
    for panel in latency:
        assert panel["fieldConfig"]["defaults"]["unit"] == "s"
        assert [t["legendFormat"] for t in panel["targets"]] == ["p50", "p99"]
