"""Scenario 3, graceful shutdown: SIGTERM mid-stream finishes the batch in hand, flushes, commits and
exits 0 within ``shutdown_timeout_s``; a restart after it re-reads nothing, so no input is duplicated.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from relharness import WorkerProcess, events, flow, ids_of, prepare_pipeline, wait_until

PARTITIONS = 3


@pytest.mark.slow
def test_sigterm_drains_commits_and_a_restart_duplicates_nothing(
    base_settings: Callable[..., dict[str, object]],
    spawn: Callable[..., WorkerProcess],
    long_mode: bool,
) -> None:
    n, stops = (6_000, 5) if long_mode else (1_200, 2)
    shutdown_timeout_s = 10.0  # the default, stated here because the test measures against it
    s = base_settings(shutdown_timeout_s=shutdown_timeout_s)
    prepare_pipeline(s, PARTITIONS)
    inputs = events("term", n, bad_every=25)
    exit_times: list[float] = []
    with flow(s, PARTITIONS) as (feeder, collector, committed):
        worker = spawn("term", s)
        worker.wait_ready()
        feeder.stream(inputs, rate_per_s=100.0)
        for stop in range(stops):
            time.sleep(3.0)
            code, seconds = worker.terminate(timeout_s=shutdown_timeout_s + 20)
            exit_times.append(seconds)
            assert code == 0, f"stop {stop + 1}: exit code {code} after {seconds:.1f} s\n{worker.tail()}"
            assert seconds <= shutdown_timeout_s, f"stop {stop + 1}: took {seconds:.1f} s"
            # Drained: what was output is exactly what was committed (nothing produced-but-uncommitted).
            below = feeder.ids_below(committed.offsets())
            assert not collector.wait_for(below, timeout_s=15), "committed ahead of outputs"
            time.sleep(1.0)  # let the collector see any stray output beyond the commit
            extra = set(collector.outputs()) - set(below)
            assert not extra, f"stop {stop + 1}: {len(extra)} outputs beyond the committed offsets"
            assert "finishing the batch in hand" in worker.log()
            worker.start()
            worker.wait_ready()
        feeder.wait_done()
        missing = collector.wait_for(ids_of(inputs), timeout_s=120)
        ends = feeder.end_offsets()
        assert wait_until(lambda: committed.offsets() == {p: ends.get(p, 0) for p in range(PARTITIONS)}, 30)
        time.sleep(1.0)
    outputs = collector.outputs()
    duplicates = sum(count - 1 for count in outputs.values() if count > 1)
    print(
        f"FIGURES sigterm: {n} inputs, {stops} SIGTERM stops mid-stream; exit 0 each time in "
        f"{', '.join(f'{t:.1f}' for t in exit_times)} s (limit {shutdown_timeout_s:.0f} s); "
        f"lost {len(missing)}; duplicates {duplicates}"
    )
    assert not missing, f"{len(missing)} lost, e.g. {missing[:5]}"
    assert duplicates == 0, f"{duplicates} duplicates after graceful restarts"
