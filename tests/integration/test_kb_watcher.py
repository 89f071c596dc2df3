"""The KB watcher on a real Redis: pub/sub delivery, poll fallback, refusal, reconnect."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator

import orjson
import pytest
import redis

from kb_sync.model import KBEntry, KBSnapshot
from kb_sync.store import KBStore
from kb_sync.watcher import KBWatcher
from worker.embedded import EmbeddedRedis, start_redis

ENTRY = KBEntry(
    id="a", kind="term", text="profit warning", group="corporate", author="t", sentiment="negative"
)


def entries(*ids: str) -> list[KBEntry]:
    return [dataclasses.replace(ENTRY, id=i) for i in ids]


class Recorder:
    def __init__(self) -> None:
        self.snapshots: list[KBSnapshot] = []
        self.statuses: list[str] = []
        self.fail_next = 0
        self.lock = threading.Lock()

    def on_snapshot(self, snapshot: KBSnapshot) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("consumer not ready")
        with self.lock:
            self.snapshots.append(snapshot)

    def on_status(self, status: str) -> None:
        with self.lock:
            self.statuses.append(status)

    def versions(self) -> list[int]:
        with self.lock:
            return [s.version for s in self.snapshots]


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def namespace(unique_name: Callable[[str], str]) -> str:
    return unique_name("kb")


@pytest.fixture
def store(redis_url: str, namespace: str) -> Iterator[KBStore]:
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    yield KBStore(client, namespace)
    client.close()


@pytest.fixture
def redis_client_raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    yield client
    client.close()


def make_watcher(url: str, namespace: str, recorder: Recorder, poll_interval_s: float) -> KBWatcher:
    def factory() -> redis.Redis:
        return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=1)

    return KBWatcher(factory, namespace, poll_interval_s, recorder.on_snapshot, recorder.on_status)


def test_publish_is_delivered_via_pubsub(redis_url: str, namespace: str, store: KBStore) -> None:
    store.publish(entries("a"), author="t")  # published before start: picked up by the first check
    recorder = Recorder()
    # A poll interval far longer than the test: only a pub/sub notice can deliver version 2 in time.
    watcher = make_watcher(redis_url, namespace, recorder, poll_interval_s=300)
    watcher.start()
    try:
        assert watcher.wait_for_version(1, timeout=5)
        assert wait_until(lambda: watcher.status == "ok", 2)
        time.sleep(0.3)  # the subscription is up well before the first check returns
        started = time.monotonic()
        version = store.publish(entries("a", "b"), author="t")
        assert watcher.wait_for_version(version, timeout=3)
        print(f"pub/sub delivery took {1000 * (time.monotonic() - started):.1f} ms")
        assert recorder.versions() == [1, 2]
        assert [e.id for e in recorder.snapshots[-1].entries] == ["a", "b"]
        assert recorder.statuses == ["ok"]
    finally:
        watcher.stop()


def test_poll_delivers_when_the_notice_is_missed(
    redis_url: str, namespace: str, store: KBStore, redis_client_raw: redis.Redis
) -> None:
    v1 = store.publish(entries("a"), author="t")
    v2 = store.publish(entries("a", "b"), author="t")
    redis_client_raw.set(f"{namespace}:current", v1)  # pointer moved by hand: no notice at all
    recorder = Recorder()
    watcher = make_watcher(redis_url, namespace, recorder, poll_interval_s=0.3)
    watcher.start()
    try:
        assert watcher.wait_for_version(v1, timeout=5)
        redis_client_raw.set(f"{namespace}:current", v2)  # again without a notice
        assert watcher.wait_for_version(v2, timeout=5)
        assert recorder.versions() == [v1, v2]
    finally:
        watcher.stop()


def test_corrupt_version_is_refused_and_old_kb_kept(
    redis_url: str, namespace: str, store: KBStore, redis_client_raw: redis.Redis
) -> None:
    recorder = Recorder()
    watcher = make_watcher(redis_url, namespace, recorder, poll_interval_s=0.3)
    v1 = store.publish(entries("a"), author="t")
    watcher.start()
    try:
        assert watcher.wait_for_version(v1, timeout=5)
        # A version written by hand whose blob does not match its checksum, then made current.
        v2 = int(redis_client_raw.incr(f"{namespace}:seq"))
        meta = {"version": v2, "published_at": "2026-11-28T00:00:00Z", "author": "x", "sha256": "0" * 64}
        redis_client_raw.set(f"{namespace}:v:{v2}", b"{corrupt")
        redis_client_raw.set(f"{namespace}:v:{v2}:meta", orjson.dumps(meta))
        redis_client_raw.set(f"{namespace}:current", v2)
        redis_client_raw.publish(f"{namespace}:events", orjson.dumps({"version": v2}))
        assert wait_until(lambda: watcher.status == "invalid", 5)
        time.sleep(1.0)  # several polls: still refused, nothing delivered, no repeated callbacks
        assert recorder.versions() == [v1]
        assert watcher.delivered_version == v1 and watcher.refused_version == v2
        assert "checksum" in (watcher.last_error or "")
        assert recorder.statuses.count("invalid") == 1
        v3 = store.publish(entries("a", "c"), author="t")  # a good version heals it
        assert watcher.wait_for_version(v3, timeout=5)
        assert recorder.versions() == [v1, v3]
        assert recorder.statuses[-1] == "ok"
    finally:
        watcher.stop()


def test_failing_callback_is_retried_at_next_poll(redis_url: str, namespace: str, store: KBStore) -> None:
    recorder = Recorder()
    recorder.fail_next = 2
    watcher = make_watcher(redis_url, namespace, recorder, poll_interval_s=0.2)
    v1 = store.publish(entries("a"), author="t")
    watcher.start()
    try:
        assert watcher.wait_for_version(v1, timeout=5)
        assert recorder.versions() == [v1]
        assert recorder.fail_next == 0
    finally:
        watcher.stop()


@pytest.fixture
def own_redis() -> Iterator[EmbeddedRedis]:
    # A private server: this test stops it, which must not disturb other tests.
    with start_redis(prefer_env=False) as server:
        yield server


def test_reconnects_after_redis_outage(own_redis: EmbeddedRedis, unique_name: Callable[[str], str]) -> None:
    namespace = unique_name("kb")
    recorder = Recorder()
    watcher = make_watcher(own_redis.url, namespace, recorder, poll_interval_s=0.3)
    client = redis.Redis.from_url(own_redis.url, socket_timeout=2)
    KBStore(client, namespace).publish(entries("a"), author="t")
    watcher.start()
    try:
        assert watcher.wait_for_version(1, timeout=5)
        own_redis.stop()
        assert wait_until(lambda: watcher.status == "stale", 5)
        own_redis.start()  # same port, empty (no persistence): versions count from 1 again
        assert wait_until(lambda: watcher.status == "ok", 10)
        assert recorder.versions() == [1]  # an empty Redis does not wipe the KB being served
        client = redis.Redis.from_url(own_redis.url, socket_timeout=2)
        KBStore(client, namespace).publish(entries("x", "y"), author="t")  # a *different* version 1
        assert wait_until(lambda: watcher.deliveries == 2, 5)
        assert [e.id for e in recorder.snapshots[-1].entries] == ["x", "y"]
        assert recorder.statuses == ["ok", "stale", "ok"]
    finally:
        watcher.stop()
        client.close()


def test_stop_is_prompt(redis_url: str, namespace: str) -> None:
    watcher = make_watcher(redis_url, namespace, Recorder(), poll_interval_s=60)
    watcher.start()
    time.sleep(0.2)
    watcher.stop(timeout_s=5)
    assert watcher._thread is None
