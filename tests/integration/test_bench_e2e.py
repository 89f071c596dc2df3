"""Row 5 of `finsignal bench` on the session's real Tansu broker and Redis (quick size)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bench.common import load_texts
from bench.e2e import Stack, e2e_rows
from worker.config import Settings

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
    full, paced = rows
    assert (full.row, paced.row) == ("5", "5p")
    assert full.extra["complete"] and paced.extra["complete"]  # every event came back as a signal
    assert full.messages == 150 and paced.messages == 60
    assert full.msgs_per_s > 0 and paced.msgs_per_s > 0
    # paced at half the measured rate: it cannot finish faster than its own schedule allows
    assert paced.seconds >= 59 / facts["paced_rate_per_s"] * 0.95
    for lat in (full.extra["latency_ms"], paced.extra["latency_ms"]):
        assert 0 <= lat["p50"] <= lat["p99"] <= lat["max"]
    assert len(facts["latency_full_ms"]) == 150 and facts["p99_over_batch"] > 0
    assert len(full.extra["rounds_msgs_per_s"]) == 2  # the row is the best of its rounds
    assert full.msgs_per_s == pytest.approx(max(full.extra["rounds_msgs_per_s"]), abs=0.01)
