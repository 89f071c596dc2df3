"""Scenario 5 (unit part): producer errors are never swallowed.

The run loop with a fake consumer and a fake producer whose futures fail: the batch is rewound and
retried, and its offsets are committed only once every output of it is confirmed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError, KafkaTimeoutError, NotLeaderForPartitionError
from kafka.future import Future

from tests.reliability.relharness import event
from worker.app import ENCODER_QUEUE, BatchNotConfirmed, Worker, _Polled
from worker.classifier import Classifier
from worker.config import load_settings

TOPIC = "in"
TP = TopicPartition(TOPIC, 0)
BAD = [b'{"id": "a", "text": ', b"\xff\xfe not utf-8", b'{"id": "c"}']  # all DLQ-bound: no model needed


def _record(offset: int, value: bytes) -> ConsumerRecord:
    return ConsumerRecord(
        topic=TOPIC,
        partition=0,
        leader_epoch=-1,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=None,
        value=value,
        headers=[],
        checksum=None,
        serialized_key_size=-1,
        serialized_value_size=len(value),
        serialized_header_size=-1,
    )


class FakeConsumer:
    """Serves records from ``position``; ``seek`` moves it back (like kafka-python's fetch position)."""

    def __init__(self, values: list[bytes], first_offset: int = 10) -> None:
        self.records = [_record(first_offset + i, v) for i, v in enumerate(values)]
        self.position_ = first_offset
        self.commits: list[dict[TopicPartition, int]] = []
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.events: list[str] = []  # order of polls, seeks and commits

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
        out = [r for r in self.records if r.offset >= self.position_][: max_records or None]
        if out:
            self.position_ = out[-1].offset + 1
            self.events.append(f"poll {out[0].offset}-{out[-1].offset}")
        return {TP: out} if out else {}

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))
        self.events.append(f"seek {offset}")
        self.position_ = offset

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.commits.append({tp: meta.offset for tp, meta in offsets.items()})
        self.events.append(f"commit {offsets[TP].offset}")

    def highwater(self, tp: TopicPartition) -> None:
        return None

    def metrics(self) -> dict[str, dict[str, float]]:
        return {"consumer-metrics": {"connection-count": 1.0}}

    def close(self, autocommit: bool = True) -> None:
        assert autocommit is False, "every commit must be explicit"


class FakeProducer:
    """``outcome(n)`` decides the n-th send: an exception to fail with, "pending" (never sent), or None."""

    def __init__(self, outcome: Callable[[int], BaseException | str | None]) -> None:
        self.outcome = outcome
        self.sends = 0
        self.closed = False

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None) -> Future:
        n, self.sends = self.sends, self.sends + 1
        result = self.outcome(n)
        future = Future()
        if isinstance(result, BaseException):
            if isinstance(result, KafkaTimeoutError) and getattr(result, "raise_now", False):
                raise result  # send() itself can raise (e.g. metadata not available within max_block_ms)
            future.failure(result)
        elif result is None:
            future.success(object())
        return future  # "pending": never completed, as when the flush times out

    def flush(self, timeout: float | None = None) -> None:
        return None

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


def _run(
    consumer: FakeConsumer,
    producer: FakeProducer | Callable[[], FakeProducer],
    until_commits: int = 1,
    worker: Worker | None = None,
) -> Worker:
    if worker is None:
        worker = Worker(load_settings(max_batch_size=len(BAD), max_batch_delay_ms=0, shutdown_timeout_s=0.05))
        worker.start_model_and_kb = lambda: object()  # type: ignore[method-assign]  # DLQ-only: no model
    stop = threading.Event()
    worker._consumer = lambda: consumer  # type: ignore[method-assign]
    worker._producer = producer if callable(producer) else lambda: producer  # type: ignore[method-assign]
    real_commit = consumer.commit

    def commit_then_stop(offsets: dict[TopicPartition, Any]) -> None:
        real_commit(offsets)
        if len(consumer.commits) >= until_commits:
            stop.set()

    consumer.commit = commit_then_stop  # type: ignore[method-assign]
    runner = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    runner.start()
    runner.join(20)
    stop.set()
    runner.join(5)
    assert not runner.is_alive()
    return worker


@pytest.mark.parametrize(
    "failure",
    [
        NotLeaderForPartitionError("leader moved"),  # a send that failed after the broker answered
        "pending",  # a send never confirmed before the flush timeout
    ],
    ids=["failed-future", "unconfirmed-future"],
)
def test_failed_send_rewinds_and_retries_and_commits_only_after_all_confirmed(failure: object) -> None:
    # The second output of the first attempt fails; the retry succeeds.
    consumer = FakeConsumer(BAD)
    producer = FakeProducer(lambda n: failure if n == 1 else None)  # type: ignore[arg-type,return-value]
    worker = _run(consumer, producer)
    assert consumer.events == ["poll 10-12", "seek 10", "poll 10-12", "commit 13"]
    assert consumer.commits == [{TP: 13}]
    assert worker.counts.retries == 1 and worker.counts.dlq == len(BAD)
    assert producer.sends == 2 * len(BAD)


def test_send_that_raises_is_not_swallowed() -> None:
    def outcome(n: int) -> BaseException | None:
        if n == 0:
            exc = KafkaTimeoutError("Failed to update metadata after 60.0 secs.")
            exc.raise_now = True  # type: ignore[attr-defined]
            return exc
        return None

    consumer = FakeConsumer(BAD)
    worker = _run(consumer, FakeProducer(outcome))
    assert consumer.events == ["poll 10-12", "seek 10", "poll 10-12", "commit 13"]
    assert worker.counts.retries == 1


def test_producer_in_a_fatal_state_is_replaced_so_the_batch_can_go_through() -> None:
    """kafka-python's producer refuses every send after a fatal error (seen after a broker restart:
    OutOfOrderSequence, then a failed producer-id epoch bump); the worker must build a fresh one."""
    built: list[FakeProducer] = []
    fatal = KafkaError("Unexpected error in InitProducerIdResponse: [Error -1] UnknownError")

    def factory() -> FakeProducer:
        first = not built
        built.append(FakeProducer(lambda n: fatal if first else None))
        return built[-1]

    consumer = FakeConsumer(BAD)
    worker = _run(consumer, factory)
    assert len(built) == 2, "the failed producer must be replaced"
    assert consumer.events == ["poll 10-12", "seek 10", "poll 10-12", "commit 13"]
    assert worker.counts.retries == 1


def test_process_raises_and_does_not_commit_when_an_output_fails() -> None:
    consumer = FakeConsumer(BAD)
    producer = FakeProducer(lambda n: NotLeaderForPartitionError("x") if n == 2 else None)
    worker = Worker(load_settings(shutdown_timeout_s=0.05))
    batch = [_Polled(r, 0.0) for r in consumer.records]
    with pytest.raises(BatchNotConfirmed, match="1 of 3 outputs not confirmed"):
        worker._process(batch, consumer, producer, classifier=None)  # type: ignore[arg-type]
    assert consumer.commits == []
    assert worker.counts.consumed == 0


def test_a_failed_send_in_a_later_batch_rewinds_it_and_the_batch_read_past_it() -> None:
    # The second output of the second batch fails: batch 1 is committed, batches 2 and 3 are re-read.
    consumer = FakeConsumer(BAD * 3)
    producer = FakeProducer(lambda n: NotLeaderForPartitionError("leader moved") if n == 4 else None)
    worker = _run(consumer, producer, until_commits=3)
    assert consumer.commits == [{TP: 13}, {TP: 16}, {TP: 19}]
    assert consumer.seeks == [(TP, 13)], "the failed batch and the one read past it are re-read"
    assert consumer.events.index("seek 13") < consumer.events.index("commit 16")
    assert worker.counts.retries == 1 and worker.counts.dlq == 9


# --- batches of valid events: the real model, its encoder held so that batches pile up behind it -----


def _valid(n: int) -> list[bytes]:
    return [orjson.dumps(event(f"e{i}")) for i in range(n)]


class HeldEncoder:
    """The shipped model's Classifier whose first encoder call waits until ``release`` is set, so the run
    loop's read-ahead behind a busy encoder can be seen (which batches were polled before any commit)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.classifier = Classifier(load_settings())
        real = self.classifier.encode_texts
        self.calls = 0

        def held(texts: list[str]) -> Any:
            self.calls += 1
            if self.calls == 1:
                assert self.release.wait(20), "the run loop never read ahead of the held batch"
            return real(texts)

        self.classifier.encode_texts = held  # type: ignore[method-assign]


def _run_valid(consumer: FakeConsumer, producer: FakeProducer, until_commits: int) -> Worker:
    held = HeldEncoder()
    real_poll = consumer.poll

    def poll_then_release(timeout_ms: int = 0, max_records: int | None = None) -> Any:
        out = real_poll(timeout_ms, max_records)
        if sum(e.startswith("poll") for e in consumer.events) >= 1 + ENCODER_QUEUE:
            held.release.set()  # the loop has read as far ahead as it may: let the encoder go
        return out

    consumer.poll = poll_then_release  # type: ignore[method-assign]
    worker = Worker(load_settings(max_batch_size=4, max_batch_delay_ms=0, shutdown_timeout_s=0.05))
    worker.start_model_and_kb = lambda: held.classifier  # type: ignore[method-assign]
    return _run(consumer, producer, until_commits=until_commits, worker=worker)


def test_batches_behind_a_busy_encoder_are_read_ahead_and_committed_in_order() -> None:
    consumer = FakeConsumer(_valid(16))
    producer = FakeProducer(lambda n: None)
    worker = _run_valid(consumer, producer, until_commits=4)
    first_commit = next(i for i, e in enumerate(consumer.events) if e.startswith("commit"))
    assert consumer.events[:first_commit] == ["poll 10-13", "poll 14-17", "poll 18-21"], (
        "with the first batch in the encoder, the loop hands it the next two before finishing the first"
    )
    assert consumer.commits == [{TP: 14}, {TP: 18}, {TP: 22}, {TP: 26}]
    assert worker.counts.signals == 16 and producer.sends == 16


def test_a_failed_send_rewinds_every_batch_read_ahead_of_it() -> None:
    # The first batch's third output fails while two later batches are already in the encoder: all three
    # are re-read from the first one's offset, and nothing is committed before the retry confirms it.
    consumer = FakeConsumer(_valid(12))
    producer = FakeProducer(lambda n: NotLeaderForPartitionError("leader moved") if n == 2 else None)
    worker = _run_valid(consumer, producer, until_commits=3)
    assert consumer.seeks == [(TP, 10)], "every batch read past the failed one is rewound with it"
    assert consumer.events.index("seek 10") < consumer.events.index("commit 14")
    assert consumer.commits == [{TP: 14}, {TP: 18}, {TP: 22}]
    assert worker.counts.retries == 1 and worker.counts.signals == 12
