"""A real `finsignal run` (on Tansu + Redis) exports every metric the dashboard and the alert rules use.

The worker is started as the container starts it (`python -m worker run`, settings from FINSIGNAL_*
environment variables), scraped over HTTP once ready, and stopped with SIGTERM like Kubernetes does.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.deploy.chart import DASHBOARD_PATH, VALUES_SETS, render
from tests.deploy.metric_refs import (
    CONTRACT_LABELS,
    dashboard_exprs,
    exported_labels,
    exported_names,
    referenced_metrics,
    rule_exprs,
)
from worker.embedded import create_topics

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 180.0
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


@pytest.fixture
def worker_env(kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]) -> dict[str, str]:
    topics = {
        "FINSIGNAL_INPUT_TOPIC": unique_name("news.raw"),
        "FINSIGNAL_SIGNALS_TOPIC": unique_name("news.signals"),
        "FINSIGNAL_ALERTS_TOPIC": unique_name("news.alerts"),
        "FINSIGNAL_DLQ_TOPIC": unique_name("news.dlq"),
    }
    create_topics(kafka_bootstrap, list(topics.values()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINSIGNAL_")}
    env.update(topics)
    env.update(
        {
            "FINSIGNAL_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "FINSIGNAL_REDIS_URL": redis_url,
            "FINSIGNAL_KB_NAMESPACE": unique_name("kb"),
            "FINSIGNAL_GROUP_ID": unique_name("classify"),
            "FINSIGNAL_ALERT_GROUP_ID": unique_name("alert"),
            "FINSIGNAL_GROUP_INSTANCE_ID": unique_name("pod"),
            "FINSIGNAL_ROLE": "all",
            "FINSIGNAL_PROVIDER": "cpu",
            "FINSIGNAL_METRICS_HOST": "127.0.0.1",
            "FINSIGNAL_METRICS_PORT": str(_free_port()),
            "FINSIGNAL_MAX_POLL_INTERVAL_MS": "15000",
            "FINSIGNAL_SESSION_TIMEOUT_MS": "10000",
            "FINSIGNAL_SHUTDOWN_TIMEOUT_S": "10",
        }
    )
    # The pods publish the KB out of band (`finsignal kb publish`); do the same here.
    subprocess.run(
        [sys.executable, "-m", "worker", "kb", "publish", "--author", "test", "--message", "starter"],
        env=env,
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return env


@pytest.fixture
def running_worker(
    worker_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "worker", "run"], env=worker_env, cwd=REPO_ROOT, stdout=log, stderr=log
        )
    base = f"http://127.0.0.1:{worker_env['FINSIGNAL_METRICS_PORT']}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"worker exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                if _get(base + "/readyz")[0] == 200:
                    break
            except OSError:
                pass  # metrics server not up yet
            if time.monotonic() > deadline:
                pytest.fail(
                    f"worker not ready after {READY_TIMEOUT_S:.0f} s:\n{log_path.read_text()[-4000:]}"
                )
            time.sleep(0.5)
        yield process, base
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def test_running_worker_exports_every_metric_the_dashboard_and_rules_query(
    running_worker: tuple[subprocess.Popen[bytes], str],
) -> None:
    process, base = running_worker
    assert _get(base + "/healthz")[0] == 200
    status, exposition = _get(base + "/metrics")
    assert status == 200
    exported = exported_names(exposition)

    rule_queries: list[str] = []
    for values in VALUES_SETS.values():
        rule_queries += rule_exprs(render({**values, "prometheusRule": {"enabled": True}}))
    used = referenced_metrics(dashboard_exprs(DASHBOARD_PATH) + rule_queries)
    assert used, "the dashboard and rules query no finsignal metric"
    assert used - exported == set(), "queried by the dashboard/rules but not exported by the worker"

    # Labels the dashboard groups by, wherever the worker has samples for them already.
    labels = exported_labels(exposition)
    for metric, wanted in CONTRACT_LABELS.items():
        if metric in labels:
            assert wanted <= labels[metric], metric

    # Kubernetes stops pods with SIGTERM: the worker must exit cleanly within its shutdown timeout.
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
