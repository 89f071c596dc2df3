"""The alert stage on three partitions of a real broker (Tansu), one partition hours ahead in event time.

A burst spread over the three partitions, replayed at full speed while partition 2 runs hours ahead of
the others: the reorder buffer releases events in event-time order, so the burst fires exactly once
with no late events, and every offset is committed once everything is released. A control replays the
stage's own polled batches through a plain engine the way the stage did before watermarks (each batch
merged by event time): it must show the disorder this test is about.

The second test is what a classify stage really writes: each input partition is in event-time order,
but its signals are re-keyed over all three signals partitions, so every signals partition mixes an
input partition hours ahead with the others. The records carry the source headers, and the stage keeps
one watermark per (signals partition, input partition): again no late events and one alert. Its
control runs the stage's polls through a buffer with one watermark per signals partition (what the
stage does for records without headers).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient

from tests.integration.signals import make_signal as signal
from tests.integration.threads import run_in_thread
from worker.alerts.engine import AlertEngine, SignalEvent, format_time
from worker.alerts.reorder import ReorderBuffer
from worker.alerts.stage import AlertStage, read_alerts
from worker.config import Settings
from worker.embedded import create_topics
from worker.schemas import DLQ_SOURCE_OFFSET, DLQ_SOURCE_PARTITION, DLQ_SOURCE_TOPIC

KEY = "entity:ACME"
PARTITIONS = 3


def partitioned_stream(burst_start: float, now: float) -> list[list[dict[str, Any]]]:
    """Partitions 0 and 1: 3 h of history before the burst and 15 min after it; partition 2 starts
    20 min before the burst and runs to now (hours ahead of the others at every offset). The burst's
    30 messages are dealt round-robin over all three. About 2,700 signals: several polls' worth."""
    parts: list[list[tuple[float, dict[str, Any]]]] = [[] for _ in range(PARTITIONS)]
    t, i = burst_start - 3 * 3600, 0
    while t < burst_start - 60:  # ACME at 12/h, one in five of those negative; markets every 15 s
        if i % 20 == 0:
            message = signal(f"h{i}", t, 0.9 if (i // 20) % 5 == 0 else 0.05)
        else:
            message = signal(f"m{i}", t, 0.1, acme=False)
        parts[(i // 20) % 2 if i % 20 == 0 else i % 2].append((t, message))
        t, i = t + 15, i + 1
    for i in range(30):  # 6 per minute for 5 minutes; topics rotate so no topic surges
        t = burst_start + 10 * i
        parts[i % PARTITIONS].append((t, signal(f"b{i}", t, 0.92, topic=f"Story {i % 10}")))
    t, i = burst_start + 300, 0
    while t < burst_start + 900:
        parts[i % 2].append((t, signal(f"t{i}", t, 0.1, acme=False)))
        t, i = t + 20, i + 1
    t, i = burst_start - 1200, 0
    while t < now - 60:
        parts[2].append((t, signal(f"a{i}", t, 0.1, acme=False)))
        t, i = t + 5, i + 1
    return [[message for _, message in sorted(part, key=lambda item: item[0])] for part in parts]


class RecordingStage(AlertStage):
    """The stage, keeping each live poll's events in the order they were handed over."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.polls: list[list[SignalEvent]] = []
        self._poll: list[SignalEvent] | None = None
        self.live: list[list[tuple[int, int, SignalEvent]]] = []  # per poll: (partition, offset, event)

    def _process_live(self, records: list[Any]) -> None:
        self._poll = []
        try:
            super()._process_live(records)
        finally:
            if self._poll:
                self.polls.append(self._poll)
                self.live.append(
                    [(r.partition, r.offset, e) for r, e in zip(records, self._poll, strict=False)]
                    if len(records) == len(self._poll)
                    else []
                )
            self._poll = None

    def _parse(self, record: Any, count_invalid: bool = True) -> Any:
        event = super()._parse(record, count_invalid)
        if event is not None and self._poll is not None:
            self._poll.append(event)
        return event


def wait_for(what: str, check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def produce_ahead(settings: Settings, parts: list[list[dict[str, Any]]]) -> None:
    """Full speed, partitions written side by side; partition 2 gets three records per turn, so it
    runs ahead of the others in event time (as a classify stage does when its inputs are skewed)."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    queues = [list(part) for part in parts]
    first = True
    while any(queues):
        for partition, queue in enumerate(queues):
            for _ in range(3 if partition == 2 else 1):
                if queue:
                    message = queue.pop(0)
                    producer.send(
                        settings.signals_topic,
                        key=KEY.encode(),
                        value=orjson.dumps(message),
                        partition=partition,
                    )
        if first:  # every partition has its first record in before partition 2 runs ahead
            producer.flush(10)
            first = False
    producer.flush(10)
    producer.close()


def even_polls(
    live: list[list[tuple[int, int, SignalEvent]]], size: int = 30
) -> list[list[tuple[int, int, SignalEvent]]]:
    """The recorded records as a consumer at an even pace over the partitions would poll them: each
    partition in offset order, dealt round-robin, ``size`` per poll. The stage's own polls depend on how
    much each fetch returned (one fetch holding a whole partition hides what the controls show)."""
    rows = [item for poll in live for item in poll]
    by_partition = [sorted((o, e) for p, o, e in rows if p == part) for part in range(PARTITIONS)]
    even = [
        (part, *by_partition[part][i])
        for i in range(max((len(r) for r in by_partition), default=0))
        for part in range(PARTITIONS)
        if i < len(by_partition[part])
    ]
    return [even[start : start + size] for start in range(0, len(even), size)]


def produce_mixed(settings: Settings, sources: list[list[dict[str, Any]]]) -> list[int]:
    """As a classify stage whose input partition 2 is read three times as fast: each source (input
    partition) in event-time order, its signals dealt round-robin over the signals partitions, with
    the source headers. Returns the record count per signals partition."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    queues = [list(source) for source in sources]
    sent = [0] * PARTITIONS
    offsets = [0] * len(queues)
    first = True
    while any(queues):
        for source, queue in enumerate(queues):
            for _ in range(3 if source == 2 else 1):
                if queue:
                    message = queue.pop(0)
                    partition = (offsets[source] + source) % PARTITIONS
                    producer.send(
                        settings.signals_topic,
                        key=KEY.encode(),
                        value=orjson.dumps(message),
                        partition=partition,
                        headers=[
                            (DLQ_SOURCE_TOPIC, settings.input_topic.encode()),
                            (DLQ_SOURCE_PARTITION, str(source).encode()),
                            (DLQ_SOURCE_OFFSET, str(offsets[source]).encode()),
                        ],
                    )
                    offsets[source] += 1
                    sent[partition] += 1
        if first:
            producer.flush(10)
            first = False
    producer.flush(10)
    producer.close()
    return sent


def committed_offsets(settings: Settings) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        offsets = admin.list_group_offsets({settings.alert_group_id: None}).get(settings.alert_group_id, {})
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == settings.signals_topic}


def test_a_burst_over_three_partitions_with_one_hours_ahead_fires_once_without_late_events(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory()
    create_topics(settings.kafka_bootstrap, [settings.signals_topic], PARTITIONS)
    now = time.time()
    burst_start = now - 2 * 3600 - 15 * 60
    parts = partitioned_stream(burst_start, now)
    total = sum(len(part) for part in parts)

    with run_in_thread(RecordingStage(settings), name="alert-stage") as stage:
        wait_for("the stage to go live", stage.ready.is_set, timeout_s=60)
        produce_ahead(settings, parts)
        wait_for(
            "every signal released", lambda: stage.engine.events == total and len(stage.reorder) == 0, 90
        )
        wait_for("firing and resolved", lambda: len(read_alerts(settings, idle_s=0.3, timeout_s=10)) >= 2, 60)
        ends = [len(part) for part in parts]
        wait_for("every offset committed", lambda: committed_offsets(settings) == dict(enumerate(ends)), 30)

    alerts = read_alerts(settings, idle_s=0.3, timeout_s=10)
    assert [(a["status"], a["key"]) for a in alerts] == [("firing", KEY), ("resolved", KEY)]
    assert alerts[0]["id"] == alerts[1]["id"]
    assert alerts[0]["window_start"] <= format_time(burst_start + 60)
    assert stage.engine.late_events == 0
    assert stage.reorder.forced == 0

    # The control: the same records in polls at an even pace over the partitions (see even_polls), each
    # poll merged by event time (the stage before watermarks). Partition 2 runs ahead across polls, so
    # hundreds of the others' events come too late.
    assert sum(len(poll) for poll in stage.polls) == total
    control = AlertEngine(stage.config)
    for poll in even_polls(stage.live):
        for _, _, event in sorted(poll, key=lambda item: item[2].event_time):
            control.process(event)
    print(f"control: {control.late_events} late events")
    assert control.late_events > 100, f"partition 2 did not run ahead ({control.late_events} late)"


def test_input_partitions_mixed_within_signals_partitions_keep_their_own_watermarks(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory()
    # The input topic exists with three partitions: the stage expects all three once it sees one.
    create_topics(settings.kafka_bootstrap, [settings.signals_topic, settings.input_topic], PARTITIONS)
    now = time.time()
    burst_start = now - 2 * 3600 - 15 * 60
    sources = partitioned_stream(burst_start, now)  # here: one list per INPUT partition
    total = sum(len(source) for source in sources)

    with run_in_thread(RecordingStage(settings), name="alert-stage") as stage:
        wait_for("the stage to go live", stage.ready.is_set, timeout_s=60)
        ends = produce_mixed(settings, sources)
        wait_for(
            "every signal released", lambda: stage.engine.events == total and len(stage.reorder) == 0, 90
        )
        wait_for("firing and resolved", lambda: len(read_alerts(settings, idle_s=0.3, timeout_s=10)) >= 2, 60)
        wait_for("every offset committed", lambda: committed_offsets(settings) == dict(enumerate(ends)), 30)

    alerts = read_alerts(settings, idle_s=0.3, timeout_s=10)
    assert [(a["status"], a["key"]) for a in alerts] == [("firing", KEY), ("resolved", KEY)]
    assert alerts[0]["window_start"] <= format_time(burst_start + 60)
    assert stage.engine.late_events == 0
    assert stage.reorder.forced == 0
    # one stream per (signals partition, input partition), none left over as a placeholder
    assert stage.reorder.stream_count == PARTITIONS * PARTITIONS

    # The control: the same records through one watermark per signals partition (no headers). Every
    # signals partition carries input partition 2, hours ahead, so the others' events come late.
    polled = [item for poll in stage.live for item in poll]
    assert len(polled) == total
    control: ReorderBuffer[int, int] = ReorderBuffer(idle_s=5.0, max_records=100_000, max_wait_s=600.0)
    control.track(range(PARTITIONS), now=0.0)
    engine = AlertEngine(stage.config)
    for poll in even_polls(stage.live):
        for partition, offset, event in poll:
            control.add(partition, offset, event, now=0.0)
        for event in control.release(now=0.0, caught_up=lambda _: False):
            engine.process(event)
    for event in control.drain():
        engine.process(event)
    print(f"control: {engine.late_events} late events")
    assert engine.late_events > 100, f"no source ran ahead within partitions ({engine.late_events} late)"
