"""The classify stage end to end on a real Tansu broker and a real Redis.

Each test starts `finsignal run`'s stages in-process (threads) on fresh topics, a fresh consumer group
and a fresh KB namespace, sends real records, and reads the output topics back.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import orjson
import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from kb_sync.loader import load_default_kb
from kb_sync.model import KBEntry
from kb_sync.store import KBStore
from worker.commands.run import Stages
from worker.config import Settings
from worker.embedded import create_topics
from worker.schemas import DLQ_REASON, STORY_HEADER, decode_headers, validate
from worker.story import story_id

PARTITIONS = 3


def _event(i: int, text: str | None = None, **extra: object) -> dict[str, object]:
    event: dict[str, object] = {
        "id": f"evt-{i}",
        "text": text or f"Acme shares fall {i}% after the company cuts its full-year guidance",
        "source": "test",
        "published_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    event.update(extra)
    return event


@contextmanager
def running(settings: Settings, ready_timeout_s: float = 60.0) -> Iterator[Stages]:
    create_topics(
        settings.kafka_bootstrap,
        [settings.input_topic, settings.signals_topic, settings.dlq_topic, settings.alerts_topic],
        partitions=PARTITIONS,
    )
    stages = Stages(settings)
    stop = threading.Event()
    thread = threading.Thread(target=stages.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + ready_timeout_s
    while not stages.ready():
        assert thread.is_alive(), f"stages died: {stages.errors}"
        assert time.monotonic() < deadline, f"not ready: {stages.health.failing()}"
        time.sleep(0.2)
    try:
        yield stages
    finally:
        stop.set()
        thread.join(settings.shutdown_timeout_s + 10)
        assert not thread.is_alive(), "stages did not stop"
        assert not stages.errors, stages.errors


def send(settings: Settings, values: list[bytes], keys: list[bytes | None] | None = None) -> None:
    producer = KafkaProducer(**settings.kafka_client_kwargs(), acks="all")
    futures = [
        producer.send(settings.input_topic, value=v, key=(keys[i] if keys else None))
        for i, v in enumerate(values)
    ]
    producer.flush(30)
    for future in futures:
        future.get(timeout=10)
    producer.close()


def read_topic(
    settings: Settings, topic: str, count: int, timeout_s: float = 60.0
) -> list[tuple[bytes | None, bytes, dict[str, str]]]:
    """Every record of ``topic`` from the beginning until ``count`` are in (no end-offset reliance)."""
    consumer = KafkaConsumer(group_id=None, enable_auto_commit=False, **settings.kafka_client_kwargs())
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    out: list[tuple[bytes | None, bytes, dict[str, str]]] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < count and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=300).values():
            out.extend((r.key, r.value, decode_headers(r.headers)) for r in records)
    # a short extra read: more than `count` records would be duplicates or strays
    for records in consumer.poll(timeout_ms=500).values():
        out.extend((r.key, r.value, decode_headers(r.headers)) for r in records)
    consumer.close()
    return out


def committed_total(settings: Settings) -> int:
    consumer = KafkaConsumer(
        group_id=settings.group_id, enable_auto_commit=False, **settings.kafka_client_kwargs()
    )
    total = sum(consumer.committed(TopicPartition(settings.input_topic, p)) or 0 for p in range(PARTITIONS))
    consumer.close(autocommit=False)
    return total


def scrape(stages: Stages) -> dict[str, float]:
    text = urllib.request.urlopen(stages.metrics_url + "/metrics", timeout=5).read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


@pytest.fixture
def kb_store(settings_factory: Callable[..., Settings]) -> Iterator[KBStore]:
    settings = settings_factory()
    client = redis.Redis.from_url(settings.redis_url)
    store = KBStore(client, settings.kb_namespace)
    yield store
    for key in client.scan_iter(f"{settings.kb_namespace}*"):
        client.delete(key)
    client.close()


def test_n_events_in_n_valid_signals_out_and_offsets_committed(
    settings_factory: Callable[..., Settings], kb_store: KBStore
) -> None:
    settings = settings_factory(kb_poll_interval_s=1.0)
    kb_store.publish(load_default_kb(), author="test")
    n = 120
    texts = [
        "Acme Corp cuts full-year guidance, shares tumble",
        "Fed signals two more rate hikes this year as inflation stays sticky",
        "$TSLA deliveries beat estimates; stock jumps in premarket",
        "Oil prices slide as OPEC+ agrees to raise output",
    ]
    events = [_event(i, texts[i % len(texts)] + f" (#{i})") for i in range(n)]
    with running(settings) as stages:
        before = scrape(stages)
        send(settings, [orjson.dumps(e) for e in events], [str(e["id"]).encode() for e in events])
        records = read_topic(settings, settings.signals_topic, n)
        signals = [orjson.loads(value) for _, value, _ in records]
        assert sorted(s["id"] for s in signals) == sorted(str(e["id"]) for e in events)
        text_of = {str(e["id"]): str(e["text"]) for e in events}
        for (key, _, headers), signal in zip(records, signals, strict=True):
            validate("signal", signal)
            assert key == signal["key"].encode()
            assert headers["finsignal.source.topic"] == settings.input_topic
            assert int(headers["finsignal.source.partition"]) in range(PARTITIONS)
            assert headers[STORY_HEADER] == story_id(text_of[signal["id"]])  # the story fingerprint
            assert signal["kb_version"] == kb_store.current_version()
            assert signal["evidence"], "the default KB should give evidence for financial headlines"
        by_id = {s["id"]: s for s in signals}
        assert by_id["evt-2"]["entities"][0]["ticker"] == "TSLA" and by_id["evt-2"]["key"] == "entity:TSLA"
        assert by_id["evt-0"]["sentiment"]["label"] == "negative"
        deadline = time.monotonic() + 20
        while committed_total(settings) < n and time.monotonic() < deadline:
            time.sleep(0.5)
        assert committed_total(settings) == n
        after = scrape(stages)
        assert after["finsignal_messages_consumed_total"] - before["finsignal_messages_consumed_total"] == n
        assert after["finsignal_signals_produced_total"] - before["finsignal_signals_produced_total"] == n
        assert after["finsignal_kb_version"] == kb_store.current_version()
        assert after["finsignal_ready"] == 1


def test_bad_inputs_go_to_the_dlq_with_reasons_and_neighbours_still_classify(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(max_message_bytes=4096)
    missing_text = _event(101)
    del missing_text["text"]
    bad: dict[str, bytes] = {
        "malformed_json": b'{"id": "x", "text": "unterminated',
        "schema/missing_text": orjson.dumps(missing_text),
        "schema/wrong_type": orjson.dumps(_event(102, published_at=12345)),
        "invalid_utf8": b'{"id": "u", "text": "caf\xe9 ' + b'\xff\xfe", "source": "t"}',
        "empty_text": orjson.dumps(_event(103, text="   ")),
        "too_large": orjson.dumps(_event(104, text="x" * 5000)),
    }
    values: list[bytes] = []
    good_ids: list[str] = []
    for i, value in enumerate(bad.values()):
        good = _event(i, "Bank of Japan keeps rates unchanged; yen weakens")
        good_ids.append(str(good["id"]))
        values += [orjson.dumps(good), value]
    with running(settings) as stages:
        before = scrape(stages)
        send(settings, values)
        signals = read_topic(settings, settings.signals_topic, len(good_ids))
        dlq = read_topic(settings, settings.dlq_topic, len(bad))
        after = scrape(stages)
    assert sorted(orjson.loads(v)["id"] for _, v, _ in signals) == sorted(good_ids)
    assert sorted(v for _, v, _ in dlq) == sorted(bad.values()), "DLQ holds the original bytes"
    reasons = sorted(headers[DLQ_REASON] for _, _, headers in dlq)
    assert reasons == sorted(name.split("/")[0] for name in bad)
    for reason in set(reasons):
        key = f'finsignal_dlq_total{{reason="{reason}"}}'
        assert after[key] - before.get(key, 0.0) == reasons.count(reason)


def test_kb_publish_changes_prediction_live_and_invalid_kb_keeps_the_old_version(
    settings_factory: Callable[..., Settings], kb_store: KBStore
) -> None:
    settings = settings_factory(kb_poll_interval_s=1.0)
    v1 = kb_store.publish(load_default_kb(), author="test")
    message = "Quorvex tokens soar as the Lunar Widget Exchange lists them for trading"
    new_topic = "Lunar Widgets"
    with running(settings) as stages:
        send(settings, [orjson.dumps(_event(1, message))])
        (first,) = [orjson.loads(v) for _, v, _ in read_topic(settings, settings.signals_topic, 1)]
        assert first["kb_version"] == v1 and first["topic"]["label"] != new_topic

        exemplars = [
            KBEntry(
                id=f"lunar:{i}",
                kind="exemplar",
                text=text,
                group="crypto",
                author="expert",
                topic=new_topic,
                weight=1.0,
            )
            for i, text in enumerate(
                [
                    "Quorvex tokens soar as the Lunar Widget Exchange lists them",
                    "Lunar Widget Exchange lists new widget tokens for trading",
                    "Widget tokens jump after a Lunar Widget Exchange listing",
                ]
            )
        ]
        v2 = kb_store.apply_delta(exemplars, [], author="expert")
        published = time.monotonic()
        while scrape(stages)["finsignal_kb_version"] != v2:
            assert time.monotonic() - published < 10, "KB v2 not picked up within 10 s"
            time.sleep(0.2)
        send(settings, [orjson.dumps(_event(2, message))])
        second = [orjson.loads(v) for _, v, _ in read_topic(settings, settings.signals_topic, 2)]
        (after_update,) = [s for s in second if s["id"] == "evt-2"]
        assert after_update["kb_version"] == v2
        assert after_update["topic"] == {**after_update["topic"], "label": new_topic, "kb_only": True}
        assert after_update["evidence"][0]["id"].startswith("lunar:")

        # A corrupt version in Redis (written behind the store's back) is refused; v2 keeps serving.
        client = kb_store.client
        client.set(f"{settings.kb_namespace}:current", b"999")
        client.publish(f"{settings.kb_namespace}:events", b"999")
        time.sleep(3)
        metrics_now = scrape(stages)
        assert metrics_now["finsignal_kb_version"] == v2
        assert metrics_now["finsignal_kb_reload_failures_total"] >= 1
        assert stages.ready()
