"""Scenario 8 (smoke): bench/soak.py end to end at a tiny size; the real soak is run by hand (see
docs/RELIABILITY.md). Checks the harness measures, writes its JSON and PNG, and judges its verdicts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import soak


@pytest.mark.slow
def test_soak_smoke_writes_rss_and_lag_over_time(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "soak"
    code = soak.main(
        [
            "--minutes",
            "0.4",
            "--calibrate",
            "300",
            "--sample-s",
            "1",
            "--warmup-minutes",
            "0.1",
            "--bootstrap",
            kafka_bootstrap,
            "--redis-url",
            redis_url,
            "--out",
            str(out),
        ]
    )
    result = json.loads(out.with_suffix(".json").read_text())
    assert out.with_suffix(".png").stat().st_size > 10_000
    config, summary, samples = result["config"], result["summary"], result["samples"]
    assert config["max_throughput"] > 0 and config["rate"] == pytest.approx(
        0.7 * config["max_throughput"], 0.01
    )
    assert config["send_failures"] == 0
    assert len(samples) >= 15 and all(s["rss_mb"] > 50 for s in samples)
    assert samples[-1]["committed"] > 300, "the worker did not keep consuming during the soak"
    assert {"rss_growth_pct", "lag_max", "rss_growth_ok", "lag_bounded"} <= set(summary)
    assert code == (0 if summary["rss_growth_ok"] and summary["lag_bounded"] else 1)
