"""The alert stage's batch step with stand-in Kafka clients: confirm, then commit; never re-publish;
event-time order across partitions through the reorder buffer, and nothing held is committed."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError
from kafka.structs import OffsetAndMetadata

from worker.alerts import metrics
from worker.alerts.engine import AlertEngine, format_time
from worker.alerts.signals import parse_signal
from worker.alerts.stage import AlertStage
from worker.config import load_settings

T0 = 1_800_000_000.0


class Record:
    def __init__(
        self, offset: int, value: bytes, partition: int = 0, source: tuple[str, int] | None = None
    ) -> None:
        self.topic, self.partition, self.offset, self.value = "signals", partition, offset, value
        # as the classify stage writes them: the input record's topic, partition and offset
        self.headers: list[tuple[str, bytes]] = (
            []
            if source is None
            else [
                ("finsignal.source.topic", source[0].encode()),
                ("finsignal.source.partition", str(source[1]).encode()),
                ("finsignal.source.offset", str(offset).encode()),
            ]
        )


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
        self.closed = False

    def send(self, topic: str, key: bytes, value: bytes) -> Future:
        self.sent.append((topic, key, orjson.loads(value)))
        return Future(self.error)

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


class Consumer:
    """Every partition is read to its end (position == highwater): idle once quiet for long enough."""

    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, Any]] = []
        self.lookups: list[str] = []

    def partitions_for_topic(self, topic: str) -> set[int]:
        self.lookups.append(topic)
        return {0, 1, 2} if topic == "news.raw" else set()

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.commits.append(offsets)

    def highwater(self, tp: TopicPartition) -> int:
        return 0

    def position(self, tp: TopicPartition) -> int:
        return 0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def signal_bytes(i: int, t: float, p: float, ticker: str = "ACME", topic: str = "Markets") -> bytes:
    return orjson.dumps(
        {
            "id": f"s{i}",
            "published_at": format_time(t),
            "processed_at": format_time(t + 1),
            "topic": {"label": topic, "probability": 0.9, "kb_only": False},
            "entities": [{"ticker": ticker, "name": ticker.title(), "match": ticker.title()}],
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


def stage_with(producer: Producer, clock: Clock | None = None) -> tuple[AlertStage, Consumer]:
    settings = load_settings(alerts_topic="alerts.t", alert_top_messages=2, alert_partition_idle_s=5)
    stage = AlertStage(settings, monotonic=clock or Clock())
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


def test_a_failed_send_while_stopping_commits_nothing() -> None:
    producer = Producer(error=KafkaTimeoutError("broker gone"))
    stage, consumer = stage_with(producer)
    stage._stop.set()
    with pytest.raises(KafkaTimeoutError):
        stage._process_live(burst_records())
    assert producer.sent and consumer.commits == []


def test_a_failed_send_is_retried_on_a_fresh_producer_before_anything_is_committed() -> None:
    broken = Producer(error=KafkaTimeoutError("producer in a fatal state"))
    fresh = Producer()
    stage, consumer = stage_with(broken)
    stage._new_producer = lambda: fresh  # type: ignore[method-assign]
    commits_seen_by_fresh: list[int] = []
    real_send = fresh.send

    def send(topic: str, key: bytes, value: bytes) -> Future:
        commits_seen_by_fresh.append(len(consumer.commits))
        return real_send(topic, key, value)

    fresh.send = send  # type: ignore[method-assign]
    failures = metrics.PUBLISH_FAILURES._value.get()
    stage._process_live(burst_records())
    assert broken.closed and stage._producer is fresh
    assert [p["id"] for _, _, p in fresh.sent] == [p["id"] for _, _, p in broken.sent]  # same alerts
    assert set(commits_seen_by_fresh) == {0}, "nothing committed before the retry was confirmed"
    assert len(consumer.commits) == 1
    assert metrics.PUBLISH_FAILURES._value.get() == failures + 1


def test_partitions_are_merged_by_event_time_and_held_records_are_not_committed() -> None:
    # The consumer hands a batch over partition by partition: partition 1 first, whose newest event
    # is ten minutes after partition 0's burst. Fed in that order the burst would be late; through
    # the reorder buffer it fires, and partition 1's events newer than partition 0's stay held.
    producer = Producer()
    clock = Clock()
    stage, consumer = stage_with(producer, clock)
    stage.reorder.track([TopicPartition("signals", 0), TopicPartition("signals", 1)], now=0.0)
    history = [Record(i, signal_bytes(i, T0 + 600 * i, 0.05)) for i in range(6)]
    stage._process_live(history)
    assert producer.sent == [] and consumer.commits == []  # partition 1 has not spoken yet: all held

    other = [Record(i, signal_bytes(100 + i, T0 + 3600 + 60 * i, 0.05), partition=1) for i in range(12)]
    burst = [Record(6 + i, signal_bytes(6 + i, T0 + 3600 + 10 * i, 0.95)) for i in range(10)]
    clock.now = 1.0
    stage._process_live(other + burst)
    assert stage.engine.late_events == 0
    assert "entity:ACME" in [p["key"] for _, _, p in producer.sent if p["status"] == "firing"]
    # partition 0 is done to its end; partition 1 only up to its first record still held (event
    # time T0+3720 > partition 0's newest, T0+3690): a crash now must read that one again
    assert len(stage.reorder) == 10
    assert consumer.commits[-1] == {
        TopicPartition("signals", 0): OffsetAndMetadata(16, "", -1),
        TopicPartition("signals", 1): OffsetAndMetadata(2, "", -1),
    }

    # the control: the same records in the order they were handed over make the burst late
    engine = AlertEngine(stage.config)
    for record in history + other + burst:
        engine.process(parse_signal(orjson.loads(record.value)))
    assert engine.late_events >= 5

    # Quiet polls: nothing moves until both partitions have been idle for alert_partition_idle_s.
    commits = len(consumer.commits)
    clock.now = 5.9
    stage._handle({})
    assert len(stage.reorder) == 10 and len(consumer.commits) == commits
    clock.now = 6.0
    stage._handle({})
    assert len(stage.reorder) == 0 and stage.engine.late_events == 0
    assert consumer.commits[-1] == {TopicPartition("signals", 1): OffsetAndMetadata(12, "", -1)}


def test_a_partition_behind_its_end_holds_the_others_back() -> None:
    producer = Producer()
    clock = Clock()
    stage, consumer = stage_with(producer, clock)
    behind = TopicPartition("signals", 1)
    consumer.highwater = lambda tp: 50 if tp == behind else 0  # type: ignore[method-assign]
    stage.reorder.track([TopicPartition("signals", 0), behind], now=0.0)
    stage._process_live(burst_records())
    clock.now = 60.0
    stage._handle({})
    assert producer.sent == [] and len(stage.reorder) == 16  # partition 1 still has records to give
    assert consumer.commits == []  # nothing released: nothing to commit
    clock.now = 121.0  # alert_reorder_max_wait_s (120 s) bounds the wait: forced out, counted
    forced = metrics.REORDER_FORCED._value.get()
    stage._handle({})
    assert len(stage.reorder) == 0 and stage.reorder.forced == 16
    assert metrics.REORDER_FORCED._value.get() == forced + 16
    assert sorted(p["key"] for _, _, p in producer.sent) == ["entity:ACME", "topic:Markets"]
    assert consumer.commits[-1] == {TopicPartition("signals", 0): OffsetAndMetadata(100, "", -1)}


def mixed_partition(headers: bool) -> list[Record]:
    """Signals partition 0 as a classify stage writes it when it reads input partition 1 faster:
    input partition 0's quiet ACME hours and burst, interleaved with input partition 1's OTHER
    signals 2 h ahead at every offset; input partition 2 has sent nothing yet."""
    ahead = [signal_bytes(100 + i, T0 + 2 * 3600 + 300 * i, 0.05, "OTHER", "Rates") for i in range(24)]
    behind = [signal_bytes(i, T0 + 600 * i, 0.05) for i in range(6)]
    behind += [signal_bytes(6 + i, T0 + 3600 + 10 * i, 0.95) for i in range(10)]
    records: list[Record] = []
    for i in range(max(len(ahead), len(behind))):
        for source, values in ((1, ahead), (0, behind)):
            if i < len(values):
                records.append(
                    Record(len(records), values[i], source=("news.raw", source) if headers else None)
                )
    return records


def test_input_partitions_mixed_in_one_signals_partition_keep_their_own_watermarks() -> None:
    producer = Producer()
    clock = Clock()
    stage, consumer = stage_with(producer, clock)
    signals0 = TopicPartition("signals", 0)
    stage.reorder.track([signals0], now=0.0)
    records = mixed_partition(headers=True)
    for start in range(0, len(records), 8):  # polls of 8, the first at 0 s, the others at 1 s
        stage._process_live(records[start : start + 8])
        clock.now = 1.0
    assert consumer.lookups == ["news.raw"]  # looked up once: input partition 2 is expected too
    assert producer.sent == [] and consumer.commits == []  # input partition 2 has not spoken yet

    clock.now = 5.0  # input partition 2 quiet for alert_partition_idle_s, signals 0 at its end
    stage._handle({})
    assert stage.engine.late_events == 0 and stage.reorder.forced == 0
    firing = [p for _, _, p in producer.sent if p["status"] == "firing"]
    assert sorted(p["key"] for p in firing) == ["entity:ACME", "topic:Markets"]
    # released up to input partition 0's newest time; all of input partition 1 is later and stays
    # held, and it starts at offset 0: nothing may be committed yet
    assert len(stage.reorder) == 24 and consumer.commits == []

    clock.now = 6.0  # both input partitions quiet too: all is final, the partition is committed
    stage._handle({})
    assert len(stage.reorder) == 0 and stage.engine.late_events == 0
    assert consumer.commits[-1] == {signals0: OffsetAndMetadata(40, "", -1)}

    # The control: the same partition from an older worker (no headers) is one source; its newest
    # event is input partition 1's, so input partition 0's burst comes too late to fire.
    producer = Producer()
    stage, consumer = stage_with(producer, Clock())
    stage.reorder.track([signals0], now=0.0)
    records = mixed_partition(headers=False)
    for start in range(0, len(records), 8):
        stage._process_live(records[start : start + 8])
    assert consumer.lookups == []
    assert stage.engine.late_events >= 10
    assert "entity:ACME" not in [p["key"] for _, _, p in producer.sent]


def test_malformed_source_headers_fall_back_to_the_signals_partition() -> None:
    stage, consumer = stage_with(Producer())
    record = Record(0, signal_bytes(0, T0, 0.1))
    record.headers = [("finsignal.source.topic", b"news.raw"), ("finsignal.source.partition", b"x")]
    assert stage._source(stage.reorder, record, 0.0) is None
    record.headers = [("finsignal.source.topic", b"news.raw")]  # no partition
    assert stage._source(stage.reorder, record, 0.0) is None
    assert consumer.lookups == []
    good = Record(1, signal_bytes(1, T0, 0.1), source=("news.raw", 2))
    assert stage._source(stage.reorder, good, 0.0) == TopicPartition("news.raw", 2)
    assert all(stage.reorder.knows(TopicPartition("news.raw", p)) for p in range(3))
