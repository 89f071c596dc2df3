"""docker/compose.yaml: parsed by a Compose-spec parser and cross-checked against the repository.

Images are pinned, every mounted file and build input exists, FINSIGNAL_* names are worker settings,
Prometheus scrapes the worker's metrics port, and Grafana gets the chart's dashboard file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_spec import PyCompose

from tests.deploy.chart import DASHBOARD_PATH, REPO_ROOT
from worker.config import ENV_PREFIX, Settings, load_settings

COMPOSE_PATH = REPO_ROOT / "docker" / "compose.yaml"
COMPOSE_DIR = COMPOSE_PATH.parent
SETTINGS_ENV = {ENV_PREFIX + name.upper() for name in Settings.model_fields}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    # The Compose-spec parser rejects unknown keys and malformed values; its dict is the normalised file.
    return PyCompose.from_yaml(COMPOSE_PATH.read_text()).to_dict()


def _finsignal_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose["services"].items()
        if str(svc.get("image", "")).startswith("finsignal")
    }


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _host_path(volume: str | dict[str, Any]) -> Path | None:
    source = volume.get("source") if isinstance(volume, dict) else volume.split(":")[0]
    if source and source.startswith((".", "/")):
        return (COMPOSE_DIR / source).resolve()
    return None  # a named volume


def test_parser_rejects_an_invalid_file() -> None:
    with pytest.raises(ValueError):
        PyCompose.from_yaml("services:\n  worker:\n    image: finsignal:cpu\n    restart: sometimes\n")


def test_stack_has_kafka_redis_worker_prometheus_grafana(compose: dict[str, Any]) -> None:
    assert {"kafka", "redis", "worker", "prometheus", "grafana"} <= set(compose["services"])
    kafka_env = _env(compose["services"]["kafka"])
    assert "controller" in kafka_env["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")


def test_third_party_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if name in _finsignal_services(compose):
            continue
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and any(c.isdigit() for c in tag), f"{name}: pin {image}"


def test_finsignal_services_build_the_repository_image(compose: dict[str, Any]) -> None:
    services = _finsignal_services(compose)
    assert "worker" in services
    for name, service in services.items():
        build = service["build"]
        context = (COMPOSE_DIR / build["context"]).resolve()
        assert context == REPO_ROOT, f"{name}: build context must be the repository root"
        assert (context / build["dockerfile"]).is_file()


def test_env_names_are_worker_settings(compose: dict[str, Any]) -> None:
    for name, service in _finsignal_services(compose).items():
        env = _env(service)
        assert env, name
        unknown = {key for key in env if key.startswith(ENV_PREFIX)} - SETTINGS_ENV
        assert unknown == set(), f"{name}: {unknown}"


def test_worker_env_values_are_accepted_by_the_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in SETTINGS_ENV:
        monkeypatch.delenv(key, raising=False)
    for key, value in _env(compose["services"]["worker"]).items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.metrics_host == "0.0.0.0"


def test_worker_runs_like_in_kubernetes(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert worker["read_only"] is True
    assert "/tmp" in str(worker["tmpfs"])
    shutdown = float(_env(worker)["FINSIGNAL_SHUTDOWN_TIMEOUT_S"])
    grace = worker["stop_grace_period"]
    assert grace.endswith("s") and float(grace[:-1]) > shutdown
    port = _env(worker)["FINSIGNAL_METRICS_PORT"]
    assert any(str(p).endswith(f":{port}") for p in worker["ports"])
    bootstrap_host = _env(worker)["FINSIGNAL_KAFKA_BOOTSTRAP"].split(":")[0]
    redis_host = _env(worker)["FINSIGNAL_REDIS_URL"].split("//")[1].split(":")[0]
    assert {bootstrap_host, redis_host} <= set(compose["services"])


def test_every_mounted_file_exists(compose: dict[str, Any]) -> None:
    mounted = 0
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            path = _host_path(volume)
            if path is not None:
                assert path.exists(), f"{name}: {path} does not exist"
                mounted += 1
    assert mounted >= 3


def test_prometheus_scrapes_the_worker_metrics_port(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((COMPOSE_DIR / "prometheus" / "prometheus.yml").read_text())
    targets = [t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    port = _env(compose["services"]["worker"])["FINSIGNAL_METRICS_PORT"]
    assert f"worker:{port}" in targets
    mounts = [str(v) for v in compose["services"]["prometheus"]["volumes"]]
    assert any("prometheus.yml" in m for m in mounts)


def test_grafana_is_provisioned_with_the_chart_dashboard(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    provisioning = COMPOSE_DIR / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    (datasource,) = datasources["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((provisioning / "dashboards" / "finsignal.yaml").read_text())
    dashboard_dir = providers["providers"][0]["options"]["path"]
    # The provider's folder inside the container is a mount of the chart's dashboards folder.
    mounts = {}
    for volume in grafana["volumes"]:
        source, target = (
            (volume["source"], volume["target"]) if isinstance(volume, dict) else volume.split(":")[:2]
        )
        mounts[target] = (COMPOSE_DIR / source).resolve()
    assert mounts[dashboard_dir] == DASHBOARD_PATH.parent
    assert mounts["/etc/grafana/provisioning"] == provisioning
    home = _env(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboard_dir}/{DASHBOARD_PATH.name}"


def test_kafka_init_creates_the_topics_the_worker_uses(compose: dict[str, Any]) -> None:
    script = " ".join(compose["services"]["kafka-init"]["command"])
    created = set(re.findall(r"\b(news\.[a-z]+):\d+", script))
    defaults = Settings.model_fields
    used = {
        str(defaults[name].default) for name in ("input_topic", "signals_topic", "alerts_topic", "dlq_topic")
    }
    worker_env = _env(compose["services"]["worker"])
    assert not {"FINSIGNAL_INPUT_TOPIC", "FINSIGNAL_SIGNALS_TOPIC"} & set(worker_env)  # defaults apply
    assert created == used
