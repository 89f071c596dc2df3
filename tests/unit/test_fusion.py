"""KB fusion on synthetic vectors: routing, attention, read-out, gate, KB-only topics, params file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from kb_sync.model import KBEntry, KBSnapshot
from worker.fusion import (
    FUSION_FILE,
    Fusion,
    FusionError,
    FusionParams,
    KnowledgeIndex,
    softmax,
)

DIM = 32
SENTIMENTS = ("negative", "neutral", "positive")
HEAD_TOPICS = ("Earnings", "Macro", "IPO")
EVIDENCE_KEYS = {"id", "text", "kind", "group", "topic", "sentiment", "weight", "attention"}


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def rand_unit(rng: np.random.Generator, n: int) -> np.ndarray:
    return unit(rng.standard_normal((n, DIM)))


def near(v: np.ndarray, cos: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector with the given cosine to unit vector v."""
    r = rng.standard_normal(DIM)
    r -= (r @ v) * v
    r /= np.linalg.norm(r)
    return unit(cos * v + np.sqrt(1 - cos**2) * r)


def entry(i: int, group: str, topic: str | None = None, sentiment: str | None = None, weight: float = 1.0):
    return KBEntry(
        id=f"p{i}",
        kind="exemplar",
        text=f"point {i}",
        group=group,
        author="test",
        topic=topic,
        sentiment=sentiment,
        weight=weight,
    )


def make_index(entries: list[KBEntry], vectors: np.ndarray, **kw) -> KnowledgeIndex:
    snapshot = KBSnapshot(version=7, entries=tuple(entries), published_at="2024-01-01T00:00:00Z", author="t")
    return KnowledgeIndex.build(snapshot, vectors, HEAD_TOPICS, SENTIMENTS, **kw)


def fusion(top_m: int = 4, top_groups: int = 2, params: FusionParams | None = None) -> Fusion:
    return Fusion(params or FusionParams(), HEAD_TOPICS, SENTIMENTS, top_m=top_m, top_groups=top_groups)


def head_logits(batch: int, sentiment: int = 1, topic: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Confident head: the given sentiment / topic at ~0.9."""
    s = np.zeros((batch, 3), np.float32)
    s[:, sentiment] = 3.0
    t = np.zeros((batch, len(HEAD_TOPICS)), np.float32)
    t[:, topic] = 3.0
    return s, t


def test_no_kb_is_the_head() -> None:
    rng = np.random.default_rng(0)
    h = rand_unit(rng, 5)
    s_logits = rng.standard_normal((5, 3)).astype(np.float32)
    t_logits = rng.standard_normal((5, 3)).astype(np.float32)
    empty = KnowledgeIndex.empty(HEAD_TOPICS, SENTIMENTS, dim=DIM)
    for index in (None, empty):
        results = fusion().fuse(h, s_logits, t_logits, index)
        assert len(results) == 5
        for b, r in enumerate(results):
            assert np.allclose(list(r.sentiment.values()), softmax(s_logits[b]), atol=1e-6)
            best = int(np.argmax(t_logits[b]))
            assert r.topics[0] == (HEAD_TOPICS[best], pytest.approx(float(softmax(t_logits[b])[best])))
            assert r.gate == 0.0 and r.evidence == [] and r.routed_groups == [] and not r.topic_kb_only


def test_kb_only_topic_comes_out_for_a_matching_vector() -> None:
    rng = np.random.default_rng(1)
    new_topic = rand_unit(rng, 1)[0]
    vectors = np.concatenate([rand_unit(rng, 30), new_topic[None]])
    entries = [entry(i, "macro", HEAD_TOPICS[i % 3], SENTIMENTS[i % 3]) for i in range(30)]
    entries.append(entry(30, "crypto", "Stablecoins", "negative"))
    index = make_index(entries, vectors)
    assert index.topics == (*HEAD_TOPICS, "Stablecoins")

    matching = near(new_topic, 0.95, rng)
    unrelated = rand_unit(rng, 1)[0]
    s, t = head_logits(2, sentiment=2, topic=0)  # head: positive Earnings
    match_r, other_r = fusion().fuse(np.stack([matching, unrelated]), s, t, index)

    assert match_r.topics[0][0] == "Stablecoins" and match_r.topic_kb_only
    assert max(match_r.sentiment, key=match_r.sentiment.get) == "negative"
    assert match_r.evidence[0]["id"] == "p30"
    assert other_r.topics[0][0] == "Earnings" and not other_r.topic_kb_only
    assert len(match_r.topics) == 3


def test_evidence_order_attention_and_probabilities() -> None:
    rng = np.random.default_rng(2)
    vectors = rand_unit(rng, 200)
    groups = ("equities", "rates", "fx", "macro")
    entries = [
        entry(
            i, groups[i % 4], HEAD_TOPICS[i % 3] if i % 5 else "Crypto", SENTIMENTS[i % 3] if i % 7 else None
        )
        for i in range(200)
    ]
    index = make_index(entries, vectors)
    h = unit(vectors[:16] + 0.3 * rng.standard_normal((16, DIM)))
    s_logits = rng.standard_normal((16, 3)).astype(np.float32)
    t_logits = rng.standard_normal((16, 3)).astype(np.float32)
    results = fusion(top_m=6, top_groups=2).fuse(h, s_logits, t_logits, index)
    for r in results:
        att = [e["attention"] for e in r.evidence]
        assert 1 <= len(r.evidence) <= 6
        assert att == sorted(att, reverse=True)
        assert sum(att) == pytest.approx(1.0, abs=1e-5)
        assert all(set(e) == EVIDENCE_KEYS for e in r.evidence)
        assert {e["group"] for e in r.evidence} <= set(r.routed_groups) and len(r.routed_groups) == 2
        assert sum(r.sentiment.values()) == pytest.approx(1.0, abs=1e-5)
        assert 0.0 <= r.gate <= 1.0
        assert [p for _, p in r.topics] == sorted((p for _, p in r.topics), reverse=True)
    # Full extended distribution sums to 1 too (not only the top 3 shown).
    probs, _, _, _ = fusion(top_m=6, top_groups=2).fuse_arrays(h, s_logits, t_logits, index)
    assert np.allclose(probs["topic"].sum(axis=1), 1.0, atol=1e-5)
    assert probs["topic"].shape[1] == len(HEAD_TOPICS) + 1


def test_routing_scores_only_routed_groups() -> None:
    """Group A holds a perfect match but its router centroid points elsewhere; B is routed instead."""
    rng = np.random.default_rng(3)
    h = rand_unit(rng, 1)[0]
    away = near(-h, 0.99, rng)  # A's bulk points away from h, so its single centroid does too
    a_vectors = np.stack([h] + [near(away, 0.95, rng) for _ in range(20)])
    b_vectors = np.stack([near(h, 0.6, rng) for _ in range(10)])
    entries = [entry(0, "alpha", "IPO", "negative")]
    entries += [entry(i, "alpha", "Macro", "neutral") for i in range(1, 21)]
    entries += [entry(100 + i, "beta", "Earnings", "positive") for i in range(10)]
    index = make_index(entries, np.concatenate([a_vectors, b_vectors]), max_centroids=1)
    s, t = head_logits(1)

    (one,) = fusion(top_m=4, top_groups=1).fuse(h[None], s, t, index)
    assert one.routed_groups == ["beta"]
    assert all(e["group"] == "beta" for e in one.evidence)
    assert "p0" not in {e["id"] for e in one.evidence}

    (two,) = fusion(top_m=4, top_groups=2).fuse(h[None], s, t, index)
    assert two.routed_groups == ["beta", "alpha"]
    assert two.evidence[0]["id"] == "p0"  # the perfect match, once its group is routed
    assert two.topics[0][0] == "IPO"


def test_near_duplicate_dominates_weak_match_barely_moves() -> None:
    rng = np.random.default_rng(4)
    point = rand_unit(rng, 1)[0]
    index = make_index([entry(0, "equities", "Macro", "negative")], point[None])
    s, t = head_logits(2, sentiment=2, topic=0)
    head_pos = float(softmax(s[0])[2])
    dup, weak = fusion().fuse(np.stack([near(point, 0.97, rng), near(point, 0.6, rng)]), s, t, index)
    assert dup.sentiment["negative"] > 0.8 and dup.topics[0][0] == "Macro" and dup.gate > 0.9
    assert weak.sentiment["positive"] == pytest.approx(head_pos, abs=0.01) and weak.gate < 0.01
    assert weak.topics[0][0] == "Earnings"


def test_point_weight_enters_attention() -> None:
    rng = np.random.default_rng(5)
    h = rand_unit(rng, 1)[0]
    a, b = near(h, 0.8, rng), near(h, 0.8, rng)
    entries = [entry(0, "fx", "Macro", weight=4.0), entry(1, "fx", "Macro", weight=1.0)]
    (r,) = fusion().fuse(h[None], *head_logits(1), make_index(entries, np.stack([a, b])))
    att = {e["id"]: e["attention"] for e in r.evidence}
    assert att["p0"] / att["p1"] == pytest.approx(4.0, rel=1e-3)


def test_batch_equals_one_by_one() -> None:
    rng = np.random.default_rng(6)
    vectors = rand_unit(rng, 300)
    groups = ("a", "b", "c", "d", "e")
    entries = [entry(i, groups[i % 5], HEAD_TOPICS[i % 3], SENTIMENTS[(i // 3) % 3]) for i in range(300)]
    index = make_index(entries, vectors, max_centroids=8)
    h = unit(vectors[:10] + 0.2 * rng.standard_normal((10, DIM)))
    s_logits = rng.standard_normal((10, 3)).astype(np.float32)
    t_logits = rng.standard_normal((10, 3)).astype(np.float32)
    f = fusion(top_m=5, top_groups=2)
    batch = f.fuse(h, s_logits, t_logits, index)
    for b in range(10):
        (single,) = f.fuse(h[b : b + 1], s_logits[b : b + 1], t_logits[b : b + 1], index)
        assert single.routed_groups == batch[b].routed_groups
        assert [e["id"] for e in single.evidence] == [e["id"] for e in batch[b].evidence]
        assert single.sentiment == pytest.approx(batch[b].sentiment, abs=1e-6)


def test_params_file_roundtrip_and_defaults(tmp_path: Path) -> None:
    assert FusionParams.load(tmp_path) == FusionParams()
    params = FusionParams(temperature=0.07, kind_bias={"term": -0.5}, meta={"fitted": True})
    params.save(tmp_path)
    loaded = FusionParams.load(tmp_path)
    assert loaded.temperature == 0.07 and loaded.kind_bias == {"term": -0.5}
    assert loaded.gates["topic"].weights == params.gates["topic"].weights

    data = json.loads((tmp_path / FUSION_FILE).read_text())
    data["gates"]["topic"]["weights"]["bogus"] = 1.0
    (tmp_path / FUSION_FILE).write_text(json.dumps(data))
    with pytest.raises(FusionError, match="bogus"):
        FusionParams.load(tmp_path)
    (tmp_path / FUSION_FILE).write_text('{"format": "other"}')
    with pytest.raises(FusionError, match="format"):
        FusionParams.load(tmp_path)


def test_build_refuses_mismatched_embeddings() -> None:
    rng = np.random.default_rng(7)
    with pytest.raises(FusionError, match="len\\(snapshot\\)=2"):
        make_index([entry(0, "fx"), entry(1, "fx")], rand_unit(rng, 3))
    index = make_index([entry(0, "fx", "Macro")], rand_unit(rng, 1))
    with pytest.raises(FusionError, match="dimension"):
        fusion().fuse(np.ones((1, DIM + 1), np.float32), *head_logits(1), index)


def test_inverted_lists_find_the_near_duplicate_in_a_large_group() -> None:
    rng = np.random.default_rng(8)
    centres = rand_unit(rng, 20)
    cluster = rng.integers(0, 20, 2000)
    vectors = unit(centres[cluster] + 0.5 * rng.standard_normal((2000, DIM)) / np.sqrt(DIM))
    entries = [entry(i, "equities", HEAD_TOPICS[i % 3], SENTIMENTS[i % 3]) for i in range(2000)]
    index = make_index(entries, vectors, ivf_min_points=500, list_size=100)
    assert len(index.list_group) >= 20  # the group was split into inverted lists
    targets = rng.choice(2000, 32, replace=False)
    h = np.stack([near(vectors[t], 0.98, rng) for t in targets])
    s, t = head_logits(32)
    probed = Fusion(FusionParams(), HEAD_TOPICS, SENTIMENTS, top_m=4, top_groups=1, nprobe=2)
    exact = Fusion(FusionParams(), HEAD_TOPICS, SENTIMENTS, top_m=4, top_groups=1, nprobe=10**6)
    for target, r_probed, r_exact in zip(
        targets, probed.fuse(h, s, t, index), exact.fuse(h, s, t, index), strict=True
    ):
        assert r_exact.evidence[0]["id"] == f"p{target}"
        assert r_probed.evidence[0]["id"] == f"p{target}"


# --- incremental reload: KnowledgeIndex.build(previous=...) ------------------------------------------


def _reload(
    entries: list[KBEntry], vectors: np.ndarray, change: int, remove: int, add: int, rng: np.random.Generator
) -> tuple[list[KBEntry], np.ndarray]:
    """A new version: ``change`` points reworded (new text and vector), ``remove`` dropped, ``add`` new."""
    entries, vectors = list(entries), vectors.copy()
    picked = rng.choice(len(entries), change + remove, replace=False)  # changed and removed: disjoint
    for i in picked[:change].tolist():
        entries[i] = dataclasses.replace(entries[i], text=entries[i].text + " (revised)")
        vectors[i] = near(vectors[i], 0.9, rng)
    keep = np.setdiff1d(np.arange(len(entries)), picked[change:])
    entries, vectors = [entries[i] for i in keep.tolist()], vectors[keep]
    start = 10**6 + int(rng.integers(10**6))
    new = [entry(start + j, entries[j].group, HEAD_TOPICS[j % 3], SENTIMENTS[j % 3]) for j in range(add)]
    added = [near(vectors[k], 0.9, rng) for k in rng.integers(0, len(vectors), add).tolist()]
    return entries + new, np.concatenate([vectors, np.array(added, dtype=np.float32).reshape(-1, DIM)])


def _clustered(n: int, group: str, rng: np.random.Generator) -> tuple[list[KBEntry], np.ndarray]:
    centres = rand_unit(rng, 20)
    vectors = unit(centres[rng.integers(0, 20, n)] + 0.5 * rng.standard_normal((n, DIM)) / np.sqrt(DIM))
    return [entry(i, group, HEAD_TOPICS[i % 3], SENTIMENTS[i % 3]) for i in range(n)], vectors


def _ids(results: list) -> list[list[str]]:
    return [[e["id"] for e in r.evidence] for r in results]


def test_incremental_build_equals_a_full_build_on_exact_groups() -> None:
    rng = np.random.default_rng(11)
    entries = [
        entry(i, ("fx", "rates", "equities")[i % 3], HEAD_TOPICS[i % 3], SENTIMENTS[i % 3])
        for i in range(300)
    ]
    vectors = rand_unit(rng, 300)
    v1 = make_index(entries, vectors)
    entries2, vectors2 = _reload(entries, vectors, change=30, remove=20, add=25, rng=rng)
    snapshot = KBSnapshot(version=8, entries=tuple(entries2), published_at="2024-01-02T00:00:00Z", author="t")
    full = KnowledgeIndex.build(snapshot, vectors2, HEAD_TOPICS, SENTIMENTS)
    incremental = KnowledgeIndex.build(snapshot, vectors2, HEAD_TOPICS, SENTIMENTS, previous=v1)
    assert incremental.version == full.version == 8
    h = np.concatenate([vectors2[rng.choice(len(vectors2), 24)], rand_unit(rng, 8)])
    h = unit(h + 0.1 * rng.standard_normal(h.shape) / np.sqrt(DIM))
    s, t = head_logits(len(h))
    fuse = fusion(top_m=6, top_groups=2)
    a, b = fuse.fuse(h, s, t, full), fuse.fuse(h, s, t, incremental)
    assert _ids(a) == _ids(b)
    assert [r.sentiment for r in a] == [r.sentiment for r in b]
    assert [r.topics for r in a] == [r.topics for r in b]


def test_incremental_build_keeps_the_lists_of_a_large_group() -> None:
    rng = np.random.default_rng(12)
    entries, vectors = _clustered(2000, "equities", rng)
    kw = {"ivf_min_points": 500, "list_size": 100}
    v1 = make_index(entries, vectors, **kw)
    assert v1.refit_groups == ("equities",) and v1.kept_groups == ()
    entries2, vectors2 = _reload(entries, vectors, change=40, remove=40, add=40, rng=rng)
    snapshot = KBSnapshot(version=8, entries=tuple(entries2), published_at="2024-01-02T00:00:00Z", author="t")
    incremental = KnowledgeIndex.build(snapshot, vectors2, HEAD_TOPICS, SENTIMENTS, previous=v1, **kw)
    full = KnowledgeIndex.build(snapshot, vectors2, HEAD_TOPICS, SENTIMENTS, **kw)
    assert incremental.kept_groups == ("equities",) and incremental.refit_groups == ()
    assert incremental.version == 8
    # Unchanged points stay in their list; every point is in exactly one list.
    old_pos = v1.positions_of([e.content_hash for e in entries2])
    same = old_pos >= 0
    assert same.sum() == 2000 - 40 - 40  # changed and removed points are gone, new ones are new
    assert (incremental.point_cluster[same] == v1.point_cluster[old_pos[same]]).all()
    assert sorted(incremental.list_point_flat.tolist()) == list(range(len(entries2)))
    np.testing.assert_array_equal(incremental.vectors_at(np.arange(len(entries2))), vectors2)
    # Scoring every list of the group gives the full build's results exactly.
    h = np.concatenate([vectors2[rng.choice(len(vectors2), 32)], rand_unit(rng, 8)])
    s, t = head_logits(len(h))
    exact = Fusion(FusionParams(), HEAD_TOPICS, SENTIMENTS, top_m=4, top_groups=1, nprobe=10**6)
    assert _ids(exact.fuse(h, s, t, incremental)) == _ids(exact.fuse(h, s, t, full))
    # Probing 2 lists: new points are found, removed and replaced ones are never returned.
    probed = Fusion(FusionParams(), HEAD_TOPICS, SENTIMENTS, top_m=4, top_groups=1, nprobe=2)
    gone = {e.id for e in entries} - {e.id for e in entries2}
    changed_old = {(e.id, e.text) for e in entries} - {(e.id, e.text) for e in entries2}
    targets = list(range(len(entries2) - 40, len(entries2)))  # the added points
    q = np.stack([near(vectors2[i], 0.98, rng) for i in targets])
    results = probed.fuse(q, *head_logits(len(q)), incremental)
    assert [r.evidence[0]["id"] for r in results] == [entries2[i].id for i in targets]
    old_q = np.stack([near(vectors[i], 0.99, rng) for i in range(0, 2000, 7)])
    for r in probed.fuse(old_q, *head_logits(len(old_q)), incremental):
        assert not {e["id"] for e in r.evidence} & gone
        assert not {(e["id"], e["text"]) for e in r.evidence} & changed_old


def test_lists_are_fitted_again_once_the_group_drifted() -> None:
    rng = np.random.default_rng(13)
    entries, vectors = _clustered(2000, "equities", rng)
    kw = {"ivf_min_points": 500, "list_size": 100}
    index = make_index(entries, vectors, **kw)
    # 3 reloads of 30 removed + 30 added (3% each): kept twice, then past 10% of the fitted 2000 points.
    kept = []
    for version in (8, 9, 10, 11):
        entries, vectors = _reload(entries, vectors, change=0, remove=30, add=30, rng=rng)
        snapshot = KBSnapshot(version=version, entries=tuple(entries), published_at="x", author="t")
        index = KnowledgeIndex.build(snapshot, vectors, HEAD_TOPICS, SENTIMENTS, previous=index, **kw)
        kept.append(index.kept_groups == ("equities",))
    assert kept == [True, True, True, False]  # 60, 120, 180 changed of 2000 kept; 240 > 200 refits
    assert index.list_fits["equities"].changed_points == 0
    # A list that doubles refits at once: 150 new points all next to one existing point.
    far = vectors[0]
    crowd = np.stack([near(far, 0.999, rng) for _ in range(400)])
    new = [entry(5 * 10**6 + j, "equities", "Macro", "neutral") for j in range(400)]
    entries2 = entries[:-150] + new[:150]
    vectors2 = np.concatenate([vectors[:-150], crowd[:150]])
    snapshot = KBSnapshot(version=12, entries=tuple(entries2), published_at="x", author="t")
    grown = KnowledgeIndex.build(snapshot, vectors2, HEAD_TOPICS, SENTIMENTS, previous=index, **kw)
    assert grown.refit_groups == ("equities",)


def test_a_point_whose_vector_changed_is_not_taken_from_the_previous_index() -> None:
    rng = np.random.default_rng(14)
    entries, vectors = _clustered(600, "equities", rng)
    kw = {"ivf_min_points": 500, "list_size": 100}
    v1 = make_index(entries, vectors, **kw)
    vectors2 = vectors.copy()
    vectors2[:5] = rand_unit(rng, 5)  # same content hash, other vectors (e.g. another model)
    snapshot = KBSnapshot(version=8, entries=tuple(entries), published_at="x", author="t")
    v2 = KnowledgeIndex.build(snapshot, vectors2, HEAD_TOPICS, SENTIMENTS, previous=v1, **kw)
    assert v2.kept_groups == ("equities",)
    expected = np.argmax(vectors2[:5] @ v1.list_fits["equities"].centroids.T, axis=1)
    np.testing.assert_array_equal(v2.point_cluster[:5], expected)
    np.testing.assert_array_equal(v2.vectors_at(np.arange(600)), vectors2)


# --- reduced scoring of large groups (PCA shortlist, exact rescoring) ---------------------------------


def test_reduced_scoring_rescores_the_shortlist_exactly() -> None:
    rng = np.random.default_rng(15)
    entries, vectors = _clustered(2000, "equities", rng)
    entries = [dataclasses.replace(e, weight=float(1 + i % 3)) for i, e in enumerate(entries)]
    kw = {"ivf_min_points": 500, "list_size": 100}
    reduced = make_index(entries, vectors, reduced_dim=20, **kw)
    plain = make_index(entries, vectors, reduced_dim=0, **kw)
    assert reduced.reduced_dim == 20 and plain.reduced_dim == 0
    assert reduced.list_reduced[0].shape[1] == 20 + 1 + 3  # projection, log weight, one-hot kind
    targets = rng.choice(2000, 32, replace=False)
    h = np.stack([near(vectors[t], 0.97, rng) for t in targets])
    s, t = head_logits(len(h))
    # A shortlist as long as every candidate: the same points, attention and cosines as exact scoring.
    wide = Fusion(FusionParams(), HEAD_TOPICS, SENTIMENTS, top_m=4, top_groups=1, nprobe=2, shortlist=10**4)
    exact = Fusion(FusionParams(), HEAD_TOPICS, SENTIMENTS, top_m=4, top_groups=1, nprobe=2)
    a, b = wide.read(h, reduced), exact.read(h, plain)
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_allclose(a.attention, b.attention, atol=1e-5)
    np.testing.assert_allclose(a.cosine, b.cosine, atol=1e-5)
    # A short shortlist (projection 20 of 32 dims) mostly agrees; what it returns carries exact cosines.
    short = Fusion(FusionParams(), HEAD_TOPICS, SENTIMENTS, top_m=4, top_groups=1, nprobe=2, shortlist=16)
    r = short.read(h, reduced)
    assert (r.points[:, 0] == b.points[:, 0]).mean() >= 0.9
    assert (r.points >= 0).all()
    np.testing.assert_allclose(r.cosine, np.einsum("bd,bkd->bk", h, vectors[r.points]), atol=1e-5)


def test_small_groups_are_scored_exactly_without_a_projection() -> None:
    rng = np.random.default_rng(16)
    entries = [entry(i, "fx", HEAD_TOPICS[i % 3], SENTIMENTS[i % 3]) for i in range(300)]
    index = make_index(entries, rand_unit(rng, 300), reduced_dim=8)
    assert index.reduced_dim == 0 and index.list_reduced == ()


def test_incremental_build_keeps_the_projection_and_copies_unchanged_rows() -> None:
    rng = np.random.default_rng(17)
    entries, vectors = _clustered(2000, "equities", rng)
    entries = [dataclasses.replace(e, weight=float(1 + i % 3)) for i, e in enumerate(entries)]
    kw = {"ivf_min_points": 500, "list_size": 100, "reduced_dim": 20}
    v1 = make_index(entries, vectors, **kw)
    entries2, vectors2 = _reload(entries, vectors, change=30, remove=30, add=30, rng=rng)
    snapshot = KBSnapshot(version=8, entries=tuple(entries2), published_at="x", author="t")
    v2 = KnowledgeIndex.build(snapshot, vectors2, HEAD_TOPICS, SENTIMENTS, previous=v1, **kw)
    assert v2.kept_groups == ("equities",) and v2.reduce_proj is v1.reduce_proj
    order = v2.list_point_flat
    expected = np.zeros_like(v2.sorted_reduced)
    expected[:, :20] = vectors2[order] @ v2.reduce_proj
    expected[:, 20] = np.log([entries2[p].weight for p in order])
    expected[np.arange(len(order)), 21] = 1.0  # every point is an exemplar
    np.testing.assert_allclose(v2.sorted_reduced, expected, atol=1e-5)
    for rows, lst in zip(v2.list_reduced, v2.list_points, strict=True):
        np.testing.assert_allclose(rows[:, :20], vectors2[lst] @ v2.reduce_proj, atol=1e-5)


def test_a_kb_of_small_groups_is_scored_exactly_whatever_nprobe() -> None:
    rng = np.random.default_rng(18)
    groups = ("fx", "rates", "equities", "credit")
    entries = [entry(i, groups[i % 4], HEAD_TOPICS[i % 3], SENTIMENTS[i % 3]) for i in range(400)]
    index = make_index(entries, rand_unit(rng, 400))
    h = rand_unit(rng, 16)
    s, t = head_logits(16)
    one = Fusion(FusionParams(), HEAD_TOPICS, SENTIMENTS, top_m=6, top_groups=3, nprobe=1)
    every = Fusion(FusionParams(), HEAD_TOPICS, SENTIMENTS, top_m=6, top_groups=3, nprobe=10**6)
    assert _ids(one.fuse(h, s, t, index)) == _ids(every.fuse(h, s, t, index))
