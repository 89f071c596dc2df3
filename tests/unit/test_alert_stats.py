"""Surge statistics: sign, monotonicity, the volume tolerance, and the sequential test's evidence."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.alerts.stats import binomial_z, poisson_z, share_log_lr, surge_llr, surge_z

counts = st.floats(min_value=0.0, max_value=500.0, allow_nan=False)
means = st.floats(min_value=0.01, max_value=500.0, allow_nan=False)
shares = st.floats(min_value=0.01, max_value=0.99, allow_nan=False)


def test_zero_at_the_expectation() -> None:
    assert poisson_z(4.0, 4.0) == pytest.approx(0.0)
    assert binomial_z(10, 3.0, 0.3) == pytest.approx(0.0)
    assert surge_z(10, 3.0, 10.0, 0.3, 2.0) == pytest.approx(0.0)


def test_known_values() -> None:
    # 2 * (10 ln(10/4) - 6) = 6.3258 -> sqrt = 2.5151
    assert poisson_z(10.0, 4.0) == pytest.approx(2.5151, abs=1e-4)
    assert poisson_z(0.0, 4.0) == pytest.approx(-math.sqrt(8.0))


@given(observed=counts, expected=means)
def test_poisson_sign_follows_the_excess(observed: float, expected: float) -> None:
    z = poisson_z(observed, expected)
    assert (z >= 0) == (observed >= expected) or abs(z) < 1e-9


@given(a=counts, b=counts, expected=means)
def test_poisson_monotone_above_the_mean(a: float, b: float, expected: float) -> None:
    lo, hi = sorted((a, b))
    if lo >= expected:
        assert poisson_z(hi, expected) >= poisson_z(lo, expected) - 1e-9


@given(trials=st.integers(min_value=1, max_value=300), frac=st.floats(0.0, 1.0), share=shares)
def test_surge_equals_binomial_within_the_tolerance(trials: int, frac: float, share: float) -> None:
    # Volume at or below tolerance x baseline: only the share is evidence.
    negative = frac * trials
    expected = trials / 1.5
    assert surge_z(trials, negative, expected, share, 2.0) == pytest.approx(
        binomial_z(trials, negative, share), abs=1e-6
    )


@given(share=st.floats(0.05, 0.5), ratio=st.floats(2.5, 20.0))
def test_volume_beyond_tolerance_adds_evidence(share: float, ratio: float) -> None:
    # Same share in the window (2x baseline), more volume than the tolerance allows: a higher score.
    count = 20.0
    negative = min(count, 2 * share * count)
    within = surge_z(count, negative, count / 2.0, share, 2.0)
    beyond = surge_z(count, negative, count / ratio, share, 2.0)
    assert beyond >= within - 1e-9


def test_a_busy_hour_with_the_usual_share_is_not_a_surge() -> None:
    # Twice the usual volume, usual share: nothing.
    assert surge_z(60, 15.0, 30.0, 0.25, 2.0) == pytest.approx(0.0, abs=1e-9)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        poisson_z(1.0, 0.0)
    with pytest.raises(ValueError):
        binomial_z(10, 1.0, 1.0)
    with pytest.raises(ValueError):
        surge_z(10, 1.0, 0.0, 0.2, 2.0)
    assert binomial_z(0, 0.0, 0.2) == 0.0
    assert surge_z(0, 0.0, 1.0, 0.2, 2.0) == 0.0


probs = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@given(share=st.floats(0.05, 0.3), prior=st.floats(0.05, 0.6), a=probs, b=probs)
def test_message_evidence_rises_with_p_negative(share: float, prior: float, a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert share_log_lr([hi], share, 3.0, prior) >= share_log_lr([lo], share, 3.0, prior) - 1e-12


@given(share=st.floats(0.05, 0.3), prior=st.floats(0.05, 0.6))
def test_message_evidence_is_bounded_by_the_hard_labels(share: float, prior: float) -> None:
    # A confident negative is worth at most log(s1/s0), a confident other at least log((1-s1)/(1-s0)),
    # and a message at the classifier's prior tells nothing.
    s1 = min(3 * share, 0.95)
    assert share_log_lr([1.0], share, 3.0, prior) <= math.log(s1 / share) + 1e-9
    assert share_log_lr([1.0], share, 3.0, prior) > 0.5 * math.log(s1 / share)
    assert share_log_lr([0.0], share, 3.0, prior) >= math.log((1 - s1) / (1 - share)) - 1e-9
    assert share_log_lr([prior], share, 3.0, prior) == pytest.approx(0.0, abs=1e-9)
    assert share_log_lr([0.9, 0.1], share, 3.0, prior) == pytest.approx(
        share_log_lr([0.9], share, 3.0, prior) + share_log_lr([0.1], share, 3.0, prior)
    )


@given(
    count=st.integers(1, 30), marks=st.floats(-10.0, 30.0), d1=st.floats(1.0, 600.0), d2=st.floats(1.0, 600.0)
)
def test_sequential_evidence_decays_with_time_on_a_quiet_key(
    count: int, marks: float, d1: float, d2: float
) -> None:
    # Same messages spread over a longer time: less evidence of a 5-per-minute surge (the CUSUM drift).
    short, long = sorted((d1, d2))
    rate = 4.0 / 3600.0
    assert (
        surge_llr(count, marks, long, rate, 5 / 60, 2.0)
        <= surge_llr(count, marks, short, rate, 5 / 60, 2.0) + 1e-9
    )


def test_sequential_volume_counts_on_quiet_keys_only() -> None:
    # Five neutral-looking messages in a minute on a 4/h key: volume evidence; on a key busier than the
    # surge rate, volume within the tolerance is no evidence at all.
    quiet = surge_llr(5, 0.0, 60.0, 4.0 / 3600.0, 5 / 60, 2.0)
    assert quiet == pytest.approx(5 * math.log((5 / 60) / (2 * 4 / 3600)) - (5 / 60 - 2 * 4 / 3600) * 60)
    busy = 20 / 60  # 20 per minute, the window brings 1.5x that
    assert surge_llr(30, 0.0, 60.0, busy, 5 / 60, 2.0) == pytest.approx(0.0, abs=1e-9)
    assert surge_llr(30, 4.0, 60.0, busy, 5 / 60, 2.0) == pytest.approx(4.0)


def test_sequential_bad_arguments() -> None:
    with pytest.raises(ValueError):
        surge_llr(5, 1.0, 0.0, 1.0, 1.0, 2.0)
    with pytest.raises(ValueError):
        share_log_lr([0.5], 0.0, 3.0, 0.3)
    assert surge_llr(0, 0.0, 10.0, 1.0, 1.0, 2.0) == 0.0
    assert share_log_lr([], 0.2, 3.0, 0.3) == 0.0
