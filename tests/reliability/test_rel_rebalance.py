"""Scenario 2, rebalance: three workers in one group on a 6-partition topic, each stopped and restarted in
turn while events flow. Holds: 0 lost, every partition's committed offset reaches its end (no partition
silently stalled after a rebalance), and each rebalance settles (every live member re-assigned, all six
partitions owned) within a bounded time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from relharness import WorkerProcess, events, flow, ids_of, log_times, prepare_pipeline, wait_until

PARTITIONS = 6
SETTLE_LIMIT_S = 30.0  # session timeout 6 s + join + sync on a busy 2-core box


def _assigned_after(worker: WorkerProcess, since: float) -> tuple[float, set[int]] | None:
    """(time, partitions) of the worker's first 'partitions assigned' log line after ``since``."""
    for line in worker.log().splitlines():
        if "worker.app: partitions assigned:" not in line:
            continue
        (at,) = log_times(line, "partitions assigned") or [0.0]
        if at >= since:
            return at, {int(p) for p in re.findall(r"\[(\d+)\]", line)}
    return None


def _settled(workers: list[WorkerProcess], since: float) -> float | None:
    """Seconds from ``since`` until every live worker was re-assigned and all partitions were owned."""
    seen = [_assigned_after(w, since) for w in workers if w.running]
    if not seen or any(s is None for s in seen):
        return None
    owned = set().union(*(partitions for _, partitions in seen))  # type: ignore[misc]
    if owned != set(range(PARTITIONS)):
        return None
    return max(at for at, _ in seen) - since  # type: ignore[misc]


@pytest.mark.slow
def test_stop_start_each_of_three_workers_loses_nothing_and_no_partition_stalls(
    base_settings: Callable[..., dict[str, object]],
    spawn: Callable[..., WorkerProcess],
    long_mode: bool,
) -> None:
    n, rounds, rate = (12_000, 2, 80.0) if long_mode else (2_400, 1, 60.0)
    s = base_settings()
    prepare_pipeline(s, PARTITIONS)
    inputs = events("reb", n, bad_every=30)
    settle_times: list[float] = []
    with flow(s, PARTITIONS) as (feeder, collector, committed):
        workers = [spawn(f"reb{i}", s) for i in range(3)]
        for worker in workers:
            worker.wait_ready()
        started = time.monotonic()
        feeder.stream(inputs, rate)
        for _ in range(rounds):
            for worker in workers:
                for action in ("stop", "start"):
                    time.sleep(2.0)
                    since = time.time()
                    if action == "stop":
                        code, _ = worker.terminate()
                        assert code == 0, worker.tail()
                    else:
                        worker.start()
                        worker.wait_ready()
                    assert wait_until(lambda t=since: _settled(workers, t) is not None, SETTLE_LIMIT_S), (
                        f"{action} {worker.name}: group not settled within {SETTLE_LIMIT_S:.0f} s"
                    )
                    settle_times.append(_settled(workers, since) or 0.0)
        feeder.wait_done()
        missing = collector.wait_for(ids_of(inputs), timeout_s=180)
        ends = feeder.end_offsets()
        want = {p: ends.get(p, 0) for p in range(PARTITIONS)}
        caught_up = wait_until(lambda: committed.offsets() == want, 60)
        final = committed.offsets()
        elapsed = time.monotonic() - started
        time.sleep(1.0)
    outputs = collector.outputs()
    duplicates = sum(count - 1 for count in outputs.values() if count > 1)
    print(
        f"FIGURES rebalance: {n} inputs over {PARTITIONS} partitions, 3 workers, {rounds * 6} stop/start "
        f"transitions in {elapsed:.0f} s; lost {len(missing)}; duplicates {duplicates}; group settled in "
        f"max {max(settle_times):.1f} s (mean {sum(settle_times) / len(settle_times):.1f} s); "
        f"committed == end on {sum(final[p] == want[p] for p in want)}/{PARTITIONS} partitions"
    )
    assert not missing, f"{len(missing)} lost, e.g. {missing[:5]}"
    assert all(want[p] > 0 for p in want), f"feeder did not reach every partition: {want}"
    assert caught_up, f"partitions left behind: committed {final} vs ends {want}"
