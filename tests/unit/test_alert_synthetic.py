"""The detection trial follows issue 5's wording: during the burst the key runs at 5 msg/min with 3x
its negative share (not easier: no extra traffic; the older overlay trial is kept for comparison)."""

from __future__ import annotations

import statistics

import pytest

from worker.alerts.synthetic import burst_trial


def burst_window(overlay: bool, seed: int) -> tuple[float, float, float]:
    trial = burst_trial(seed, overlay=overlay, warmup_hours=1.0)
    end = trial.burst_start + trial.burst_minutes * 60.0
    during = [e for e in trial.events if trial.key in e.keys and trial.burst_start <= e.event_time < end]
    negative = sum(e.p_negative > 0.5 for e in during)
    return len(during) / trial.burst_minutes, negative / max(len(during), 1), trial.base_share


def test_the_burst_runs_at_five_per_minute_with_three_times_the_share() -> None:
    rows = [burst_window(False, seed) for seed in range(40)]
    rate = statistics.mean(r for r, _, _ in rows)
    ratio = statistics.mean(share / base for _, share, base in rows)
    assert rate == pytest.approx(5.0, abs=0.35)  # 40 x 10 min of a Poisson(5/min): sd ~0.11
    assert ratio == pytest.approx(3.0, abs=0.25)


def test_the_overlay_trial_adds_the_baseline_traffic_at_the_baseline_share() -> None:
    issue = [burst_window(False, seed) for seed in range(40)]
    overlay = [burst_window(True, seed) for seed in range(40)]
    assert statistics.mean(r for r, _, _ in overlay) > statistics.mean(r for r, _, _ in issue)
    assert statistics.mean(s / b for _, s, b in overlay) < statistics.mean(s / b for _, s, b in issue)
