"""The alert stage: signals topic in, alerts topic out, around the pure ``AlertEngine``.

Start (and every partition assignment):
1. read back the alerts already published (recent ones): their (id, status) pairs are never sent
   again, and each key's latest alert says whether it is firing or cooling down;
2. seek every assigned signals partition back to "now - alert_rebuild_horizon_s" (offsets_for_times
   where the broker supports it; events are filtered by event time in any case) and replay silently
   up to the committed offset, so windows and baselines are rebuilt without re-alerting;
3. reconcile the engine's episodes with the published alerts (the alerts topic is the truth), then go
   live from the committed offsets.
Event-time order (``worker.alerts.reorder``): the classify stage reads its input partitions at
different paces and re-keys the results, so a signals partition interleaves event times hours apart;
fed as read, the events behind would be late. Each signal names its input record in headers
(``finsignal.source.topic/partition``); one watermark is kept per (signals partition, input
partition), which is in event-time order (a record without the headers counts for its signals
partition). Records wait in a reorder buffer until the stage watermark (min over the active streams
of the newest event time seen on each; quiet streams of caught-up partitions excluded) passes them,
and reach the engine in event-time order. Seeing a source topic for the first time, the stage
expects all of its partitions, so one not heard from yet holds the others back until it proves idle.
The silent replay of step 2 goes through its own buffer the same way.
Live: released events go through the engine; new alerts are produced keyed by the alert key, the
producer is flushed and every send confirmed, and only then are offsets committed, per partition up
to its first record still held in the buffer (at-least-once: a held record is never committed; a
replayed alert has the same id and is recognisable, and step 1 suppresses it).

Limitation: a signal counts for its topic key and its entity keys, but Kafka partitions it by one
key, so a topic key's signals are spread over partitions. Run ONE alert-stage consumer (role alert
or all with a single replica) so that every key sees all of its signals.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from worker.alerts import metrics
from worker.alerts.engine import Alert, AlertConfig, AlertEngine
from worker.alerts.payload import alert_payload, format_alert_line
from worker.alerts.reorder import ReorderBuffer
from worker.alerts.signals import SignalError, parse_signal, parse_time, story_of
from worker.config import Settings
from worker.producers import discard_producer
from worker.schemas import DLQ_SOURCE_PARTITION, DLQ_SOURCE_TOPIC

log = logging.getLogger(__name__)

_POLL_MS = 200
_MAX_PUBLISH_BACKOFF_S = 5.0
_MAX_RECORDS = 1000


def read_alerts(
    settings: Settings, since: float | None = None, idle_s: float = 1.0, timeout_s: float = 30.0
) -> list[dict[str, Any]]:
    """Alert payloads on the alerts topic (window_end >= ``since`` when given), in topic order.

    Reads until every partition reached its end offset and the broker has had ``idle_s`` to send
    more (some brokers report end offsets too low), or ``timeout_s`` passed.
    """
    consumer = KafkaConsumer(
        group_id=None, enable_auto_commit=False, consumer_timeout_ms=1000, **settings.kafka_client_kwargs()
    )
    try:
        partitions = consumer.partitions_for_topic(settings.alerts_topic)
        if not partitions:
            return []
        tps = [TopicPartition(settings.alerts_topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        _seek_to_time(consumer, tps, since)
        end = consumer.end_offsets(tps)
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        last_record = time.monotonic()
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=_POLL_MS, max_records=_MAX_RECORDS)
            for records in batch.values():
                for record in records:
                    last_record = time.monotonic()
                    payload = _loads(record.value)
                    if payload is None:
                        continue
                    if since is not None and _payload_time(payload) < since:
                        continue
                    out.append(payload)
            caught_up = all(consumer.position(tp) >= end.get(tp, 0) for tp in tps)
            if not batch and caught_up and time.monotonic() - last_record >= idle_s:
                break
        return out
    finally:
        consumer.close(autocommit=False)


def _loads(value: bytes | None) -> dict[str, Any] | None:
    try:
        payload = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    return payload if isinstance(payload, dict) and isinstance(payload.get("id"), str) else None


def _payload_time(payload: Mapping[str, Any]) -> float:
    try:
        return parse_time(payload.get("window_end"), "window_end")
    except SignalError:
        return math.inf  # keep what cannot be dated rather than forget it


def _seek_to_time(consumer: KafkaConsumer, tps: list[TopicPartition], since: float | None) -> dict[Any, int]:
    """Seek to the first record at or after ``since`` (epoch s); the beginning where unsupported."""
    if since is None:
        consumer.seek_to_beginning(*tps)
        return {tp: consumer.position(tp) for tp in tps}
    try:
        found = consumer.offsets_for_times({tp: max(0, int(since * 1000)) for tp in tps})
    except Exception as exc:  # UnsupportedVersionError on old brokers: read from the start, filter by time
        log.info("offsets_for_times unavailable (%s); reading from the beginning", exc)
        found = {}
    starts: dict[Any, int] = {}
    for tp in tps:
        hit = found.get(tp)
        if hit is None and tp in found:  # no record that new: start at the end
            consumer.seek_to_end(tp)
        elif hit is None:
            consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, hit.offset)
        starts[tp] = consumer.position(tp)
    return starts


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.assigned: set[TopicPartition] | None = None

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        # Records still in the reorder buffer were never committed: the next owner reads them again.
        pass

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        # Rebuild outside the callback (kafka-python swallows callback errors): flag it for the loop.
        self.assigned = set(assigned)


class AlertStage:
    """``AlertStage(settings).run(stop_event)``: blocks until ``stop_event`` is set."""

    def __init__(
        self, settings: Settings, wall_clock: Any = time.time, monotonic: Any = time.monotonic
    ) -> None:
        self.settings = settings
        self.config = AlertConfig.from_settings(settings)
        self.engine = AlertEngine(self.config)
        self.ready = threading.Event()  # set once the state is rebuilt and the stage is live
        self._clock = wall_clock
        self._monotonic = monotonic  # processing time, for partition idleness and the buffer's wait bound
        self.reorder: ReorderBuffer[TopicPartition, TopicPartition] = self._new_reorder(
            settings.alert_partition_idle_s
        )
        self._replay: ReorderBuffer[TopicPartition, TopicPartition] = self._new_reorder(0.0)
        self._source_partitions: dict[str, list[int]] = {}  # source topic -> its partitions
        self._committed: dict[TopicPartition, int] = {}
        self._published: set[tuple[str, str]] = set()
        self._latest: dict[str, dict[str, Any]] = {}  # key -> its newest published alert
        self._replay_from = -math.inf
        self._silent_until: dict[TopicPartition, int] = {}
        self._buffer: list[Any] = []
        self._rebuilding = False
        self._listener = _Listener()
        self._consumer: KafkaConsumer | None = None
        self._producer: KafkaProducer | None = None
        self._stop = threading.Event()

    # --- lifecycle ----------------------------------------------------------------------------
    def run(self, stop_event: threading.Event) -> None:
        settings = self.settings
        kafka = settings.kafka_client_kwargs()
        self._stop = stop_event
        self._producer = self._new_producer()
        self._consumer = KafkaConsumer(
            group_id=settings.alert_group_id,
            group_instance_id=settings.group_instance_id,
            enable_auto_commit=False,
            auto_offset_reset=settings.auto_offset_reset,
            session_timeout_ms=settings.session_timeout_ms,
            max_poll_interval_ms=settings.max_poll_interval_ms,
            **kafka,
        )
        self._consumer.subscribe([settings.signals_topic], listener=self._listener)
        log.info(
            "alert stage: %s -> %s (group %s)",
            settings.signals_topic,
            settings.alerts_topic,
            settings.alert_group_id,
        )
        try:
            while not stop_event.is_set():
                batch = self._consumer.poll(timeout_ms=_POLL_MS, max_records=_MAX_RECORDS)
                if self._listener.assigned is not None:
                    # Records polled with the assignment come from the committed position; the
                    # rebuild seeks further back and reads them again.
                    self._begin_rebuild(self._listener.assigned)
                    self._listener.assigned = None
                    continue
                self._handle(batch)
        finally:
            self._close()

    def _new_producer(self) -> KafkaProducer:
        settings = self.settings
        return KafkaProducer(
            acks="all",
            linger_ms=settings.producer_linger_ms,
            compression_type=None
            if settings.producer_compression == "none"
            else settings.producer_compression,
            **settings.kafka_client_kwargs(),
        )

    def _close(self) -> None:
        if self._producer is not None:
            try:
                self._producer.flush(timeout=self.settings.shutdown_timeout_s)
            finally:
                self._producer.close(timeout=self.settings.shutdown_timeout_s)
        if self._consumer is not None:
            self._consumer.close(autocommit=False)
        self._producer = self._consumer = None

    # --- rebuild ------------------------------------------------------------------------------
    def _begin_rebuild(self, assigned: set[TopicPartition]) -> None:
        consumer = self._consumer
        assert consumer is not None
        self.ready.clear()
        self.engine = AlertEngine(self.config)
        self._buffer = []
        tps = sorted(assigned)
        # Fresh buffers: what the old assignment held was never committed and is read again.
        self.reorder = self._new_reorder(self.settings.alert_partition_idle_s)
        self.reorder.track(tps, self._monotonic())
        self._replay = self._new_reorder(0.0)  # a partition is done once it reached its committed offset
        self._replay.track(tps, self._monotonic())
        self._committed = {}
        now = self._clock()
        horizon = self.settings.alert_rebuild_horizon_s
        self._replay_from = now - horizon
        published = read_alerts(self.settings, since=now - horizon - self.config.cooldown_s)
        self._published = {(p["id"], str(p.get("status"))) for p in published}
        self._latest = {}
        for payload in published:
            if isinstance(payload.get("key"), str):
                self._latest[payload["key"]] = payload
        if not tps:
            self._finish_rebuild()
            return
        committed = {tp: consumer.committed(tp) for tp in tps}
        ends = consumer.end_offsets(tps)
        starts = _seek_to_time(consumer, tps, now - horizon - self.config.allowed_lateness_s)
        self._silent_until = {}
        for tp in tps:
            done = committed[tp]
            if done is None:  # a new group: 'earliest' processes everything live, 'latest' only new
                done = 0 if self.settings.auto_offset_reset == "earliest" else ends.get(tp, 0)
            if done < starts[tp]:  # lagging behind the horizon: unprocessed records go live
                consumer.seek(tp, done)
            self._silent_until[tp] = done
        self._rebuilding = True
        log.info(
            "alert stage: rebuilding from %d published alerts and %d partitions (%s)",
            len(published),
            len(tps),
            ", ".join(f"p{tp.partition}:->{self._silent_until[tp]}" for tp in tps),
        )
        self._maybe_finish_rebuild()

    def _maybe_finish_rebuild(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        if all(consumer.position(tp) >= until for tp, until in self._silent_until.items()):
            self._finish_rebuild()

    def _finish_rebuild(self) -> None:
        engine = self.engine
        for event in self._replay.drain():  # every partition reached its committed offset
            engine.process(event)
        if self._replay.forced:
            log.warning(
                "alert stage: %d replayed signals left the reorder buffer early (over "
                "alert_reorder_max_records or alert_reorder_max_wait_s); some may have counted late",
                self._replay.forced,
            )
        firing = engine.firing()
        for key, payload in self._latest.items():
            try:
                if payload.get("status") == "firing":
                    if firing.get(key) != payload["id"]:
                        engine.restore_firing(
                            key,
                            payload["id"],
                            parse_time(payload["window_start"], "window_start"),
                            parse_time(payload["window_end"], "window_end"),
                            payload.get("severity", "info"),
                            float(payload.get("baseline_share", self.config.prior_share)),
                            float(payload.get("score", 0.0)),
                            int(payload.get("count", 0)),
                            float(payload.get("negative_count", 0.0)),
                        )
                elif payload.get("status") == "resolved":
                    engine.restore_resolved(key, parse_time(payload["window_end"], "window_end"))
            except (KeyError, TypeError, ValueError) as exc:
                log.warning(
                    "alert stage: cannot restore state from published alert %s: %s", payload.get("id"), exc
                )
        for key in firing:
            if key not in self._latest:
                engine.forget_episode(key)  # never published: the alerts topic is the truth
        consumer = self._consumer
        if consumer is not None and self._silent_until:
            consumer.resume(*self._silent_until)
        self._rebuilding = False
        buffered, self._buffer = self._buffer, []
        log.info("alert stage: live (%d keys, %d firing)", engine.key_count, len(engine.firing()))
        self.ready.set()
        self._process_live(buffered)

    # --- batches ------------------------------------------------------------------------------
    def _handle(self, batch: Mapping[TopicPartition, list[Any]]) -> None:
        consumer = self._consumer
        assert consumer is not None
        if not self._rebuilding:
            # Also on an empty poll: partitions turn idle with time and release what they held back.
            self._process_live([record for records in batch.values() for record in records])
            return
        now = self._monotonic()
        for tp, records in batch.items():
            until = self._silent_until.get(tp, 0)
            for record in records:
                if record.offset < until:
                    event = self._parse(record, count_invalid=False)
                    if event is not None and event.event_time < self._replay_from:
                        event = None
                    self._replay.add(tp, record.offset, event, now, self._source(self._replay, record, now))
                else:
                    self._buffer.append(record)
            if records and records[-1].offset >= until:
                consumer.pause(tp)  # caught up: wait for the other partitions
        silent_until = self._silent_until
        for event in self._replay.release(now, lambda tp: consumer.position(tp) >= silent_until.get(tp, 0)):
            self.engine.process(event)  # alerts of the past were published then
        self._maybe_finish_rebuild()

    def _new_reorder(self, idle_s: float) -> ReorderBuffer[TopicPartition, TopicPartition]:
        settings = self.settings
        return ReorderBuffer(idle_s, settings.alert_reorder_max_records, settings.alert_reorder_max_wait_s)

    def _source(
        self, buffer: ReorderBuffer[TopicPartition, TopicPartition], record: Any, now: float
    ) -> TopicPartition | None:
        """The input partition named by the record's headers (None without them: an older worker's
        signal counts for its signals partition). A source topic seen for the first time is expected
        on all of its partitions, so one that has not spoken yet holds the watermark back."""
        topic = partition = None
        for name, value in record.headers or ():
            if name == DLQ_SOURCE_TOPIC:
                topic = value
            elif name == DLQ_SOURCE_PARTITION:
                partition = value
        if topic is None or partition is None:
            return None
        try:
            source = TopicPartition(bytes(topic).decode(), int(partition))
        except (TypeError, ValueError, UnicodeDecodeError):
            return None  # malformed headers: fall back to the signals partition
        if not buffer.knows(source):
            buffer.expect([TopicPartition(source.topic, p) for p in self._partitions_of(source.topic)], now)
        return source

    def _publish_confirmed(self, alerts: list[tuple[Alert, dict[str, Any]]]) -> None:
        """Send the alerts and wait until the broker confirmed every one. A failed attempt is retried
        with backoff on a fresh producer (one in a fatal state, e.g. after a broker restart, refuses all
        later sends); the engine has already moved on, so the same payloads (same ids) are re-sent.
        Raises only when the stage is stopping: nothing is committed then, and a restart rebuilds."""
        timeout = self.settings.shutdown_timeout_s
        backoff = 0.2
        while True:
            try:
                if self._producer is None:
                    self._producer = self._new_producer()
                producer, topic = self._producer, self.settings.alerts_topic
                futures = [
                    producer.send(topic, key=alert.key.encode(), value=orjson.dumps(payload))
                    for alert, payload in alerts
                ]
                producer.flush(timeout=timeout)
                for future in futures:
                    future.get(timeout=timeout)
                return
            except KafkaError as exc:
                metrics.PUBLISH_FAILURES.inc()
                if self._stop.is_set():
                    raise
                log.warning(
                    "alert stage: %d alerts not confirmed (%s); retry on a fresh producer in %.1f s",
                    len(alerts),
                    exc,
                    backoff,
                )
                discard_producer(self._producer)
                self._producer = None
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _MAX_PUBLISH_BACKOFF_S)

    def _partitions_of(self, topic: str) -> list[int]:
        """A source topic's partitions from the cluster metadata ([] when unknown: asked again for the
        next new source, at most once per input partition). Cached once known."""
        if topic not in self._source_partitions:
            partitions = None
            consumer = self._consumer
            try:
                partitions = consumer.partitions_for_topic(topic) if consumer is not None else None
            except KafkaError as exc:
                log.warning("alert stage: no partitions for source topic %s (%s)", topic, exc)
            if not partitions:
                return []
            self._source_partitions[topic] = sorted(partitions)
        return self._source_partitions[topic]

    def _caught_up(self, tp: TopicPartition) -> bool:
        """The partition's position is at its end (as far as the fetch responses tell)."""
        consumer = self._consumer
        assert consumer is not None
        try:
            highwater = consumer.highwater(tp)
            # No fetch answer yet: only the idle timer decides (an empty partition must not stall us).
            return highwater is None or consumer.position(tp) >= highwater
        except KafkaError:  # no longer assigned: the rebalance resets the buffer anyway
            return True

    def _parse(self, record: Any, count_invalid: bool = True) -> Any:
        try:
            signal = orjson.loads(record.value)
            return parse_signal(signal, story_of(record.headers))
        except (orjson.JSONDecodeError, SignalError) as exc:
            if count_invalid:
                metrics.INVALID_SIGNALS.inc()
                log.warning(
                    "alert stage: skipping signal %s[%d]@%d: %s",
                    record.topic,
                    record.partition,
                    record.offset,
                    exc,
                )
            return None

    def _process_live(self, records: list[Any]) -> None:
        consumer = self._consumer
        assert consumer is not None
        engine, reorder = self.engine, self.reorder
        late_before, forced_before, repeats_before = engine.late_events, reorder.forced, engine.duplicates
        outgoing: list[Alert] = []
        now = self._monotonic()
        for record in records:
            reorder.add(
                TopicPartition(record.topic, record.partition),
                record.offset,
                self._parse(record),
                now,
                self._source(reorder, record, now),
            )
        for event in reorder.release(now, self._caught_up):
            outgoing.extend(engine.process(event))
        metrics.LATE_EVENTS.inc(engine.late_events - late_before)
        metrics.STORY_REPEATS.inc(engine.duplicates - repeats_before)
        metrics.REORDER_FORCED.inc(reorder.forced - forced_before)
        metrics.REORDER_HELD.set(len(reorder))
        sent: list[tuple[Alert, dict[str, Any]]] = []
        for alert in outgoing:
            if (alert.id, alert.status) in self._published:
                metrics.DUPLICATES_SUPPRESSED.inc()
                log.info("alert stage: %s %s already published; not sent again", alert.status, alert.id)
                continue
            sent.append((alert, alert_payload(alert)))
        if sent:
            self._publish_confirmed(sent)
        for alert, payload in sent:
            self._published.add((alert.id, alert.status))
            if alert.status == "firing":
                metrics.ALERTS.labels(alert.severity).inc()
            else:
                metrics.ALERTS_RESOLVED.inc()
            log.info("alert: %s", format_alert_line(payload))
        # Only now (alerts confirmed): up to each partition's first record still held in the buffer.
        offsets = {tp: o for tp, o in reorder.commit_offsets().items() if self._committed.get(tp) != o}
        if offsets:
            consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()})
            self._committed.update(offsets)
        metrics.ALERT_KEYS.set(engine.key_count)
        metrics.FIRING.set(len(engine.firing()))
