"""The batch window of the classify loop (Worker._next_batch) against a consumer whose records trickle in.

Pure batching logic, so a scripted consumer stands in for Kafka here; the same loop runs against the
real broker in tests/integration/test_worker_e2e.py and the reliability suite.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

from kafka import TopicPartition

from worker.app import Worker
from worker.config import load_settings

TP = TopicPartition("in", 0)


class TricklingConsumer:
    """One record per poll (an arrival), none after ``available``; records every poll's timeout."""

    def __init__(self, available: int, on_poll: Any = None) -> None:
        self.available = available
        self.timeouts: list[int] = []
        self.on_poll = on_poll

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
        self.timeouts.append(timeout_ms)
        if self.on_poll is not None:
            self.on_poll(len(self.timeouts))
        if len(self.timeouts) > self.available:
            return {}
        return {TP: [object()]}


def _worker(delay_ms: int = 40, size: int = 64) -> Worker:
    return Worker(load_settings(max_batch_size=size, max_batch_delay_ms=delay_ms))


def test_without_a_batch_in_flight_the_window_stays_open_for_more_records() -> None:
    consumer = TricklingConsumer(available=1_000)
    batch = _worker(delay_ms=40)._next_batch(consumer, threading.Event())  # type: ignore[arg-type]
    assert consumer.timeouts[0] == 200  # idle poll first
    assert len(batch) == len(consumer.timeouts) > 3  # kept polling until the window closed or filled


def test_the_window_closes_as_soon_as_the_batch_in_flight_is_classified() -> None:
    in_flight: Future[Any] = Future()
    consumer = TricklingConsumer(
        available=1_000, on_poll=lambda n: in_flight.set_result(None) if n == 3 else None
    )
    batch = _worker(delay_ms=10_000)._next_batch(consumer, threading.Event(), in_flight)  # type: ignore[arg-type]
    assert len(batch) == 3, "gathering went on after the batch in flight was done"
    assert consumer.timeouts[0] == 0, "with a batch in flight the first poll must not wait"
    assert max(consumer.timeouts[1:]) <= 2, "polls while in flight are short slices"


def test_a_finished_batch_in_flight_takes_only_what_the_fetcher_holds() -> None:
    done: Future[Any] = Future()
    done.set_result(None)
    consumer = TricklingConsumer(available=1_000)
    batch = _worker(delay_ms=10_000)._next_batch(consumer, threading.Event(), done)  # type: ignore[arg-type]
    assert len(batch) == 1 and consumer.timeouts == [0]


def test_nothing_fetched_with_a_batch_in_flight_returns_at_once() -> None:
    consumer = TricklingConsumer(available=0)
    batch = _worker()._next_batch(consumer, threading.Event(), Future())  # type: ignore[arg-type]
    assert batch == [] and consumer.timeouts == [0]


def test_a_full_batch_ends_the_window_even_while_in_flight() -> None:
    consumer = TricklingConsumer(available=1_000)
    batch = _worker(delay_ms=10_000, size=5)._next_batch(consumer, threading.Event(), Future())  # type: ignore[arg-type]
    assert len(batch) == 5
