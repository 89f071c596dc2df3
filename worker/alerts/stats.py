"""Surge test statistics as signed-root deviances (about N(0, 1) in the upper tail under the null).

Counts may be real-valued (a sum of P(negative)), so the tests use the likelihood-ratio form instead of
discrete tail sums: it needs no special functions, is monotone in the count and costs a few logs.
"""

from __future__ import annotations

import math


def _xlogy(x: float, y: float) -> float:
    # log(x) - log(y), not log(x / y): the quotient of a tiny x underflows to 0
    return 0.0 if x <= 0.0 else x * (math.log(x) - math.log(y))


def poisson_z(observed: float, expected: float) -> float:
    """Signed-root deviance of ``observed`` against a Poisson mean ``expected`` (> 0)."""
    if expected <= 0.0:
        raise ValueError("expected count must be positive")
    deviance = 2.0 * (_xlogy(observed, expected) - (observed - expected))
    root = math.sqrt(max(deviance, 0.0))
    return root if observed >= expected else -root


def binomial_z(trials: float, successes: float, share: float) -> float:
    """Signed-root deviance of ``successes`` out of ``trials`` against a success share in (0, 1)."""
    if not 0.0 < share < 1.0:
        raise ValueError("share must be in (0, 1)")
    if trials <= 0.0:
        return 0.0
    successes = min(max(successes, 0.0), trials)
    failures = trials - successes
    deviance = 2.0 * (_xlogy(successes, trials * share) + _xlogy(failures, trials * (1.0 - share)))
    root = math.sqrt(max(deviance, 0.0))
    return root if successes >= trials * share else -root


def surge_z(count: float, negative: float, expected_count: float, share: float, tolerance: float) -> float:
    """Signed-root likelihood ratio that negative news surged, tolerating a common volume rise.

    Null: negative and other messages keep their baseline split (``share``) and their volume is the
    baseline ``expected_count`` scaled by a factor c <= ``tolerance`` (busy hours, a big news day);
    c is fitted to the window. Up to ``tolerance`` x volume this is the binomial share test; beyond it
    the extra volume counts as evidence too, which is what lets a burst on a quiet key stand out fast.
    The sign is + when there are more negatives than the null expects.
    """
    if expected_count <= 0.0:
        raise ValueError("expected count must be positive")
    if not 0.0 < share < 1.0:
        raise ValueError("share must be in (0, 1)")
    if count <= 0.0:
        return 0.0
    negative = min(max(negative, 0.0), count)
    scale = min(count / expected_count, tolerance)
    e_neg = scale * expected_count * share
    e_other = scale * expected_count * (1.0 - share)
    other = count - negative
    deviance = 2.0 * (
        _xlogy(negative, e_neg) - (negative - e_neg) + _xlogy(other, e_other) - (other - e_other)
    )
    root = math.sqrt(max(deviance, 0.0))
    return root if negative >= e_neg else -root
