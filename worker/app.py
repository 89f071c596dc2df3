"""The classify stage's run loop: news.raw in, news.signals and news.dlq out. Sole owner of commit order.

Each turn: assemble a micro-batch (up to ``max_batch_size`` records, waiting at most
``max_batch_delay_ms`` once the first record is in), decode it (bad records -> DLQ with the original
bytes and a reason), classify the valid ones in one model call, produce every output, flush, check that
the broker confirmed every send, and only then commit the batch's offsets. Up to ``ENCODER_QUEUE``
later batches are read and in the encoder meanwhile; batches still finish one at a time, in order. A
failed send or commit rewinds the partitions of that batch and of every batch read after it, and retries
them, so nothing is committed ahead of its outputs (at-least-once; a retried batch may duplicate
signals, never lose them).

The KB is swapped by the watcher thread between batches (``Classifier.set_kb``); the rebalance listener
only records what happened (it runs on kafka-python's IO thread and must not block on a commit).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from kb_sync.model import KBSnapshot
from kb_sync.store import redis_client
from kb_sync.watcher import KBWatcher
from worker import metrics
from worker.classifier import Classifier, Encoded
from worker.config import Settings
from worker.decode import DecodeFailure, NewsEvent, decode_event, dlq_headers
from worker.health import Health
from worker.producers import discard_producer
from worker.schemas import DLQ_SOURCE_OFFSET, DLQ_SOURCE_PARTITION, DLQ_SOURCE_TOPIC, STORY_HEADER
from worker.signals import build_signal, merge_entities, utc_now_iso
from worker.story import story_id

log = logging.getLogger(__name__)

_IDLE_POLL_MS = 200
_IN_FLIGHT_POLL_MS = 2  # poll slice while a batch is in the encoder: notice its end quickly
_NOTHING_IN_FLIGHT: Future[Any] = Future()  # a pending batch of DLQ records only: nothing to wait for
_NOTHING_IN_FLIGHT.set_result(None)
# Batches handed to the encoder beyond the one being finished, each on a classify thread of its own: one
# tokenizes and lays out its sub-batches while the other's run, so the inference streams do not idle
# between batches (the tokenizer and the padded blocks took ~22% of each batch's encoder time, with the
# streams waiting), nor while the run loop flushes and commits. Row-5w drain, 2 cores: 2,485-2,513 ->
# 2,600-2,614 msg/s (two interleaved pairs).
ENCODER_QUEUE = 2
_LAG_EVERY_S = 5.0
_MAX_RETRY_BACKOFF_S = 5.0
_BROKER_CHECK_S = 0.5  # how often the loop looks at the consumer's connection count
_BROKER_GRACE_S = 1.0  # a reconnect in progress is not an outage


class BatchNotConfirmed(RuntimeError):
    """The broker did not confirm every output of a batch; its offsets must not be committed."""


@dataclass(slots=True)
class _Polled:
    record: ConsumerRecord
    received: float  # time.time() when poll returned it


@dataclass(frozen=True, slots=True)
class _Timed:
    encoded: Encoded
    started: float  # time.time() when the encoder started on the batch


def _encode(classifier: Classifier, texts: list[str]) -> _Timed:
    # Only the encoder runs on the executor; fusion runs on the run loop in _finish. The encoder's
    # streams then have the cores while the run loop fuses and produces the batch before (fused
    # there, it ran single-threaded while the run loop waited, and a core sat idle).
    started = time.time()
    return _Timed(classifier.encode_texts(texts), started)


@dataclass(slots=True)
class _InFlight:
    """A decoded batch whose classification may still be running."""

    batch: list[_Polled]
    failures: list[tuple[_Polled, DecodeFailure]]
    valid: list[tuple[_Polled, NewsEvent]]
    classified: Future[_Timed] | None


@dataclass
class WorkerCounts:
    consumed: int = 0
    signals: int = 0
    dlq: int = 0
    batches: int = 0
    retries: int = 0


class _Assignments(ConsumerRebalanceListener):
    """Records rebalances; never commits or blocks (kafka-python calls this on its IO thread)."""

    def __init__(self) -> None:
        self.joined = threading.Event()
        self.revoked_since_poll = False

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.revoked_since_poll = True
        if revoked:
            log.info("partitions revoked: %s", _names(revoked))

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.joined.set()  # joined the group, even with no partitions (more replicas than partitions)
        log.info("partitions assigned: %s", _names(assigned) or "none")


class Worker:
    def __init__(self, settings: Settings, health: Health | None = None) -> None:
        self.settings = settings
        self.health = health or Health()
        self.counts = WorkerCounts()
        self.ready = threading.Event()
        self.classifier: Classifier | None = None
        self.watcher: KBWatcher | None = None
        self._listener = _Assignments()
        self._broker_ok = True  # False from a failed batch until the next one is confirmed
        self._broker_reachable = True  # False while the consumer has no connection to any broker
        self._disconnected_since: float | None = None
        self._last_broker_check = 0.0
        self._last_lag = 0.0

    # --- lifecycle ---------------------------------------------------------------------------
    def start_model_and_kb(self) -> Classifier:
        """Load and warm the encoder, start the KB watcher (idempotent; run() calls it)."""
        if self.classifier is not None:
            return self.classifier
        settings = self.settings
        classifier = Classifier(settings, cache_client=lambda: redis_client(settings))
        classifier.encoder.warm_up()
        self.classifier = classifier
        self.watcher = KBWatcher(
            lambda: redis_client(settings),
            settings.kb_namespace,
            settings.kb_poll_interval_s,
            on_snapshot=self._install_kb,
            on_status=self._kb_status,
            max_entries=settings.kb_max_entries,
        )
        self.watcher.start()
        self.health.add_check("model", lambda: self.classifier is not None)
        self.health.add_check("kb", self._kb_ready)
        self.health.add_check("consumer", self._listener.joined.is_set)
        self.health.add_check("broker", lambda: self._broker_ok and self._broker_reachable)
        return classifier

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; the batch in hand is finished, flushed and committed first."""
        classifier = self.start_model_and_kb()
        # Process-wide, and this process exists to run this loop: shorter GIL turns let an inference
        # stream that ended a sub-batch pick up the next one sooner.
        sys.setswitchinterval(self.settings.gil_switch_interval_ms / 1000)
        consumer = self._consumer()
        producer: KafkaProducer | None = self._producer()
        log.info(
            "classify stage: %s -> %s (DLQ %s), group %s",
            self.settings.input_topic,
            self.settings.signals_topic,
            self.settings.dlq_topic,
            self.settings.group_id,
        )
        backoff = 0.2
        # Pipeline: while the oldest batch is fused, produced, flushed and committed here, up to
        # ENCODER_QUEUE later batches are already decoded and in the encoder on the classify threads
        # (ONNX Runtime and the tokenizer release the GIL). Kafka clients are used from this thread only
        # and batches finish strictly in order, so commit order stays in one place.
        executor = ThreadPoolExecutor(max_workers=ENCODER_QUEUE, thread_name_prefix="classify")
        pending: deque[_InFlight] = deque()
        try:
            while not stop.is_set():
                self.health.beat("classify")
                self._check_broker(consumer)
                self._set_ready()
                batch: list[_Polled] = []
                if len(pending) <= ENCODER_QUEUE:
                    # With a batch in flight, take what the fetcher already holds instead of idling.
                    head = _model_result(pending[0]) if pending else None
                    batch = self._next_batch(consumer, stop, head)
                    self._report_lag(consumer)
                    if batch:
                        pending.append(self._prepare(batch, classifier, executor))
                if not pending:
                    continue
                if batch and len(pending) <= ENCODER_QUEUE and not _model_result(pending[0]).done():
                    continue  # room in the encoder's queue: read on while the oldest batch runs
                current = pending[0]
                try:
                    if producer is None:
                        producer = self._producer()  # raises KafkaError while no broker answers: retried
                    self._finish(current, consumer, producer, classifier)
                    pending.popleft()
                    backoff = 0.2
                    self._broker_ok = True
                except (BatchNotConfirmed, KafkaError) as exc:
                    self._broker_ok = False
                    self.counts.retries += 1
                    metrics.PRODUCE_FAILURES.inc()
                    log.warning(
                        "batch of %d not confirmed (%s); rewinding, retry in %.1f s",
                        len(current.batch),
                        exc,
                        backoff,
                    )
                    # The batches behind it were read past the failed one: rewind over all of them.
                    _rewind(consumer, [item for flight in pending for item in flight.batch])
                    pending.clear()
                    # A kafka-python producer that hit a fatal error (e.g. its idempotent producer id is
                    # unknown to a restarted broker: OutOfOrderSequence, then a failed epoch bump) refuses
                    # every later send; a fresh one gets a new producer id. Outputs it had not confirmed
                    # are re-sent with the retried batch.
                    discard_producer(producer)
                    producer = None
                    stop.wait(backoff)
                    backoff = min(backoff * 2, _MAX_RETRY_BACKOFF_S)
            if pending and producer is not None:
                self._drain(pending, consumer, producer, classifier)
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
            self.ready.clear()
            metrics.READY.set(0)
            self._close(consumer, producer)

    def _drain(
        self,
        pending: deque[_InFlight],
        consumer: KafkaConsumer,
        producer: KafkaProducer,
        classifier: Classifier,
    ) -> None:
        """On stop: finish the batches in hand, oldest first; from the first that fails, they stay
        uncommitted and are re-read later (a later batch is never committed past a failed one)."""
        while pending:
            flight = pending.popleft()
            try:
                self._finish(flight, consumer, producer, classifier)
            except (BatchNotConfirmed, KafkaError) as exc:
                left = len(flight.batch) + sum(len(f.batch) for f in pending)
                log.warning("last %d records not confirmed at shutdown (%s); re-read on restart", left, exc)
                return

    def _close(self, consumer: KafkaConsumer, producer: KafkaProducer | None) -> None:
        timeout = self.settings.shutdown_timeout_s
        if producer is not None:
            try:
                producer.flush(timeout=timeout)
            except KafkaError:
                log.warning("producer flush at shutdown failed; uncommitted batches are re-read on restart")
            producer.close(timeout=timeout)
        consumer.close(autocommit=False)  # every commit was explicit, after confirmation
        if self.watcher is not None:
            self.watcher.stop()
        log.info(
            "classify stage stopped: %d consumed, %d signals, %d DLQ, %d retries",
            self.counts.consumed,
            self.counts.signals,
            self.counts.dlq,
            self.counts.retries,
        )

    # --- Kafka clients -----------------------------------------------------------------------
    def _consumer(self) -> KafkaConsumer:
        s = self.settings
        consumer = KafkaConsumer(
            group_id=s.group_id,
            group_instance_id=s.group_instance_id,
            enable_auto_commit=False,
            auto_offset_reset=s.auto_offset_reset,
            max_poll_records=s.max_batch_size,
            fetch_max_wait_ms=s.fetch_max_wait_ms,
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=max(1000, s.session_timeout_ms // 3),
            max_poll_interval_ms=s.max_poll_interval_ms,
            fetch_max_bytes=max(52_428_800, s.max_message_bytes * 4),
            max_partition_fetch_bytes=max(1_048_576, s.max_message_bytes * 2),
            **s.kafka_client_kwargs(),
        )
        consumer.subscribe([s.input_topic], listener=self._listener)
        return consumer

    def _producer(self) -> KafkaProducer:
        s = self.settings
        return KafkaProducer(
            acks="all",
            enable_idempotence=True,  # broker-side retries do not duplicate outputs
            linger_ms=s.producer_linger_ms,
            compression_type=None if s.producer_compression == "none" else s.producer_compression,
            # The DLQ carries the original bytes: allow the largest accepted input plus headers.
            max_request_size=max(
                1_048_576, s.max_message_bytes * 2 + 65_536, s.producer_batch_bytes + 65_536
            ),
            batch_size=s.producer_batch_bytes,
            request_timeout_ms=15_000,
            delivery_timeout_ms=30_000,
            **s.kafka_client_kwargs(),
        )

    # --- one batch ---------------------------------------------------------------------------
    def _next_batch(
        self, consumer: KafkaConsumer, stop: threading.Event, in_flight: Future[Any] | None = None
    ) -> list[_Polled]:
        """Up to max_batch_size records; once the first is in, wait at most max_batch_delay_ms more.

        With a batch ``in_flight`` in the encoder, take what the fetcher already holds instead of idling,
        and stop gathering as soon as that batch is classified: its outputs should not wait for this
        batch's window (at moderate load that wait would add up to max_batch_delay_ms per message)."""
        s = self.settings
        batch: list[_Polled] = []
        deadline: float | None = None
        while len(batch) < s.max_batch_size and not stop.is_set():
            if deadline is None:
                timeout_ms = 0 if in_flight is not None else _IDLE_POLL_MS
            else:
                timeout_ms = max(0, int((deadline - time.monotonic()) * 1000))
                if in_flight is not None:
                    timeout_ms = min(timeout_ms, _IN_FLIGHT_POLL_MS)
            polled = consumer.poll(timeout_ms=timeout_ms, max_records=s.max_batch_size - len(batch))
            now = time.time()
            for records in polled.values():
                batch.extend(_Polled(record, now) for record in records)
            if deadline is None:
                if not batch:
                    return batch  # idle: back to the loop (heartbeat, stop check)
                deadline = time.monotonic() + s.max_batch_delay_ms / 1000
            if time.monotonic() >= deadline or (in_flight is not None and in_flight.done()):
                break
        return batch

    def _process(
        self, batch: list[_Polled], consumer: KafkaConsumer, producer: KafkaProducer, classifier: Classifier
    ) -> None:
        """One batch, start to commit, without the pipeline (tests, tools)."""
        self._finish(self._prepare(batch, classifier, None), consumer, producer, classifier)

    def _prepare(
        self, batch: list[_Polled], classifier: Classifier, executor: ThreadPoolExecutor | None
    ) -> _InFlight:
        """Decode the batch and start classifying its valid events (on ``executor`` when given)."""
        s = self.settings
        failures: list[tuple[_Polled, DecodeFailure]] = []
        valid: list[tuple[_Polled, NewsEvent]] = []
        for item in batch:
            decoded = decode_event(item.record.value, s.max_message_bytes)
            if isinstance(decoded, DecodeFailure):
                failures.append((item, decoded))
            else:
                valid.append((item, decoded))
        classified: Future[_Timed] | None = None
        if valid:
            texts = [event.text for _, event in valid]
            if executor is None:
                classified = Future()
                classified.set_result(_encode(classifier, texts))
            else:
                classified = executor.submit(_encode, classifier, texts)
        return _InFlight(batch, failures, valid, classified)

    def _finish(
        self, flight: _InFlight, consumer: KafkaConsumer, producer: KafkaProducer, classifier: Classifier
    ) -> None:
        """Produce the batch's DLQ records and signals, confirm every send, then commit its offsets."""
        s = self.settings
        sends: list[Any] = []
        for item, failure in flight.failures:
            record = item.record
            headers = dlq_headers(failure, record.topic, record.partition, record.offset, record.headers)
            sends.append(
                producer.send(s.dlq_topic, value=record.value or b"", key=record.key, headers=headers)
            )
            log.debug(
                "DLQ %s[%d]@%d: %s: %s",
                record.topic,
                record.partition,
                record.offset,
                failure.reason,
                failure.detail,
            )

        end_to_end: list[float] = []
        if flight.classified is not None:
            timed = flight.classified.result()
            classified = classifier.fuse_encoded(timed.encoded)
            fused_at = time.time()  # end to end = until the message was classified, fusion included
            processed_at = utc_now_iso()
            inference_ms = round(classified.seconds * 1000, 3)
            for row, (item, event) in enumerate(flight.valid):
                entities = merge_entities(
                    event.tickers, classifier.tagger.tag(event.text), classifier.tagger.name_of
                )
                record = item.record
                e2e_s = max(0.0, fused_at - record.timestamp / 1000) if record.timestamp > 0 else 0.0
                end_to_end.append(e2e_s)
                signal = build_signal(
                    event,
                    classified.results[row],
                    entities,
                    n_tokens=int(classified.output.n_tokens[row]),
                    truncated=bool(classified.output.truncated[row]),
                    model=classifier.model_info,
                    kb_version=classified.kb_version,
                    timings={
                        "queue_ms": round(max(0.0, timed.started - item.received) * 1000, 3),
                        "inference_ms": inference_ms,
                        "end_to_end_ms": round(e2e_s * 1000, 3),
                    },
                    processed_at=processed_at,
                )
                # Where the signal came from: the alert stage keeps one event-time watermark per input
                # partition (each is in order), since a signals partition mixes several of them.
                source = [
                    (DLQ_SOURCE_TOPIC, record.topic.encode()),
                    (DLQ_SOURCE_PARTITION, str(record.partition).encode()),
                    (DLQ_SOURCE_OFFSET, str(record.offset).encode()),
                ]
                # The story fingerprint: the alert stage counts the copies of one story once.
                story = story_id(event.text)
                if story is not None:
                    source.append((STORY_HEADER, story.encode()))
                sends.append(
                    producer.send(
                        s.signals_topic,
                        key=signal["key"].encode(),
                        value=orjson.dumps(signal),
                        headers=source,
                    )
                )
            metrics.BATCH_SIZE.observe(len(flight.valid))
            metrics.INFERENCE_SECONDS.observe(classified.seconds)

        producer.flush(timeout=s.shutdown_timeout_s * 3)
        failed = [f for f in sends if not f.is_done or f.failed()]
        if failed:
            first = failed[0].exception if failed[0].is_done else "not sent before the flush timeout"
            raise BatchNotConfirmed(f"{len(failed)} of {len(sends)} outputs not confirmed: {first}")

        self._commit(consumer, flight.batch)
        self.counts.consumed += len(flight.batch)
        self.counts.signals += len(flight.valid)
        self.counts.dlq += len(flight.failures)
        self.counts.batches += 1
        metrics.MESSAGES_CONSUMED.inc(len(flight.batch))
        metrics.SIGNALS_PRODUCED.inc(len(flight.valid))
        for _, failure in flight.failures:
            metrics.DLQ.labels(reason=failure.reason).inc()
        for seconds in end_to_end:
            metrics.END_TO_END_SECONDS.observe(seconds)

    def _commit(self, consumer: KafkaConsumer, batch: list[_Polled]) -> None:
        """Commit next-offsets of the batch's partitions that this member still owns."""
        offsets: dict[TopicPartition, int] = {}
        for item in batch:
            tp = TopicPartition(item.record.topic, item.record.partition)
            offsets[tp] = max(offsets.get(tp, -1), item.record.offset + 1)
        owned = consumer.assignment()
        to_commit = {tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items() if tp in owned}
        if not to_commit:
            return
        try:
            consumer.commit(offsets=to_commit)
        except CommitFailedError as exc:
            # Partitions moved to another member mid-batch: it re-reads from the last commit
            # (duplicates, not loss). Nothing to rewind here: they are no longer ours.
            log.warning("commit after rebalance refused (%s); the new owner re-reads those records", exc)

    # --- KB and readiness --------------------------------------------------------------------
    def _install_kb(self, snapshot: KBSnapshot) -> None:
        assert self.classifier is not None
        try:
            self.classifier.set_kb(snapshot)
        except Exception:
            metrics.KB_RELOAD_FAILURES.inc()
            raise

    def _kb_status(self, status: str) -> None:
        metrics.KB_STALE.set(1 if status == "stale" else 0)
        if status == "invalid":
            metrics.KB_RELOAD_FAILURES.inc()
            if self.watcher is not None:
                log.error(
                    "KB refused, version %s keeps serving: %s",
                    self.classifier and self.classifier.kb_version,
                    self.watcher.last_error,
                )

    def _kb_ready(self) -> bool:
        # Ready once the first look at Redis is done: a KB is serving, or none is published yet.
        # A Redis outage after that keeps readiness (the loaded KB keeps serving, flagged stale).
        watcher = self.watcher
        if watcher is None:
            return False
        return watcher.delivered_version is not None or watcher.status == "ok"

    def _check_broker(self, consumer: KafkaConsumer) -> None:
        """Not ready while the consumer has no connection to any broker (kafka-python keeps retrying)."""
        now = time.monotonic()
        if now - self._last_broker_check < _BROKER_CHECK_S:
            return
        self._last_broker_check = now
        if _connection_count(consumer) > 0:
            if not self._broker_reachable and self._disconnected_since is not None:
                log.info("Kafka broker reachable again after %.1f s", now - self._disconnected_since)
            self._disconnected_since = None
            self._broker_reachable = True
            return
        if self._disconnected_since is None:
            self._disconnected_since = now
        if self._broker_reachable and now - self._disconnected_since >= _BROKER_GRACE_S:
            self._broker_reachable = False
            log.warning("no connection to any Kafka broker; not ready until one answers (retrying, backoff)")

    def _set_ready(self) -> None:
        if self.health.ready():
            self.ready.set()
        else:
            self.ready.clear()

    def _report_lag(self, consumer: KafkaConsumer) -> None:
        now = time.monotonic()
        if now - self._last_lag < _LAG_EVERY_S:
            return
        self._last_lag = now
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)  # from fetch responses: no extra request
            if highwater is None:
                continue
            try:
                position = consumer.position(tp, timeout_ms=0)
            except KafkaError:
                continue
            if position is not None:
                metrics.CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(
                    max(0, highwater - position)
                )


def _model_result(flight: _InFlight) -> Future[Any]:
    """What the batch waits on before it can be finished (a batch of DLQ records only: nothing)."""
    return flight.classified or _NOTHING_IN_FLIGHT


def _rewind(consumer: KafkaConsumer, batch: list[_Polled]) -> None:
    """Seek each of the batch's partitions (still owned) back to its first record in the batch."""
    first: dict[TopicPartition, int] = defaultdict(lambda: 1 << 62)
    for item in batch:
        tp = TopicPartition(item.record.topic, item.record.partition)
        first[tp] = min(first[tp], item.record.offset)
    owned = consumer.assignment()
    for tp, offset in first.items():
        if tp in owned:
            consumer.seek(tp, offset)


def _connection_count(consumer: KafkaConsumer) -> float:
    """Open broker connections, from kafka-python's public metrics; 1 when the metric is unavailable."""
    try:
        for group in consumer.metrics().values():
            if "connection-count" in group:
                return float(group["connection-count"])
    except Exception:  # metrics are a diagnosis aid: never let them stop the loop
        log.debug("consumer metrics unavailable", exc_info=True)
    return 1.0


def _names(tps: set[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(tps))
