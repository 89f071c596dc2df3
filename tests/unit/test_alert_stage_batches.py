"""The alert stage's batch step with stand-in Kafka clients: confirm, then commit; never re-publish."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError

from worker.alerts import metrics
from worker.alerts.engine import AlertEngine, format_time
from worker.alerts.signals import parse_signal
from worker.alerts.stage import AlertStage
from worker.config import load_settings

T0 = 1_800_000_000.0


class Record:
    def __init__(self, offset: int, value: bytes, partition: int = 0) -> None:
        self.topic, self.partition, self.offset, self.value = "signals", partition, offset, value


class Future:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def get(self, timeout: float | None = None) -> None:
        if self.error is not None:
            raise self.error


class Producer:
    def __init__(self, error: Exception | None = None) -> None:
        self.sent: list[tuple[str, bytes, dict[str, Any]]] = []
        self.error = error

    def send(self, topic: str, key: bytes, value: bytes) -> Future:
        self.sent.append((topic, key, orjson.loads(value)))
        return Future(self.error)

    def flush(self, timeout: float | None = None) -> None:
        pass


class Consumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, Any]] = []

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.commits.append(offsets)


def signal_bytes(i: int, t: float, p: float) -> bytes:
    return orjson.dumps(
        {
            "id": f"s{i}",
            "published_at": format_time(t),
            "processed_at": format_time(t + 1),
            "topic": {"label": "Markets", "probability": 0.9, "kb_only": False},
            "entities": [{"ticker": "ACME", "name": "Acme", "match": "Acme"}],
            "sentiment": {"probabilities": {"negative": p, "neutral": 1 - p, "positive": 0.0}},
            "model": {"name": "m", "version": "1"},
            "kb_version": 2,
        }
    )


def burst_records() -> list[Record]:
    # a quiet hour, then ten bad-news messages in 100 s, then a clock tick a little later
    records = [Record(i, signal_bytes(i, T0 + 600 * i, 0.05)) for i in range(6)]
    records += [Record(6 + i, signal_bytes(6 + i, T0 + 3600 + 10 * i, 0.95)) for i in range(10)]
    records.append(Record(99, b"not json"))
    return records


def stage_with(producer: Producer) -> tuple[AlertStage, Consumer]:
    stage = AlertStage(load_settings(alerts_topic="alerts.t", alert_top_messages=2))
    consumer = Consumer()
    stage._consumer = consumer  # type: ignore[assignment]
    stage._producer = producer  # type: ignore[assignment]
    return stage, consumer


def test_alerts_are_confirmed_before_the_offsets_are_committed() -> None:
    producer = Producer()
    stage, consumer = stage_with(producer)
    invalid = metrics.INVALID_SIGNALS._value.get()
    stage._process_live(burst_records())
    firing = [payload for _, _, payload in producer.sent if payload["status"] == "firing"]
    keys = sorted(payload["key"] for payload in firing)
    assert keys == ["entity:ACME", "topic:Markets"]
    assert all(topic == "alerts.t" for topic, _, _ in producer.sent)
    assert {key for _, key, _ in producer.sent} == {b"entity:ACME", b"topic:Markets"}
    assert len(consumer.commits) == 1
    assert consumer.commits[0][TopicPartition("signals", 0)].offset == 100  # after the last record
    assert metrics.INVALID_SIGNALS._value.get() == invalid + 1  # the bad record is counted, not fatal


def test_already_published_alerts_are_not_sent_again() -> None:
    first = Producer()
    stage, _ = stage_with(first)
    stage._process_live(burst_records())
    ids = {(p["id"], p["status"]) for _, _, p in first.sent}

    again = Producer()
    stage, consumer = stage_with(again)
    stage._published = set(ids)  # as read back from the alerts topic on start
    before = metrics.DUPLICATES_SUPPRESSED._value.get()
    stage._process_live(burst_records())
    assert again.sent == []
    assert metrics.DUPLICATES_SUPPRESSED._value.get() == before + len(ids)
    assert consumer.commits  # the batch is done: its offsets are committed


def test_a_failed_send_commits_nothing() -> None:
    producer = Producer(error=KafkaTimeoutError("broker gone"))
    stage, consumer = stage_with(producer)
    with pytest.raises(KafkaTimeoutError):
        stage._process_live(burst_records())
    assert producer.sent and consumer.commits == []


def test_a_batch_is_merged_across_partitions_by_event_time() -> None:
    # The consumer hands a batch over partition by partition: partition 1 first, whose newest event
    # is ten minutes after partition 0's burst. Fed in that order the burst would be late; merged by
    # event time it fires, and each partition commits after its highest offset.
    producer = Producer()
    stage, consumer = stage_with(producer)
    history = [Record(i, signal_bytes(i, T0 + 600 * i, 0.05)) for i in range(6)]
    stage._process_live(history)
    other = [Record(i, signal_bytes(100 + i, T0 + 3600 + 60 * i, 0.05), partition=1) for i in range(12)]
    burst = [Record(6 + i, signal_bytes(6 + i, T0 + 3600 + 10 * i, 0.95)) for i in range(10)]
    stage._process_live(other + burst)
    assert stage.engine.late_events == 0
    assert "entity:ACME" in [p["key"] for _, _, p in producer.sent if p["status"] == "firing"]
    # the control: the same records in the order they were handed over make the burst late
    engine = AlertEngine(stage.config)
    for record in history + other + burst:
        engine.process(parse_signal(orjson.loads(record.value)))
    assert engine.late_events >= 5
    last = consumer.commits[-1]
    assert last[TopicPartition("signals", 0)].offset == 16 and last[TopicPartition("signals", 1)].offset == 12
