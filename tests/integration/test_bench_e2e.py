"""Row 5 of `finsignal bench` on the session's real Tansu broker and Redis (quick size)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.common import load_texts
from bench.e2e import Stack, e2e_rows
from worker.config import Settings, load_settings

pytestmark = pytest.mark.slow


def test_row5_end_to_end_and_paced(
    settings_factory: Callable[..., Settings], kafka_bootstrap: str, redis_url: str
) -> None:
    settings = settings_factory(max_batch_delay_ms=10)
    texts = load_texts(64)
    rows, facts = e2e_rows(
        settings, texts, n=150, rounds=2, paced_n=60, batch_seconds=0.05, mean_tokens=20.0,
        services=Stack(kafka_bootstrap, redis_url),
    )  # fmt: skip
    full, paced, alone = rows
    assert (full.row, paced.row, alone.row) == ("5", "5p", "5w")
    # every event came back as a signal, also those of the backlog the worker drained alone (2 x 150)
    assert full.extra["complete"] and paced.extra["complete"] and alone.extra["complete"]
    assert alone.messages == 240 and alone.msgs_per_s > 0  # the middle 80%, timed by signal stamps
    assert full.messages == 150 and paced.messages == 60
    assert full.msgs_per_s > 0 and paced.msgs_per_s > 0
    # paced at half the measured rate: it cannot finish faster than its own schedule allows
    assert paced.seconds >= 59 / facts["paced_rate_per_s"] * 0.95
    for lat in (full.extra["latency_ms"], paced.extra["latency_ms"]):
        assert 0 <= lat["p50"] <= lat["p99"] <= lat["max"]
    assert len(facts["latency_full_ms"]) == 150 and facts["p99_over_batch"] > 0
    assert len(full.extra["rounds_msgs_per_s"]) == 2  # the row is the best of its rounds
    assert full.msgs_per_s == pytest.approx(max(full.extra["rounds_msgs_per_s"]), abs=0.01)


def test_harness_quick_row5_writes_ratios(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The harness's own call into row 5 (arguments, ratios, JSON), on the session's broker and Redis."""
    import bench.e2e
    from bench.harness import Options, run

    @contextlib.contextmanager
    def session_services() -> Iterator[Stack]:
        yield Stack(kafka_bootstrap, redis_url)

    monkeypatch.setattr(bench.e2e, "stack", session_services)
    result = run(load_settings(), Options(quick=True, rows=("5",), out_dir=tmp_path, plots=False))
    rows = {row["row"]: row for row in result["rows"]}
    assert {"4", "4p", "4e", "5", "5p"} <= set(rows)  # 4 comes along: 5p is judged against its batch time
    assert rows["5"]["msgs_per_s"] > 0 and rows["5p"]["msgs_per_s"] > 0
    ratios = result["ratios"]
    # The pipeline ratios are taken against 4p, the model driven as the worker drives it
    expected = rows["5"]["msgs_per_s"] / rows["4p"]["msgs_per_s"]
    assert ratios["e2e_vs_encoder_fusion"] == pytest.approx(expected, rel=1e-2)
    assert ratios["lever_handoff_4p_vs_4"] == pytest.approx(
        rows["4p"]["msgs_per_s"] / rows["4"]["msgs_per_s"], rel=1e-2
    )
    alone = rows["5w"]["msgs_per_s"] / rows["4p"]["msgs_per_s"]
    assert ratios["worker_alone_vs_encoder_fusion"] == pytest.approx(alone, rel=1e-2)
    assert ratios["paced_p99_over_batch"] > 0
    assert json.loads((tmp_path / "quick.json").read_text())["rows"] == result["rows"]


def test_drain_rows_time_the_workers_on_a_produced_backlog(
    settings_factory: Callable[..., Settings], kafka_bootstrap: str, redis_url: str
) -> None:
    from bench.e2e import drain_rows

    settings = settings_factory(max_batch_delay_ms=10)
    rows, facts = drain_rows(
        settings, load_texts(64), n=300, mean_tokens=20.0, procs=(1, 2),
        services=Stack(kafka_bootstrap, redis_url),
    )  # fmt: skip
    assert [r.row for r in rows] == ["5d1", "5d2"]
    for row in rows:
        assert row.extra["complete"]  # every backlog event came back as a signal
        assert row.messages == 240 and row.msgs_per_s > 0  # the middle 80%, timed by signal stamps
    assert set(facts["drain_msgs_per_s"]) == {"1", "2"}


def test_a_run_read_after_the_commit_is_timed_by_the_signals_own_stamps(
    settings_factory: Callable[..., Settings], kafka_bootstrap: str, redis_url: str
) -> None:
    from bench.e2e import replay_and_collect, run_settings, run_stage, worker_processes

    texts = load_texts(64)
    settings = run_settings(
        settings_factory(max_batch_delay_ms=10, max_batch_size=16),
        Stack(kafka_bootstrap, redis_url),
        partitions=2,
    )
    with worker_processes(settings, 1), replay_and_collect(settings) as (replayer, collector):
        live = run_stage(replayer, collector, texts, 40, "live")
        after = run_stage(replayer, collector, texts, 120, "after", read_after=settings)
    assert live.complete and after.complete and after.messages == 120
    ids = [f"after-{i:06d}" for i in range(120)]
    stamps = [collector.seen[i][0] for i in ids]
    first_sent = min(replayer.sent_ms[i] for i in ids)
    # Not one signal was read before the worker had committed them all (on both partitions, after the
    # live run's 40): each was seen after the last one was stamped; the run ends at that stamp.
    assert min(collector.seen[i][1] for i in ids) * 1000 >= max(stamps) - 1
    assert after.seconds == pytest.approx((max(stamps) - first_sent) / 1000, abs=1e-6)
