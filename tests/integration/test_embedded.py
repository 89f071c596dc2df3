"""Embedded Tansu and Redis: start, round trip, restart on the same port, clean exit."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from worker.embedded import (
    EmbeddedServiceError,
    create_topics,
    kafka_api_versions_ok,
    redis_ping,
    start_redis,
    start_tansu,
)


def round_trip(bootstrap: str, topic: str, payloads: list[bytes]) -> list[bytes]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for payload in payloads:
            producer.send(topic, payload).get(timeout=30)
    finally:
        producer.close()
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=10_000
    )
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        received: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(received) < len(payloads) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                received.extend(r.value for r in records)
        return received
    finally:
        consumer.close()


def test_tansu_produce_consume_round_trip(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    topic = unique_name("embedded")
    create_topics(kafka_bootstrap, [topic])
    payloads = [f"message {i}".encode() for i in range(5)]
    assert round_trip(kafka_bootstrap, topic, payloads) == payloads


def test_create_topics_is_idempotent(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    a, b = unique_name("a"), unique_name("b")
    create_topics(kafka_bootstrap, [a], partitions=3)
    create_topics(kafka_bootstrap, [a, b, b], partitions=3)  # a exists already, b twice in the list
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        assert {a, b} <= set(admin.list_topics())
        described = {t["topic"] if "topic" in t else t["name"]: t for t in admin.describe_topics([a, b])}
        assert len(described[a]["partitions"]) == 3
    finally:
        admin.close()


def test_tansu_restart_keeps_port_and_serves_again(unique_name: Callable[[str], str]) -> None:
    with start_tansu() as broker:
        port = broker.port
        topic = unique_name("restart")
        create_topics(broker.bootstrap, [topic])
        broker.stop()
        assert not broker.running
        assert not kafka_api_versions_ok("127.0.0.1", port)
        broker.start()
        assert broker.port == port and broker.bootstrap == f"127.0.0.1:{port}"
        create_topics(broker.bootstrap, [topic])  # memory-only: the topic is gone and created again
        assert round_trip(broker.bootstrap, topic, [b"after restart"]) == [b"after restart"]
    assert not broker.running


def test_tansu_start_failure_reports_its_log() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(EmbeddedServiceError) as caught:
            start_tansu(port=port, timeout_s=10)
    message = str(caught.value)
    assert f"tansu on 127.0.0.1:{port}" in message
    assert "command:" in message and "log tail:" in message


def test_bundled_redis_when_redis_url_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    with start_redis() as server:
        assert not server.external and server.running
        url, port = server.url, server.port
        client = redis.Redis.from_url(url, socket_timeout=2)
        client.set("k", "v")
        server.restart()
        assert server.url == url and server.port == port
        assert redis_ping(url)
        assert client.get("k") is None  # no persistence: a restart starts empty
        server.stop()
        assert not redis_ping(url)
        server.start()
        assert redis_ping(url)
        client.close()
    assert not redis_ping(url)


def test_redis_url_is_used_when_reachable(monkeypatch: pytest.MonkeyPatch) -> None:
    with start_redis(prefer_env=False) as real:
        monkeypatch.setenv("REDIS_URL", real.url)
        external = start_redis()
        assert external.external and external.url == real.url
        external.stop()  # must not stop someone else's Redis
        assert redis_ping(real.url)
        with pytest.raises(EmbeddedServiceError, match="cannot restart an external Redis"):
            external.restart()


def test_unreachable_redis_url_falls_back_to_bundled(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{dead_port}/0")
    with start_redis() as server:
        assert not server.external and redis_ping(server.url)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still has a pid; it is dead for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_children_are_stopped_at_interpreter_exit() -> None:
    script = (
        "from worker.embedded import start_redis, start_tansu\n"
        "b = start_tansu(); r = start_redis(prefer_env=False)\n"
        "print(b._proc.pid, r._proc.pid, flush=True)\n"  # exits without calling stop()
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    pids = [int(p) for p in done.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)


def test_children_die_with_a_killed_parent() -> None:
    # SIGKILL skips atexit; the kernel's parent-death signal must still stop the children.
    script = (
        "import time\n"
        "from worker.embedded import start_redis, start_tansu\n"
        "b = start_tansu(); r = start_redis(prefer_env=False)\n"
        "print(b._proc.pid, r._proc.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
    finally:
        parent.kill()
        parent.wait(10)
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)
