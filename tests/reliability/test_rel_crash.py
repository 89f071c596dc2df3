"""Scenario 1, crash safety: kill -9 a worker at random moments while events flow, restart it each time.

Holds: every input id ends as a signal or a DLQ record (0 lost); duplicates are bounded by one in-flight
batch per crash; and at every crash (the worker dead, nothing in flight) each input below the group's
committed offset already has its output, i.e. offsets were never committed ahead of confirmed outputs.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest
from relharness import WorkerProcess, events, flow, ids_of, prepare_pipeline, wait_until

PARTITIONS = 3
BATCH = 64


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_nothing_and_never_commits_ahead(
    base_settings: Callable[..., dict[str, object]],
    spawn: Callable[..., WorkerProcess],
    long_mode: bool,
) -> None:
    n, cycles, rate = (20_000, 10, 100.0) if long_mode else (2_000, 3, 80.0)
    rng = random.Random(6)
    s = base_settings(max_batch_size=BATCH)
    prepare_pipeline(s, PARTITIONS)
    inputs = events("crash", n, bad_every=20)  # 5% DLQ-bound
    ids = ids_of(inputs)

    with flow(s, PARTITIONS) as (feeder, collector, committed):
        worker = spawn("crash", s)
        worker.wait_ready()
        started = time.monotonic()
        feeder.stream(inputs, rate)
        checked_at_crash: list[int] = []
        for cycle in range(cycles):
            time.sleep(rng.uniform(1.0, 8.0 if long_mode else 4.0))
            worker.kill()
            # Dead worker, nothing in flight: every input under the committed offset must have an output.
            offsets = committed.offsets()
            below = feeder.ids_below(offsets)
            ahead = collector.wait_for(below, timeout_s=15)
            assert not ahead, (
                f"crash {cycle + 1}: offsets {offsets} committed ahead of outputs for {len(ahead)} inputs, "
                f"e.g. {ahead[:5]}"
            )
            checked_at_crash.append(len(below))
            worker.start()
            worker.wait_ready()
        feeder.wait_done()
        missing = collector.wait_for(ids, timeout_s=240 if long_mode else 120)
        elapsed = time.monotonic() - started
        ends = feeder.end_offsets()
        assert wait_until(lambda: committed.offsets() == {p: ends.get(p, 0) for p in range(PARTITIONS)}, 30)

    outputs = collector.outputs()
    duplicates = sum(count - 1 for count in outputs.values() if count > 1)
    strays = set(outputs) - set(ids)
    print(
        f"FIGURES crash: {n} inputs ({n // 20} DLQ-bound), {cycles} kill -9 cycles in {elapsed:.0f} s; "
        f"lost {len(missing)}; duplicates {duplicates} (bound {cycles} x {BATCH} = {cycles * BATCH}); "
        f"committed-ahead checks at each crash over {checked_at_crash} inputs: 0 violations; "
        f"strays {len(strays)}"
    )
    assert not missing, f"{len(missing)} inputs lost, e.g. {missing[:5]}"
    assert not strays, f"outputs for unknown ids: {sorted(strays)[:5]}"
    assert duplicates <= cycles * BATCH, f"{duplicates} duplicates > one batch per crash"
    assert sum(checked_at_crash) > 0, "no crash happened after a commit: the check proved nothing"
    for key, reasons in collector.dlq.items():
        assert set(reasons) == {"schema"}, f"{key}: unexpected DLQ reasons {reasons}"
