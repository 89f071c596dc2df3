"""Scenario 5, broker faults, on a broker of this test's own (the session broker stays up for others).

Tansu here is memory-only: a restart loses every topic, record and committed offset. So this scenario
shows what a memory-only broker can honestly show: the broker unreachable for a while (stopped, then
started again on the same port) -> the worker stays alive, reports not-ready, retries with backoff, and once
the topics exist again it is ready and classifies new events without anyone touching it. What it cannot
show: records or committed offsets surviving the restart (a persistent Kafka keeps them, and the crash
scenario shows that a worker resumes from its committed offsets without loss).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from relharness import (
    ReadyProbe,
    WorkerProcess,
    cleanup,
    events,
    flow,
    ids_of,
    prepare_pipeline,
    wait_until,
    worker_settings,
)

from worker.embedded import EmbeddedBroker, create_topics, start_tansu

PARTITIONS = 3
READY_AGAIN_LIMIT_S = 20.0


@pytest.fixture
def own_broker() -> Iterator[EmbeddedBroker]:
    with start_tansu() as broker:
        yield broker


@pytest.mark.slow
def test_broker_unreachable_then_back_worker_not_ready_meanwhile_and_resumes_by_itself(
    own_broker: EmbeddedBroker,
    redis_url: str,
    unique_name: Callable[[str], str],
    spawn: Callable[..., WorkerProcess],
    long_mode: bool,
) -> None:
    outage_s = 30.0 if long_mode else 12.0
    s = worker_settings(own_broker.bootstrap, redis_url, unique_name)
    topics = [str(s["input_topic"]), str(s["signals_topic"]), str(s["dlq_topic"])]
    prepare_pipeline(s, PARTITIONS)
    worker = spawn("broker", s)
    worker.wait_ready()
    probe = ReadyProbe(worker)
    with cleanup(probe.close):
        before = events("pre", 100)
        with flow(s, PARTITIONS) as (feeder, collector, _):
            feeder.send_now(before)
            assert not collector.wait_for(ids_of(before), 60), "not classified before the fault"

        down_at = time.monotonic()
        own_broker.stop()
        time.sleep(outage_s)
        assert worker.running, f"the worker exited while the broker was down:\n{worker.tail()}"
        own_broker.start()
        up_at = time.monotonic()
        # Memory-only broker: the topics are gone. Re-creating them is the platform's job, not the worker's.
        create_topics(own_broker.bootstrap, topics, PARTITIONS)

        after = events("post", 100)
        with flow(s, PARTITIONS) as (feeder, collector, _):
            feeder.send_now(after)
            missing = collector.wait_for(ids_of(after), 120)
            resumed_at = time.monotonic()
        # /readyz turns back on its own check period, which may end after the last signal arrived:
        # give it until the limit asserted below (and a little) before reading the first 200.
        wait_until(
            lambda: probe.first(200, up_at) is not None, up_at + READY_AGAIN_LIMIT_S + 2 - time.monotonic()
        )
        ready_again = probe.first(200, up_at)
    during = probe.between(down_at + 1, up_at)
    not_ready_after = next((at - down_at for at, c in probe.samples if at >= down_at and c == 503), None)
    log = worker.log()
    print(
        f"FIGURES broker: outage {outage_s:.0f} s; not-ready after {not_ready_after} s; "
        "/readyz during outage "
        f"{sorted(set(during), key=str)} ({during.count(503)}/{len(during)} samples 503); ready again "
        f"{(ready_again - up_at) if ready_again else None} s after the broker was back; 100 new events all "
        f"classified {resumed_at - up_at:.1f} s after; lost {len(missing)}; "
        f"worker restarts {worker.starts - 1}"
    )
    assert not missing, f"{len(missing)} events after the restart never classified"
    assert worker.running and worker.starts == 1, "the worker must resume without being restarted"
    assert 503 in during, f"/readyz never said not-ready during a {outage_s:.0f} s outage: {during}"
    settled = probe.between(down_at + 5, up_at)  # after the 1 s grace and a check period or two
    assert settled and all(code == 503 for code in settled), f"/readyz flapped during the outage: {settled}"
    assert ready_again is not None, "never ready again"
    # Reconnects back off to at most 5 s (worker/app.py), then the group is re-joined.
    assert ready_again - up_at <= READY_AGAIN_LIMIT_S, f"ready again only {ready_again - up_at:.0f} s later"
    assert "no connection to any Kafka broker; not ready" in log
    assert "Kafka broker reachable again" in log
