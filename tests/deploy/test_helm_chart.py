"""The Helm chart, rendered by Helm's own engine and checked against Kubernetes and CRD schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema_rs
import kubernetes_validate
import pytest

from tests.deploy.chart import (
    DASHBOARD_PATH,
    NAMESPACE,
    RELEASE,
    VALUES_SETS,
    by_kind,
    lint,
    one,
    render,
    render_notes,
)
from worker.config import ENV_PREFIX, Settings, load_settings

CRD_SCHEMA_DIR = Path(__file__).parent / "crd_schemas"
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.keda.sh.v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.monitoring.coreos.com.v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.monitoring.coreos.com.v1.json",
}
# The chart's kubeVersion floor and the newest schemas kubernetes-validate ships.
KUBE_VERSIONS = ["1.25.0", kubernetes_validate.latest_version()]
# Documented metadata keys of KEDA's kafka scaler: a typo here would be ignored silently by KEDA.
KEDA_KAFKA_METADATA = {
    "bootstrapServers", "consumerGroup", "topic", "lagThreshold", "activationLagThreshold",
    "offsetResetPolicy", "allowIdleConsumers", "excludePersistentLag", "scaleToZeroOnInvalidOffset",
    "limitToPartitionsWithLag", "partitionLimitation", "version", "sasl", "tls", "unsafeSsl",
    "ensureEvenDistributionOfPartitions",
}  # fmt: skip
SETTINGS_ENV = {ENV_PREFIX + name.upper() for name in Settings.model_fields}


def _crd_validator(api_version: str, kind: str) -> Any:
    schema = json.loads((CRD_SCHEMA_DIR / CRD_SCHEMAS[(api_version, kind)]).read_text())
    return jsonschema_rs.validator_for(schema)


@pytest.fixture(scope="module", params=sorted(VALUES_SETS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(VALUES_SETS[request.param])


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def _configmap_env(objects: list[dict[str, Any]]) -> dict[str, str]:
    (settings_map,) = [
        cm for cm in by_kind(objects, "ConfigMap") if not cm["metadata"]["name"].endswith("-dashboard")
    ]
    return settings_map["data"]


# --- Lint and schema validation -----------------------------------------------------------------


@pytest.mark.parametrize("values_name", sorted(VALUES_SETS))
def test_chart_lints_clean_in_strict_mode(values_name: str) -> None:
    report = lint(VALUES_SETS[values_name])
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [], problems


def test_every_core_object_is_valid_for_kubernetes(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = rendered
    core = [obj for obj in objects if (obj["apiVersion"], obj["kind"]) not in CRD_SCHEMAS]
    assert {"Deployment", "ConfigMap", "Service", "ServiceAccount"} <= {obj["kind"] for obj in core}
    for version in KUBE_VERSIONS:
        for obj in core:
            # strict: unknown fields are errors too (a misspelt field would be dropped by the API server).
            kubernetes_validate.validate(obj, version, strict=True)


def test_every_crd_object_matches_its_crd_schema(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        if key in CRD_SCHEMAS:
            errors = [str(e) for e in _crd_validator(*key).iter_errors(obj)]
            assert errors == [], f"{obj['kind']}: {errors}"


def test_crd_schemas_reject_a_misspelt_field() -> None:
    # The hand-written CRD schemas must be strict enough to catch a typo in a template.
    objects = render(VALUES_SETS["classify-keda-monitoring-values"])
    scaled = one(objects, "ScaledObject")
    scaled["spec"]["maxReplicas"] = scaled["spec"].pop("maxReplicaCount")
    assert not _crd_validator("keda.sh/v1alpha1", "ScaledObject").is_valid(scaled)
    monitor = one(objects, "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["interval"] = "15 seconds"
    assert not _crd_validator("monitoring.coreos.com/v1", "ServiceMonitor").is_valid(monitor)


def test_values_schema_rejects_bad_values_with_the_field_named() -> None:
    with helm.Chart.load(str(DASHBOARD_PATH.parents[1])) as chart:
        with pytest.raises(helm.HelmValuesError, match="/role"):
            chart.validate_schema({"role": "score"})
        with pytest.raises(helm.HelmValuesError, match="/kafka/bootstrap"):
            chart.validate_schema({"kafka": {"bootstrap": "kafka"}})
        with pytest.raises(helm.HelmValuesError, match="'replicas' not allowed"):
            chart.validate_schema({"replicas": 3})  # typo of replicaCount


# --- Deployment -------------------------------------------------------------------------------------


def test_pod_runs_non_root_on_a_read_only_root_filesystem(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    container = _container(objects)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    volume = next(v for v in pod["volumes"] if v["name"] == tmp["name"])
    assert "emptyDir" in volume
    assert pod["automountServiceAccountToken"] is False


def test_probes_hit_healthz_and_readyz_on_the_metrics_port(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, objects = rendered
    container = _container(objects)
    (port,) = container["ports"]
    assert port["name"] == "metrics"
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    env = _configmap_env(objects)
    # The worker's default metrics host is loopback; in a pod the kubelet and Prometheus need 0.0.0.0.
    assert env["FINSIGNAL_METRICS_HOST"] == "0.0.0.0"
    assert env["FINSIGNAL_METRICS_PORT"] == str(port["containerPort"])


def test_termination_grace_outlasts_the_worker_shutdown(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    grace = one(objects, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > float(_configmap_env(objects)["FINSIGNAL_SHUTDOWN_TIMEOUT_S"])


def test_grace_period_not_longer_than_shutdown_is_refused() -> None:
    with pytest.raises(helm.HelmRenderError, match="terminationGracePeriodSeconds"):
        render({"shutdownTimeoutSeconds": 30, "terminationGracePeriodSeconds": 30})
    objects = render({"shutdownTimeoutSeconds": 30, "terminationGracePeriodSeconds": 45})
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 45


def test_static_membership_id_is_the_pod_name() -> None:
    container = _container(render({}))
    (instance_id,) = [e for e in container["env"] if e["name"] == "FINSIGNAL_GROUP_INSTANCE_ID"]
    assert instance_id["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    container = _container(render({"kafka": {"staticMembership": False}}))
    assert "FINSIGNAL_GROUP_INSTANCE_ID" not in {e["name"] for e in container["env"]}


def test_every_env_name_is_a_worker_setting(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    names = set(_configmap_env(objects))
    names |= {e["name"] for e in _container(objects)["env"] if e["name"].startswith(ENV_PREFIX)}
    assert names - SETTINGS_ENV == set()


def test_configmap_values_are_accepted_by_the_worker_settings(
    rendered: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Load the rendered settings exactly as the pod would: from the environment.
    _, objects = rendered
    for key in list(SETTINGS_ENV):
        monkeypatch.delenv(key, raising=False)
    for key, value in _configmap_env(objects).items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.role == VALUES_SETS[rendered[0]].get("role", "all")


def test_settings_map_becomes_env_and_cannot_override_chart_values() -> None:
    env = _configmap_env(render({"settings": {"max_batch_size": 32, "log_level": "DEBUG"}}))
    assert env["FINSIGNAL_MAX_BATCH_SIZE"] == "32"
    assert env["FINSIGNAL_LOG_LEVEL"] == "DEBUG"
    with pytest.raises(helm.HelmRenderError, match="settings.redis_url"):
        render({"settings": {"redis_url": "redis://elsewhere:6379/0"}})
    with pytest.raises(helm.HelmRenderError, match="settings.sasl_password"):
        render({"settings": {"sasl_password": "hunter2"}})


def test_settings_change_rolls_the_pods() -> None:
    def checksum(values: dict[str, Any]) -> str:
        deployment = one(render(values), "Deployment")
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert checksum({}) != checksum({"settings": {"max_batch_size": 16}})


def test_gpu_values_request_a_gpu_and_use_the_gpu_image() -> None:
    objects = render(VALUES_SETS["gpu-values"])
    container = _container(objects)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"].endswith("-gpu")
    assert _configmap_env(objects)["FINSIGNAL_PROVIDER"] == "cuda"
    cpu_container = _container(render({}))
    assert "nvidia.com/gpu" not in cpu_container["resources"].get("limits", {})
    assert _configmap_env(render({}))["FINSIGNAL_PROVIDER"] == "cpu"


# --- Secrets: mounted files, never values -------------------------------------------------------------


def test_kafka_and_redis_secrets_are_mounted_files_named_by_env() -> None:
    objects = render(VALUES_SETS["classify-keda-monitoring-values"])
    assert by_kind(objects, "Secret") == []  # existing Secrets only; the chart never holds a password
    env = _configmap_env(objects)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in _container(objects)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}

    def mounted_file(env_name: str) -> tuple[str, str]:
        path = env[env_name]
        (volume_name,) = [name for name, mount in mounts.items() if path.startswith(mount + "/")]
        secret = volumes[volume_name]["secret"]
        item = next(i for i in secret["items"] if i["path"] == path.rsplit("/", 1)[1])
        return secret["secretName"], item["key"]

    assert mounted_file("FINSIGNAL_SASL_PASSWORD_FILE") == ("finsignal-kafka-sasl", "password")
    assert mounted_file("FINSIGNAL_SSL_CAFILE") == ("finsignal-kafka-ca", "ca.crt")
    assert mounted_file("FINSIGNAL_REDIS_PASSWORD_FILE") == ("finsignal-redis", "password")
    assert env["FINSIGNAL_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["FINSIGNAL_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert all(m.get("readOnly") for m in _container(objects)["volumeMounts"] if m["name"] != "tmp")


def test_sasl_without_a_secret_is_refused_with_the_fix() -> None:
    with pytest.raises(helm.HelmRenderError, match="kafka.sasl.existingSecret"):
        render({"kafka": {"securityProtocol": "SASL_SSL", "sasl": {"mechanism": "PLAIN", "username": "u"}}})


# --- Scaling, disruption, monitoring ---------------------------------------------------------------


def test_keda_scales_the_classify_group_on_input_lag_capped_by_partitions() -> None:
    values = VALUES_SETS["classify-keda-monitoring-values"]
    objects = render(values)
    scaled = one(objects, "ScaledObject")
    deployment = one(objects, "Deployment")
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"]  # KEDA owns it; an upgrade must not reset it
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == _configmap_env(objects)["FINSIGNAL_GROUP_ID"]
    assert trigger["metadata"]["topic"] == _configmap_env(objects)["FINSIGNAL_INPUT_TOPIC"]
    assert set(trigger["metadata"]) <= KEDA_KAFKA_METADATA
    assert trigger["authenticationRef"] == {"name": "finsignal-kafka"}
    assert scaled["spec"]["maxReplicaCount"] <= values["kafka"]["inputPartitions"]
    # Unset maxReplicaCount defaults to the partition count.
    default_max = one(render({"keda": {"enabled": True}, "kafka": {"inputPartitions": 4}}), "ScaledObject")
    assert default_max["spec"]["maxReplicaCount"] == 4


def test_keda_max_beyond_partitions_is_refused() -> None:
    with pytest.raises(helm.HelmRenderError, match="inputPartitions"):
        render({"keda": {"enabled": True, "maxReplicaCount": 13}, "kafka": {"inputPartitions": 12}})


def test_alert_role_has_no_lag_scaling_on_the_input_topic() -> None:
    values = VALUES_SETS["alert-role-values"]
    assert values["keda"]["enabled"] is True  # asked for, and still not applied to the alert stage
    objects = render(values)
    assert by_kind(objects, "ScaledObject") == []
    assert one(objects, "Deployment")["spec"]["replicas"] == values["replicaCount"]
    assert _configmap_env(objects)["FINSIGNAL_ROLE"] == "alert"
    assert "keda.enabled is ignored for the alert role" in render_notes(values)
    alerts = {rule["alert"] for rule in one(objects, "PrometheusRule")["spec"]["groups"][0]["rules"]}
    assert "FinsignalNoSignalsProduced" not in alerts  # the alert stage produces no signals


def test_classify_and_alert_releases_do_not_collide() -> None:
    classify = render(VALUES_SETS["classify-keda-monitoring-values"], release="fs-classify")
    alert = render(VALUES_SETS["alert-role-values"], release="fs-alert")
    names = lambda objs: {(o["kind"], o["metadata"]["name"]) for o in objs}  # noqa: E731
    assert names(classify) & names(alert) == set()
    selector = lambda objs: one(objs, "Deployment")["spec"]["selector"]["matchLabels"]  # noqa: E731
    assert selector(classify) != selector(alert)


def test_pdb_and_service_select_the_deployment_pods(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    pdb = one(objects, "PodDisruptionBudget")
    service = one(objects, "Service")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def test_service_monitor_scrapes_the_metrics_port() -> None:
    objects = render(VALUES_SETS["classify-keda-monitoring-values"])
    monitor = one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items()
        <= one(objects, "Service")["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert by_kind(render({}), "ServiceMonitor") == []


def test_rules_cover_lag_dlq_kb_staleness_and_silence_for_this_release() -> None:
    objects = render(VALUES_SETS["classify-keda-monitoring-values"], release="fs-classify")
    rules = one(objects, "PrometheusRule")["spec"]["groups"][0]["rules"]
    by_name = {rule["alert"]: rule for rule in rules}
    assert {"FinsignalConsumerLagGrowing", "FinsignalDLQRateHigh", "FinsignalKBStale",
            "FinsignalNoSignalsProduced"} <= set(by_name)  # fmt: skip
    for rule in rules:
        # Each rule looks at this release's pods only (job = the Service name via the ServiceMonitor).
        assert f'job="fs-classify-finsignal", namespace="{NAMESPACE}"' in rule["expr"], rule["alert"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert rule["expr"].count("(") == rule["expr"].count(")")
        assert rule["expr"].count("{") == rule["expr"].count("}")


def test_dashboard_configmap_carries_the_shared_dashboard_for_the_sidecar() -> None:
    objects = render({})
    dashboard = next(
        cm for cm in by_kind(objects, "ConfigMap") if cm["metadata"]["name"].endswith("-dashboard")
    )
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["finsignal.json"]) == json.loads(DASHBOARD_PATH.read_text())
    assert [cm for cm in by_kind(render({"dashboard": {"enabled": False}}), "ConfigMap")
            if cm["metadata"]["name"].endswith("-dashboard")] == []  # fmt: skip


def test_release_name_is_used_in_every_object_name() -> None:
    for obj in render({}):
        assert obj["metadata"]["name"].startswith(RELEASE), obj["kind"]


def test_kubernetes_validation_catches_a_misspelt_field() -> None:
    deployment = one(render({}), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {
        "httpGet": {"path": "/healthz"}
    }
    with pytest.raises(kubernetes_validate.ValidationError, match="livenesProbe"):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[0], strict=True)
