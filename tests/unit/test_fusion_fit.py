"""Gate fitting of the KB fusion on synthetic read-out pieces (no encoder needed)."""

from __future__ import annotations

import numpy as np

from worker.fusion import GATE_FEATURES, GateParams
from worker.model_build.fusion_fit import Pieces, fit_gate


def features(max_sim: np.ndarray) -> np.ndarray:
    f = np.zeros((len(max_sim), len(GATE_FEATURES)), np.float32)
    f[:, GATE_FEATURES.index("max_sim")] = max_sim
    f[:, GATE_FEATURES.index("near_dup")] = np.maximum(max_sim - 0.85, 0) / 0.15
    return f


def test_gate_learns_to_trust_near_duplicates_and_ignore_weak_matches() -> None:
    rng = np.random.default_rng(0)
    n = 400
    # Near-duplicates: the KB has the right label, the head does not.
    dup = Pieces(np.full(n, 0.1), np.full(n, 0.95), features(rng.uniform(0.93, 1.0, n)), np.ones(n, bool))
    # Weak matches: the head is right, the KB read-out is noise.
    weak = Pieces(
        np.full(n, 0.9), rng.uniform(0.0, 0.3, n), features(rng.uniform(0.3, 0.7, n)), np.ones(n, bool)
    )
    # Rows with no labelled point attended carry no gradient (their gate is 0 in fusion).
    none = Pieces(np.full(n, 0.5), np.zeros(n), features(np.zeros(n)), np.zeros(n, bool))
    gate, loss = fit_gate([dup, weak, none], GateParams(0.0, {}))
    w = gate.vector()

    def g(max_sim: float) -> float:
        return float(1 / (1 + np.exp(-(gate.bias + features(np.array([max_sim]))[0] @ w))))

    assert g(0.97) > 0.9 and g(0.5) < 0.1
    assert np.isfinite(loss) and loss < 0.2
