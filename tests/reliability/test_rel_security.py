"""Scenario 7, security settings: Kafka SASL/SSL and Redis password/TLS settings reach the clients, secrets
come from env or files and never appear in logs or error messages, KB content is data only, and the
metrics server binds the configured address.
"""

from __future__ import annotations

import ast
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from relharness import REPO_ROOT, WorkerProcess, wait_until, worker_settings

from kb_sync.store import redis_client
from worker.config import ConfigError, load_settings
from worker.embedded import free_port

SECRET = "s3cr3t-Kafka-pa55-7f1c"
REDIS_SECRET = "s3cr3t-Redis-pa55-9e2d"


class Capture:
    """Stands in for KafkaConsumer/KafkaProducer and records the kwargs it was built with."""

    built: list[tuple[str, dict[str, Any]]] = []

    def __init__(self, *topics: str, **kwargs: Any) -> None:
        Capture.built.append((type(self).__name__, kwargs))

    def subscribe(self, *args: Any, **kwargs: Any) -> None:
        return None


class CaptureConsumer(Capture):
    pass


class CaptureProducer(Capture):
    pass


@pytest.fixture
def secret_files(tmp_path: Path) -> dict[str, Path]:
    files = {"sasl": tmp_path / "sasl_password", "redis": tmp_path / "redis_password"}
    files["sasl"].write_text(SECRET + "\n")  # a trailing newline, as `echo > file` writes it
    files["redis"].write_text(REDIS_SECRET)
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("not a real certificate")
    return files


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_settings_reach_the_worker_consumer_and_producer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, secret_files: dict[str, Path], mechanism: str
) -> None:
    import worker.app as app

    monkeypatch.setattr(app, "KafkaConsumer", CaptureConsumer)
    monkeypatch.setattr(app, "KafkaProducer", CaptureProducer)
    Capture.built.clear()
    settings = load_settings(
        kafka_bootstrap="kafka-0:9093,kafka-1:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism=mechanism,
        sasl_username="finsignal",
        sasl_password_file=str(secret_files["sasl"]),
        ssl_cafile=str(tmp_path / "ca.pem"),
        ssl_certfile=str(tmp_path / "client.pem"),
        ssl_keyfile=str(tmp_path / "client.key"),
    )
    worker = app.Worker(settings)
    worker._consumer()
    worker._producer()
    assert [kind for kind, _ in Capture.built] == ["CaptureConsumer", "CaptureProducer"]
    for _, kwargs in Capture.built:
        assert kwargs["bootstrap_servers"] == ["kafka-0:9093", "kafka-1:9093"]
        assert kwargs["security_protocol"] == "SASL_SSL"
        assert kwargs["sasl_mechanism"] == mechanism
        assert kwargs["sasl_plain_username"] == "finsignal"
        assert kwargs["sasl_plain_password"] == SECRET  # read from the file, newline stripped
        assert kwargs["ssl_cafile"] == str(tmp_path / "ca.pem")
        assert kwargs["ssl_certfile"] == str(tmp_path / "client.pem")
        assert kwargs["ssl_keyfile"] == str(tmp_path / "client.key")
        assert kwargs["enable_auto_commit" if "enable_auto_commit" in kwargs else "acks"] in (False, "all")


def test_secrets_from_env_are_masked_in_repr_and_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINSIGNAL_SASL_PASSWORD", SECRET)
    monkeypatch.setenv("FINSIGNAL_REDIS_PASSWORD", REDIS_SECRET)
    settings = load_settings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u")
    assert settings.sasl_password_value() == SECRET
    assert settings.redis_password_value() == REDIS_SECRET
    for text in (repr(settings), str(settings), str(settings.model_dump())):
        assert SECRET not in text and REDIS_SECRET not in text
    with pytest.raises(ConfigError) as info:
        load_settings(sasl_password=SECRET, redis_password=REDIS_SECRET, metrics_port="not-a-port")
    assert "metrics_port" in str(info.value)
    assert SECRET not in str(info.value) and REDIS_SECRET not in str(info.value)


def test_missing_secret_file_is_a_clear_error(tmp_path: Path) -> None:
    settings = load_settings(
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="u",
        sasl_password_file=str(tmp_path / "nope"),
    )
    with pytest.raises(ConfigError, match="cannot read secret file .*nope"):
        settings.kafka_client_kwargs()


def test_redis_password_file_and_tls_reach_the_redis_client(secret_files: dict[str, Path]) -> None:
    plain = redis_client(
        load_settings(redis_url="redis://cache:6379/2", redis_password_file=str(secret_files["redis"]))
    )
    assert plain.connection_pool.connection_kwargs["password"] == REDIS_SECRET
    assert plain.connection_pool.connection_kwargs["db"] == 2
    tls_url = "rediss://cache:6380/0?ssl_ca_certs=/etc/finsignal/redis-ca.pem&ssl_cert_reqs=required"
    tls = redis_client(load_settings(redis_url=tls_url, redis_password=REDIS_SECRET))
    assert tls.connection_pool.connection_class is redis.SSLConnection
    # TLS options travel in the URL (redis-py parses them): a private CA, certificate verification.
    assert tls.connection_pool.connection_kwargs["ssl_ca_certs"] == "/etc/finsignal/redis-ca.pem"
    assert tls.connection_pool.connection_kwargs["ssl_cert_reqs"] == "required"
    assert tls.connection_pool.connection_kwargs["password"] == REDIS_SECRET
    assert REDIS_SECRET not in repr(plain) and REDIS_SECRET not in repr(tls)


@pytest.mark.slow
def test_secrets_never_appear_in_a_debug_log_of_a_running_worker(
    kafka_bootstrap: str, redis_url: str, secret_files: dict[str, Path], tmp_path: Path, unique_name: Any
) -> None:
    """A real `finsignal run` at DEBUG with SASL to a broker that does not speak it and a Redis password
    the server does not expect: it fails to connect and logs a lot, but never a secret."""
    settings = worker_settings(
        kafka_bootstrap,
        redis_url,
        unique_name,
        log_level="DEBUG",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="finsignal",
        sasl_password_file=str(secret_files["sasl"]),
        redis_password=REDIS_SECRET,
    )
    worker = WorkerProcess("secret", settings, tmp_path).start()
    try:
        # Until the ops server answers and the Kafka/Redis clients have tried (and failed) to log in.
        assert wait_until(lambda: worker.readyz() is not None, 60), worker.tail()
        assert wait_until(lambda: "sasl" in worker.log().lower() or not worker.running, 30), worker.tail()
        time.sleep(3)
    finally:
        worker.stop()
    log = worker.log()
    assert len(log) > 2000, "expected a DEBUG log to search"
    assert SECRET not in log and REDIS_SECRET not in log
    help_text = subprocess.run(
        [sys.executable, "-m", "worker", "run", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**worker.env()},
        timeout=60,
    ).stdout
    assert "--sasl-password-file" in help_text and SECRET not in help_text and REDIS_SECRET not in help_text


def test_metrics_server_binds_the_configured_address() -> None:
    from worker.commands.run import Stages

    port = free_port()
    stages = Stages(load_settings(role="classify", metrics_host="127.0.0.2", metrics_port=port))
    stages.server.start()
    try:
        assert stages.server.host == "127.0.0.2" and stages.metrics_url == f"http://127.0.0.2:{port}"
        with urllib.request.urlopen(f"http://127.0.0.2:{port}/healthz", timeout=5) as response:
            assert response.status == 200
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    finally:
        stages.server.stop()
    default = load_settings()
    assert default.metrics_host == "127.0.0.1", "the default must not expose metrics on every interface"


def test_kb_code_never_unpickles_or_evaluates_content() -> None:
    """KB content is data: no pickle/marshal/eval/exec/yaml.load anywhere on the KB path."""
    forbidden_calls = {"eval", "exec", "compile", "__import__"}
    forbidden_modules = {"pickle", "marshal", "shelve", "dill", "cloudpickle"}
    paths = sorted((REPO_ROOT / "kb_sync").glob("*.py")) + [
        REPO_ROOT / "worker" / "classifier.py",
        REPO_ROOT / "worker" / "fusion.py",
    ]
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not forbidden_modules & {n.split(".")[0] for n in names}, f"{path}: imports {names}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in forbidden_calls, f"{path}:{node.lineno}: {node.func.id}()"
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
            ):
                owner = node.func.value
                assert not (isinstance(owner, ast.Name) and owner.id == "yaml"), f"{path}: yaml.load"


def test_kb_content_written_behind_the_store_is_schema_checked_and_size_capped() -> None:
    """Redis can be written by anyone: a version's blob is decoded as data and re-validated on load."""
    from kb_sync.store import KBCorrupt, decode_entries

    good = {
        "id": "t1",
        "kind": "term",
        "text": "profit warning",
        "group": "equities",
        "author": "x",
        "sentiment": "negative",
    }
    assert len(decode_entries(orjson.dumps([good]), 1, max_entries=10)) == 1
    hostile = {
        "too long text": [{**good, "text": "x" * 5000}],
        "code, not data": [{**good, "text": {"__reduce__": "os.system"}}],
        "weight out of range": [{**good, "weight": 1e9}],
        "not a list": {"entries": [good]},
        "pickle bytes": b"\x80\x04\x95",
    }
    for name, content in hostile.items():
        blob = content if isinstance(content, bytes) else orjson.dumps(content)
        with pytest.raises(KBCorrupt):
            decode_entries(blob, 7, max_entries=10)
            pytest.fail(f"{name} was accepted")
    with pytest.raises(KBCorrupt, match="kb_max_entries=2"):
        decode_entries(orjson.dumps([{**good, "id": f"t{i}"} for i in range(3)]), 7, max_entries=2)
