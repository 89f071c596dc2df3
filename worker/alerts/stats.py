"""Surge test statistics.

- ``poisson_z`` / ``binomial_z`` / ``surge_z``: signed-root deviances (about N(0, 1) in the upper tail
  under the null) against an unspecified surge (the scan test). Counts may be real-valued (a sum of
  P(negative)), so they use the likelihood-ratio form instead of discrete tail sums: no special
  functions, monotone in the count, a few logs.
- ``share_log_lr`` + ``surge_llr``: the log-likelihood ratio of a *specified* surge (rate and share
  factor) against the baseline, the sequential test that catches a compact burst within a few
  messages.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


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


def share_log_lr(p_negatives: Iterable[float], base_share: float, share_factor: float, prior: float) -> float:
    """Sum over messages of log P(message | surge share) / P(message | baseline share), in nats.

    Confidence weighting: each message's P(negative) is read as a calibrated posterior under the
    classifier's ``prior``, so its likelihood ratio negative-vs-not is L = odds(p) / odds(prior), and
    under a share s a message's likelihood is proportional to s L + 1 - s. A confident negative moves
    the sum up by almost log(s1 / s0), a confident other message down by almost
    log((1 - s1) / (1 - s0)), an unsure one by little. The surge share s1 is ``share_factor`` x the
    baseline share, at most 0.95.
    """
    if not 0.0 < base_share < 1.0 or not 0.0 < prior < 1.0:
        raise ValueError("share and prior must be in (0, 1)")
    surge_share = max(min(base_share * share_factor, 0.95), base_share)
    prior_odds = prior / (1.0 - prior)
    total = 0.0
    for p in p_negatives:
        p = min(max(p, 1e-4), 1.0 - 1e-4)
        ratio = p / (1.0 - p) / prior_odds
        total += math.log((surge_share * ratio + 1.0 - surge_share) / (base_share * ratio + 1.0 - base_share))
    return total


def surge_llr(
    count: float,
    marks: float,
    duration_s: float,
    base_rate_per_s: float,
    surge_rate_per_s: float,
    tolerance: float,
) -> float:
    """Log-likelihood ratio (nats) of a span under the specified surge against the baseline.

    The sequential (CUSUM-style) test of the engine: ``count`` messages in ``duration_s`` seconds
    whose sentiment evidence is ``marks`` (``share_log_lr``). The null is the baseline rate scaled by
    the best-fitting c in [1, ``tolerance``] (busy hours are not a surge); the surge runs at
    ``surge_rate_per_s`` or the null's rate, whichever is higher. So on a quiet key every message
    adds log(r1 / r0) and time takes ``(r1 - r0) * duration`` away: evidence must come faster than
    the surge rate, which separates a compact burst from a few repeats spread over minutes. On a busy
    key (rate above the surge rate) only the share counts. Maximised over the spans that end now,
    this is the CUSUM statistic restricted to the window.
    """
    if base_rate_per_s <= 0.0 or surge_rate_per_s <= 0.0 or duration_s <= 0.0:
        raise ValueError("rates and duration must be positive")
    if count <= 0.0:
        return 0.0
    scale = min(max(count / (base_rate_per_s * duration_s), 1.0), tolerance)
    null_rate = scale * base_rate_per_s
    alt_rate = max(surge_rate_per_s, null_rate)
    volume = math.log(alt_rate) - math.log(null_rate)
    return marks + count * volume - (alt_rate - null_rate) * duration_s
