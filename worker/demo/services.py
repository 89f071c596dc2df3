"""The demo's own broker and Redis: started, filled with topics and the default KB, and always cleaned up."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from kb_sync.loader import load_default_kb
from kb_sync.store import KBStore, redis_client
from worker.config import Settings
from worker.embedded import EmbeddedBroker, EmbeddedRedis, create_topics, start_redis, start_tansu

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoServices:
    broker: EmbeddedBroker
    redis: EmbeddedRedis
    kb_namespace: str

    @property
    def redis_note(self) -> str:
        return "REDIS_URL (fresh namespace, removed at the end)" if self.redis.external else "bundled"


@contextmanager
def demo_services(default_namespace: str) -> Iterator[DemoServices]:
    """Tansu on a free port and Redis (REDIS_URL when reachable, else the bundled server).

    With an external Redis the KB lives in a fresh namespace that is deleted on the way out, so the
    demo never touches anyone's KB; the bundled Redis is private and stopped anyway.
    """
    broker = start_tansu()
    try:
        redis_server = start_redis()
        try:
            namespace = (
                f"finsignal:demo:{uuid.uuid4().hex[:12]}" if redis_server.external else default_namespace
            )
            try:
                yield DemoServices(broker, redis_server, namespace)
            finally:
                if redis_server.external:
                    _delete_namespace(redis_server.url, namespace)
        finally:
            redis_server.stop()
    finally:
        broker.stop()


def create_demo_topics(settings: Settings, partitions: int) -> None:
    """Input and signals topics get ``partitions`` (parallel keys); alerts and DLQ are low-volume."""
    create_topics(settings.kafka_bootstrap, [settings.input_topic, settings.signals_topic], partitions)
    create_topics(settings.kafka_bootstrap, [settings.alerts_topic, settings.dlq_topic], 1)


def publish_default_kb(settings: Settings) -> tuple[int, int]:
    """Publish the shipped KB as a new version; returns (version, number of points)."""
    entries = load_default_kb()
    client = redis_client(settings)
    try:
        store = KBStore(
            client,
            settings.kb_namespace,
            max_entries=settings.kb_max_entries,
            keep_versions=settings.kb_keep_versions,
        )
        version = store.publish(entries, author="finsignal-demo", message="default KB for the demo")
    finally:
        client.close()
    return version, len(entries)


def _delete_namespace(url: str, namespace: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=500))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
        log.info("demo: removed %d keys of %s from the external Redis", len(keys), namespace)
    except redis.RedisError as exc:  # the demo's result stands; say what is left behind
        log.warning("demo: could not remove the KB namespace %s from %s: %s", namespace, url, exc)
    finally:
        with contextlib.suppress(Exception):
            client.close()
