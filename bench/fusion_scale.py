"""Fusion cost vs KB size: fuse time of a batch of 64 with a 1,000- and a 100,000-point KB (synthetic).

Vectors are clustered (topics within expert groups), like real KB embeddings, so routing sees structure.
Timings are median (and min) wall time; on a shared machine pin BLAS threads (OPENBLAS_NUM_THREADS=1) for
stable figures. Usage: python bench/fusion_scale.py [--sizes 1000 100000] [--batch 64] [--rounds 30] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from kb_sync.model import STANDARD_GROUPS, KBEntry, KBSnapshot
from worker.fusion import Fusion, FusionParams, KnowledgeIndex

SENTIMENTS = ("negative", "neutral", "positive")
TOPICS = tuple(f"topic-{i}" for i in range(20))
DIM = 384


def synthetic_kb(n: int, rng: np.random.Generator) -> tuple[KBSnapshot, np.ndarray, np.ndarray]:
    """n points in 9 groups x 20 topic clusters; returns snapshot, vectors and the cluster centres."""
    centres = rng.standard_normal((len(STANDARD_GROUPS) * len(TOPICS), DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    cluster = rng.integers(0, len(centres), n)
    vectors = centres[cluster] + 0.9 * rng.standard_normal((n, DIM)).astype(np.float32) / np.sqrt(DIM)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    entries = tuple(
        KBEntry(
            id=f"syn:{i}",
            kind="exemplar",
            text=f"synthetic point {i}",
            group=STANDARD_GROUPS[c // len(TOPICS)],
            author="bench",
            topic=TOPICS[c % len(TOPICS)],
            sentiment=SENTIMENTS[i % 3],
        )
        for i, c in enumerate(cluster.tolist())
    )
    snapshot = KBSnapshot(version=1, entries=entries, published_at="2024-01-01T00:00:00Z", author="bench")
    return snapshot, vectors.astype(np.float32), centres


def time_size(n: int, batch: int, rounds: int, top_m: int, top_groups: int) -> dict[str, float]:
    rng = np.random.default_rng(n)
    snapshot, vectors, centres = synthetic_kb(n, rng)
    start = time.perf_counter()
    index = KnowledgeIndex.build(snapshot, vectors, TOPICS, SENTIMENTS)
    build_s = time.perf_counter() - start
    fusion = Fusion(FusionParams(), TOPICS, SENTIMENTS, top_m=top_m, top_groups=top_groups)
    h = centres[rng.integers(0, len(centres), batch)] + 0.9 * rng.standard_normal((batch, DIM)) / np.sqrt(DIM)
    h = (h / np.linalg.norm(h, axis=1, keepdims=True)).astype(np.float32)
    s_logits = rng.standard_normal((batch, 3)).astype(np.float32)
    t_logits = rng.standard_normal((batch, len(TOPICS))).astype(np.float32)
    fusion.fuse(h, s_logits, t_logits, index)  # warm-up (per-index bias cache, BLAS threads)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fusion.fuse(h, s_logits, t_logits, index)
        times.append(time.perf_counter() - start)
    return {
        "points": n,
        "build_s": build_s,
        "fuse_ms": 1000 * statistics.median(times),
        "fuse_ms_min": 1000 * min(times),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[1000, 100_000], help="small and large KB")
    parser.add_argument("--batch", type=int, default=64, help="messages per fuse call")
    parser.add_argument("--rounds", type=int, default=30, help="timed calls (median kept)")
    parser.add_argument("--top-m", type=int, default=8, help="points attended per message")
    parser.add_argument("--top-groups", type=int, default=3, help="expert groups routed per message")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    small, large = (time_size(n, args.batch, args.rounds, args.top_m, args.top_groups) for n in args.sizes)
    report = {
        "batch": args.batch,
        "small": small,
        "large": large,
        "fuse_time_ratio_large_over_small": large["fuse_ms"] / small["fuse_ms"],
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for row in (small, large):
            print(
                f"{row['points']:>7} points: fuse {row['fuse_ms']:.2f} ms (min {row['fuse_ms_min']:.2f}) "
                f"/ batch of {args.batch}, "
                f"index build {row['build_s']:.2f} s"
            )
        ratio = report["fuse_time_ratio_large_over_small"]
        print(f"fuse time ratio {large['points']}/{small['points']} points: {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
