"""KB fusion: the message embedding attends over expert knowledge points, a gate mixes the read-out in.

Pure numpy (no torch) and vectorised over the batch; the only Python loops run over expert groups and,
when results are assembled, over messages.

For a message with L2-normalised embedding h and head logits (sentiment, topic):

1. **Routing** (sparse, mixture-of-experts style). Each expert group has a few router centroids (its points
   themselves when it is small, spherical k-means centroids when it is large); a group's score is
   max_j cos(h, c_gj) and the top ``top_groups`` groups are routed. Only their points are scored, so the cost
   grows with the routed groups, not with the whole KB.
2. **Attention** over the top ``top_m`` points of the routed groups (one matmul per group + argpartition):
   ``s_i = cos(h, k_i) / T + log w_i + kind_bias[kind_i]``, ``alpha = softmax(s)``. The attention compares h
   with k (DESIGN.md explains why the concatenation form cannot); the point weight w_i enters as a prior.
   Large groups are searched through inverted lists, scored in a PCA projection with an exact float32
   rescoring of a shortlist (``KnowledgeIndex``, docs/INTERNALS.md "KB and fusion").
3. **Read-out** per task: ``y_task = sum_i alpha_i v_i / sum_i alpha_i`` over the attended points that carry
   a label for the task (v_i: one-hot of the point's sentiment / topic). Topics of the KB that the head has
   never seen extend the topic label set; the head's probability for them is 0.
4. **Gate** per task: ``g = sigmoid(b + w . f)`` on read-out features ``f`` (``GATE_FEATURES``: best cosine of
   a labelled attended point and its near-duplicate excess over 0.85, read-out confidence, head confidence,
   head/KB agreement, read-out mass on KB-only labels, head energy = logsumexp of the head logits, low
   when the message is unlike every class the head knows); ``p = (1 - g) softmax(head) + g y_task``.
   No labelled point attended => g = 0.

Zero-shot defaults (no fusion.json): T = 0.05 and a gate that is 0.5 at cosine 0.85, so a near-duplicate
exemplar (cosine > 0.9) dominates and weak matches (cosine < 0.75) barely move the head.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from kb_sync.model import ENTRY_KINDS, KBEntry, KBSnapshot

FUSION_FILE = "fusion.json"
FUSION_FORMAT = "finsignal-fusion/1"
TASKS: tuple[str, ...] = ("sentiment", "topic")
GATE_FEATURES: tuple[str, ...] = (
    "max_sim",
    "near_dup",
    "kb_conf",
    "head_conf",
    "agree",
    "kb_only",
    "head_energy",
)
NEAR_DUP_FROM = 0.85  # near_dup feature = max(0, max_sim - 0.85) / 0.15: 0 below, 1 at an exact duplicate
DEFAULT_MAX_CENTROIDS = 64  # router centroids per (small) group: bounds routing cost per message
DEFAULT_IVF_MIN_POINTS = 4096  # groups at least this large are searched through inverted lists
DEFAULT_LIST_SIZE = 256  # target points per inverted list
DEFAULT_NPROBE = 5  # inverted lists scored per message, the best over its routed groups
# BLAS threads while fusing: its matmuls are small (a few rows x a few hundred points), so threads only
# add hand-offs; on 2 shared cores OpenBLAS's spinning threads made a batch ~7x slower (docs/INTERNALS.md).
FUSION_BLAS_THREADS = 1
SLOT_WIDTH = 512  # candidates kept per (message, probed list) before the overall top-m
KMEANS_SAMPLE_PER_CENTROID = 32  # rows per centroid that k-means fits on (all rows are then assigned)
# Incremental reload of a large group: its lists keep the previous centroids and only new or changed points
# are assigned, until the group drifts: more than this share of its points changed since the lists were
# fitted, or a list grew past REFIT_LIST_GROWTH x list_size. Then its lists are fitted again.
REFIT_CHANGED_SHARE = 0.10
REFIT_LIST_GROWTH = 2.0  # ... of max(list_size, the list's size when fitted)
# Large KBs: candidates inside the probed lists are scored in a PCA projection of the KB vectors (fewer
# bytes per point, which is what a probe costs), then the best SHORTLIST per message are scored again
# exactly in float32 before the top-m; every attention, cosine and gate input is exact.
DEFAULT_REDUCED_DIM = 128
DEFAULT_SHORTLIST = 32
PCA_SAMPLE = 8192  # evenly spaced rows the projection is fitted on
UNIT_NORM_TOLERANCE = 1e-5  # rows this close to unit length are kept as given (a rebuild is bit-exact)


class FusionError(ValueError):
    """Fusion parameters or KB index inputs are inconsistent; the message names the field."""


@dataclass(frozen=True)
class GateParams:
    """g = sigmoid(bias + sum_f weights[f] * feature_f); features not named weigh 0."""

    bias: float
    weights: Mapping[str, float]

    def vector(self) -> np.ndarray:
        return np.array([float(self.weights.get(name, 0.0)) for name in GATE_FEATURES], dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"bias": self.bias, "weights": {k: float(v) for k, v in self.weights.items()}}


def _zero_shot_gate() -> GateParams:
    # 0.5 at cosine 0.85, 0.82 at 0.9, 0.05 at 0.75: only near-duplicates override the head.
    return GateParams(bias=-25.5, weights={"max_sim": 30.0})


@dataclass(frozen=True)
class FusionParams:
    """Learned fusion scalars; the defaults are the zero-shot setting used when no fusion.json exists."""

    temperature: float = 0.05
    kind_bias: Mapping[str, float] = field(default_factory=dict)
    gates: Mapping[str, GateParams] = field(
        default_factory=lambda: {task: _zero_shot_gate() for task in TASKS}
    )
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not (self.temperature > 0 and np.isfinite(self.temperature)):
            raise FusionError(f"fusion temperature must be > 0, got {self.temperature}")
        unknown = set(self.kind_bias) - set(ENTRY_KINDS)
        if unknown:
            raise FusionError(f"fusion kind_bias: unknown kinds {sorted(unknown)} (known: {ENTRY_KINDS})")
        for task in TASKS:
            if task not in self.gates:
                raise FusionError(f"fusion gates: missing the {task!r} gate")
            bad = set(self.gates[task].weights) - set(GATE_FEATURES)
            if bad:
                raise FusionError(f"fusion gates.{task}: unknown features {sorted(bad)} ({GATE_FEATURES})")

    @classmethod
    def load(cls, model_dir: Path) -> FusionParams:
        """``model_dir/fusion.json`` when present, else the zero-shot defaults."""
        path = Path(model_dir) / FUSION_FILE
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FusionError(f"{path} is not readable JSON: {exc}") from exc
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "fusion params") -> FusionParams:
        if data.get("format") != FUSION_FORMAT:
            raise FusionError(f"{source}: format must be {FUSION_FORMAT!r}, got {data.get('format')!r}")
        try:
            gates = {
                task: GateParams(float(g["bias"]), {k: float(v) for k, v in g.get("weights", {}).items()})
                for task, g in data["gates"].items()
            }
            return cls(
                temperature=float(data["temperature"]),
                kind_bias={k: float(v) for k, v in data.get("kind_bias", {}).items()},
                gates=gates,
                meta=dict(data.get("meta", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, FusionError):
                raise
            raise FusionError(f"{source}: malformed fusion parameters ({exc!r})") from exc

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FUSION_FORMAT,
            "temperature": self.temperature,
            "kind_bias": dict(self.kind_bias),
            "gates": {task: self.gates[task].to_dict() for task in TASKS},
            "meta": dict(self.meta),
        }

    def save(self, model_dir: Path) -> Path:
        path = Path(model_dir) / FUSION_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


@dataclass(frozen=True)
class ListFit:
    """The inverted lists of one large group: their centroids and how far the group drifted since."""

    centroids: np.ndarray  # (k, d) unit rows; list c of the group = the points assigned to centroid c
    fitted_points: int  # group size when the centroids were fitted
    changed_points: int  # points added or removed since then (reloads that kept the centroids)
    fitted_counts: np.ndarray  # (k,) list sizes when fitted: a list may grow to REFIT_LIST_GROWTH x this


class KnowledgeIndex:
    """Immutable search structure over one KB snapshot; built off the hot path, swapped between batches.

    Points are stored in one contiguous float32 matrix per expert group; ``point_*`` arrays are indexed by
    the position in ``entries`` (the snapshot order).
    """

    version: int
    size: int
    groups: tuple[str, ...]
    topics: tuple[str, ...]  # head topics, then KB-only topics (sorted)
    sentiments: tuple[str, ...]
    n_head_topics: int
    entries: tuple[KBEntry, ...]
    dim: int

    def __init__(self) -> None:  # use build()
        self._evidence: dict[int, dict[str, Any]] = {}  # point -> its evidence fields but attention
        self.group_vectors: tuple[np.ndarray, ...] = ()  # per group: (n_g, d), rows sorted by list
        self.group_points: tuple[np.ndarray, ...] = ()  # per group: row -> position in entries
        self.router_centroids = np.zeros((0, 0), dtype=np.float32)
        self.router_starts = np.zeros(0, dtype=np.int64)  # first centroid row of each group
        # Inverted lists: a small group is one list (scored exactly); a large one is split into k-means
        # lists (its router centroids) and only the best ``nprobe`` lists over the routed groups are scored.
        self.list_group = np.zeros(0, dtype=np.int64)
        self.list_bounds = np.zeros((0, 2), dtype=np.int64)  # [start, end) rows in the group matrix
        self.list_centroid = np.zeros(0, dtype=np.int64)  # router centroid column; -1: use group score
        self.list_vectors: tuple[np.ndarray, ...] = ()  # views into the group matrices
        self.list_points: tuple[np.ndarray, ...] = ()  # list row -> position in entries
        self.max_list_len = 0
        self.list_point_flat = np.zeros(0, dtype=np.int64)  # list_points concatenated
        self.list_offset = np.zeros(0, dtype=np.int64)  # start of each list in list_point_flat
        self.point_log_weight = np.zeros(0, dtype=np.float32)
        self.point_kind = np.zeros(0, dtype=np.int64)
        self.point_topic = np.zeros(0, dtype=np.int64)  # -1: no topic
        self.point_sentiment = np.zeros(0, dtype=np.int64)  # -1: no sentiment
        self.point_group = np.zeros(0, dtype=np.int64)  # group position of each point
        self.point_row = np.zeros(0, dtype=np.int64)  # row of each point in its group matrix
        self.point_cluster = np.zeros(0, dtype=np.int64)  # list centroid within its large group; -1: small
        self.list_fits: dict[str, ListFit] = {}  # large groups' lists, reused by the next reload
        self.refit_groups: tuple[str, ...] = ()  # large groups whose lists this build fitted
        self.kept_groups: tuple[str, ...] = ()  # large groups whose lists came from the previous index
        self._hash_pos: dict[str, int] | None = None  # content hash -> position, built on first use
        self.sorted_vectors = np.zeros((0, 0), dtype=np.float32)  # (N, d): group_vectors are its views
        self.point_sorted_row = np.zeros(0, dtype=np.int64)  # row of each point in sorted_vectors
        # Reduced scoring (only when a group is split into lists), see _add_reduced.
        self.reduced_dim = 0
        self.reduce_proj = np.zeros((0, 0), dtype=np.float32)  # (d, r) top principal directions
        self.sorted_reduced = np.zeros((0, 0), dtype=np.float32)  # (N, r + 1 + kinds), rows as sorted
        self.list_reduced: tuple[np.ndarray, ...] = ()  # per list: its rows of sorted_reduced

    @classmethod
    def build(
        cls,
        snapshot: KBSnapshot,
        embeddings: np.ndarray,
        head_topics: Sequence[str],
        sentiments: Sequence[str],
        max_centroids: int = DEFAULT_MAX_CENTROIDS,
        ivf_min_points: int = DEFAULT_IVF_MIN_POINTS,
        list_size: int = DEFAULT_LIST_SIZE,
        previous: KnowledgeIndex | None = None,
        previous_positions: np.ndarray | None = None,
        reduced_dim: int = DEFAULT_REDUCED_DIM,
    ) -> KnowledgeIndex:
        """``embeddings``: (len(snapshot), d) float32, L2-normalised, row i = snapshot.entries[i].

        Groups with fewer than ``ivf_min_points`` points are scored exactly; larger ones are split into
        inverted lists of about ``list_size`` points (so the per-message cost stops growing with the KB).
        With ``previous`` (the index being replaced), a large group keeps its list centroids: points with
        the same content hash and the same vector keep their list, only the others are assigned, unless
        the group drifted (``REFIT_CHANGED_SHARE``, ``REFIT_LIST_GROWTH``) and its lists are fitted again.
        ``previous_positions`` (optional, the caller's word): row i of ``embeddings`` was copied from point
        ``previous_positions[i]`` of ``previous`` (-1: it was not); without it, points are matched by
        content hash and compared vector by vector. When a group is split into lists and ``reduced_dim``
        is below d, lists also hold a ``reduced_dim`` PCA projection of their rows (``Fusion.read``).
        """
        entries = tuple(snapshot.entries)
        vectors = np.asarray(embeddings, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(entries):
            raise FusionError(
                f"KB embeddings must be (len(snapshot)={len(entries)}, d), got shape {vectors.shape}"
            )
        sq = np.einsum("ij,ij->i", vectors, vectors)
        if not np.isfinite(sq).all():
            if not np.isfinite(vectors).all():
                raise FusionError("KB embeddings hold non-finite values (re-embed the KB points)")
            sq = np.einsum("ij,ij->i", vectors.astype(np.float64), vectors.astype(np.float64))
        # Cosine needs unit rows (cheap insurance); rows already unit are kept bit-exact (no copy when all
        # are), so a point's vector taken from the previous index stays equal to it.
        norms = np.sqrt(sq)
        off = np.abs(norms - 1.0) > UNIT_NORM_TOLERANCE
        if off.any():
            scale = np.where(off, 1.0 / np.maximum(norms, 1e-12), 1.0).astype(np.float32)
            vectors = vectors * scale[:, None]
        if previous is None or not previous.size or previous.dim != vectors.shape[1]:
            prev_pos = None
        elif previous_positions is not None:
            prev_pos = np.asarray(previous_positions, dtype=np.int64)
            if prev_pos.shape != (len(entries),):
                raise FusionError(f"previous_positions must have one row per entry, got {prev_pos.shape}")
        else:
            prev_pos = _previous_positions(previous, entries, vectors)

        self = cls()
        self.version = snapshot.version
        self.size = len(entries)
        self.entries = entries
        self.dim = int(vectors.shape[1])
        self.sentiments = tuple(sentiments)
        self.n_head_topics = len(head_topics)
        head_set = set(head_topics)
        kb_only = sorted({e.topic for e in entries if e.topic and e.topic not in head_set})
        self.topics = tuple(head_topics) + tuple(kb_only)
        topic_pos = {t: i for i, t in enumerate(self.topics)}
        sentiment_pos = {s: i for i, s in enumerate(self.sentiments)}
        kind_pos = {k: i for i, k in enumerate(ENTRY_KINDS)}
        unknown = {e.sentiment for e in entries if e.sentiment and e.sentiment not in sentiment_pos}
        if unknown:
            raise FusionError(f"KB sentiments {sorted(unknown)} are not model labels {self.sentiments}")

        self.point_log_weight = np.log(np.array([e.weight for e in entries], dtype=np.float32))
        self.point_kind = np.array([kind_pos.get(e.kind, 0) for e in entries], dtype=np.int64)
        self.point_topic = np.array([topic_pos[e.topic] if e.topic else -1 for e in entries], dtype=np.int64)
        self.point_sentiment = np.array(
            [sentiment_pos[e.sentiment] if e.sentiment else -1 for e in entries], dtype=np.int64
        )

        self.groups = tuple(sorted({e.group for e in entries}))
        group_pos = {g: i for i, g in enumerate(self.groups)}
        group_of = np.fromiter((group_pos[e.group] for e in entries), dtype=np.int64, count=len(entries))
        group_vectors, group_points, centroids, starts = [], [], [], []
        list_group: list[int] = []
        list_bounds: list[tuple[int, int]] = []
        list_centroid: list[int] = []
        self.point_group = group_of
        self.point_row = np.zeros(len(entries), dtype=np.int64)
        self.point_cluster = np.full(len(entries), -1, dtype=np.int64)
        refit: list[str] = []
        kept: list[str] = []
        n_centroids = 0
        for g, name in enumerate(self.groups):
            points = np.flatnonzero(group_of == g)
            if len(points) >= ivf_min_points:
                fit, assign, reused = _fit_lists(name, points, vectors, list_size, previous, prev_pos)
                (kept if reused else refit).append(name)
                self.list_fits[name] = fit
                cent = fit.centroids
                self.point_cluster[points] = assign
                points = points[np.argsort(assign, kind="stable")]  # rows sorted by list
                counts = np.bincount(assign, minlength=len(cent))
                ends = np.cumsum(counts)
                for c in np.flatnonzero(counts).tolist():
                    list_group.append(g)
                    list_bounds.append((int(ends[c] - counts[c]), int(ends[c])))
                    list_centroid.append(n_centroids + c)
            else:
                cent = (
                    vectors[points]
                    if len(points) <= max_centroids
                    else _spherical_kmeans(vectors[points], max_centroids)[0]
                )
                list_group.append(g)
                list_bounds.append((0, len(points)))
                list_centroid.append(-1)
            self.point_row[points] = np.arange(len(points))
            group_points.append(points)
            starts.append(n_centroids)
            n_centroids += len(cent)
            centroids.append(cent)
        self.refit_groups, self.kept_groups = tuple(refit), tuple(kept)
        # All vectors in one matrix, group after group, each group's rows sorted by list (one gather).
        sorted_points = np.concatenate(group_points) if group_points else np.zeros(0, np.int64)
        self.sorted_vectors = np.ascontiguousarray(vectors[sorted_points])
        self.point_sorted_row = np.empty(len(entries), dtype=np.int64)
        self.point_sorted_row[sorted_points] = np.arange(len(entries))
        group_start = np.concatenate([[0], np.cumsum([len(p) for p in group_points])]).astype(np.int64)
        group_vectors = [
            self.sorted_vectors[group_start[g] : group_start[g + 1]] for g in range(len(group_points))
        ]
        self.group_vectors = tuple(group_vectors)
        self.group_points = tuple(group_points)
        if centroids:
            self.router_centroids = np.ascontiguousarray(np.concatenate(centroids), dtype=np.float32)
        self.list_group = np.array(list_group, dtype=np.int64)
        self.list_bounds = np.array(list_bounds, dtype=np.int64).reshape(-1, 2)
        self.list_centroid = np.array(list_centroid, dtype=np.int64)
        self.list_vectors = tuple(
            group_vectors[g][lo:hi] for g, (lo, hi) in zip(list_group, list_bounds, strict=True)
        )
        self.list_points = tuple(
            group_points[g][lo:hi] for g, (lo, hi) in zip(list_group, list_bounds, strict=True)
        )
        self.router_starts = np.array(starts, dtype=np.int64)
        lengths = self.list_bounds[:, 1] - self.list_bounds[:, 0]
        self.max_list_len = int(lengths.max(initial=0))
        self.list_offset = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        self.list_point_flat = (
            np.concatenate(self.list_points).astype(np.int64) if self.list_points else np.zeros(0, np.int64)
        )
        if self.list_fits and 0 < reduced_dim < self.dim:
            # The projection is kept while the lists are (rows of unchanged points are copied).
            keep_proj = previous is not None and prev_pos is not None and not refit
            self._add_reduced(reduced_dim, group_start, previous if keep_proj else None, prev_pos)
        return self

    def _add_reduced(
        self,
        dim: int,
        group_start: np.ndarray,
        previous: KnowledgeIndex | None,
        prev_pos: np.ndarray | None,
    ) -> None:
        """Per list, rows [proj^T v, log w, one-hot kind]: a query row [proj^T h / T, 1, kind_bias]
        scores a point as its logit up to a per-message constant (which does not change the shortlist).
        With ``previous`` (same projection size), its projection is kept and the rows of points it holds
        (same content hash, so same weight and kind, and same vector) are copied, not computed."""
        n_kinds = len(ENTRY_KINDS)
        order = self.list_point_flat  # entries position of each sorted row
        reduced = np.empty((self.size, dim + 1 + n_kinds), dtype=np.float32)
        fresh = np.arange(self.size)
        if previous is not None and prev_pos is not None and previous.reduced_dim == dim:
            self.reduce_proj = previous.reduce_proj
            before = prev_pos[order]
            held = np.flatnonzero(before >= 0)
            reduced[held] = previous.sorted_reduced[previous.point_sorted_row[before[held]]]
            fresh = np.flatnonzero(before < 0)
        else:
            self.reduce_proj = _pca(self.sorted_vectors, dim)
        self.reduced_dim = dim
        reduced[fresh, :dim] = self.sorted_vectors[fresh] @ self.reduce_proj
        reduced[fresh, dim:] = 0.0
        reduced[fresh, dim] = self.point_log_weight[order[fresh]]
        reduced[fresh, dim + 1 + self.point_kind[order[fresh]]] = 1.0
        self.sorted_reduced = reduced
        self.list_reduced = tuple(
            reduced[group_start[g] + lo : group_start[g] + hi]
            for g, (lo, hi) in zip(self.list_group.tolist(), self.list_bounds.tolist(), strict=True)
        )

    @classmethod
    def empty(cls, head_topics: Sequence[str], sentiments: Sequence[str], dim: int = 0) -> KnowledgeIndex:
        snapshot = KBSnapshot(version=0, entries=(), published_at="", author="")
        return cls.build(snapshot, np.zeros((0, dim), dtype=np.float32), head_topics, sentiments)

    def positions_of(self, content_hashes: Sequence[str]) -> np.ndarray:
        """Position in ``entries`` of a point with each content hash; -1 where there is none."""
        if self._hash_pos is None:
            self._hash_pos = {e.content_hash: i for i, e in enumerate(self.entries)}
        pos, n = self._hash_pos, len(content_hashes)
        return np.fromiter((pos.get(h, -1) for h in content_hashes), dtype=np.int64, count=n)

    def vectors_at(self, positions: np.ndarray) -> np.ndarray:
        """(len(positions), d) float32: the unit vectors of the points at ``positions`` (entries order)."""
        return self.sorted_vectors[self.point_sorted_row[np.asarray(positions, dtype=np.int64)]]

    def evidence_items(self, points: list[int], attention: list[float]) -> list[dict[str, Any]]:
        """The signal.v1 evidence items of one message's top points (``-1``: no point in that slot)."""
        cache = self._evidence
        items = []
        for point, weight in zip(points, attention, strict=True):
            if point < 0:
                continue
            static = cache.get(point) or self._build_static_evidence(point)
            item = static.copy()  # a copy and one store: cheaper than {**static, ...} per item
            item["attention"] = weight
            items.append(item)
        return items

    def _build_static_evidence(self, point: int) -> dict[str, Any]:
        """A point's evidence fields but attention, built on its first citation and kept in
        ``_evidence`` for the index's life: every signal citing it copies this."""
        e = self.entries[point]
        static = {
            "id": e.id,
            "text": e.text,
            "kind": e.kind,
            "group": e.group,
            "topic": e.topic,
            "sentiment": e.sentiment,
            "weight": e.weight,
        }
        self._evidence[point] = static
        return static


def _pca(vectors: np.ndarray, dim: int) -> np.ndarray:
    """(d, dim): the top principal directions of evenly spaced rows (of their centred covariance)."""
    n = len(vectors)
    sample = vectors[np.linspace(0, n - 1, min(n, PCA_SAMPLE)).astype(np.int64)].astype(np.float64)
    centred = sample - sample.mean(axis=0)
    _, eigvecs = np.linalg.eigh(centred.T @ centred)  # ascending eigenvalues
    return np.ascontiguousarray(eigvecs[:, ::-1][:, :dim], dtype=np.float32)


def _previous_positions(
    previous: KnowledgeIndex, entries: Sequence[KBEntry], vectors: np.ndarray
) -> np.ndarray:
    """Per entry, the position of the same point in ``previous`` (same content hash and bit-identical
    vector), else -1."""
    pos = previous.positions_of([e.content_hash for e in entries])
    found = np.flatnonzero(pos >= 0)
    if len(found):
        same = np.all(previous.vectors_at(pos[found]) == vectors[found], axis=1)
        pos[found[~same]] = -1
    return pos


def _fit_lists(
    name: str,
    points: np.ndarray,
    vectors: np.ndarray,
    list_size: int,
    previous: KnowledgeIndex | None,
    prev_pos: np.ndarray | None,
) -> tuple[ListFit, np.ndarray, bool]:
    """Inverted lists of a large group: (fit, list of each row, whether the previous fit was kept).

    The previous index's centroids are kept when it split this group too: its points keep their list and
    only new points are assigned (to the nearest centroid, as a full build assigns every point). The
    lists are fitted again when the group drifted past ``REFIT_CHANGED_SHARE`` or ``REFIT_LIST_GROWTH``.
    """
    old = previous.list_fits.get(name) if previous is not None else None
    if old is not None and previous is not None and prev_pos is not None:
        before = prev_pos[points]
        kept = before >= 0
        assign = np.empty(len(points), dtype=np.int64)
        assign[kept] = previous.point_cluster[before[kept]]
        fresh = np.flatnonzero(~kept)
        if len(fresh):
            assign[fresh] = np.argmax(vectors[points[fresh]] @ old.centroids.T, axis=1)
        prev_size = len(previous.group_points[previous.groups.index(name)])
        removed = prev_size - len(np.unique(before[kept]))
        changed = old.changed_points + len(fresh) + removed
        if (assign >= 0).all() and changed <= REFIT_CHANGED_SHARE * old.fitted_points:
            counts = np.bincount(assign, minlength=len(old.centroids))
            if (counts <= REFIT_LIST_GROWTH * np.maximum(old.fitted_counts, list_size)).all():
                return replace(old, changed_points=changed), assign, True
    cent, assign = _spherical_kmeans(vectors[points], -(-len(points) // list_size))
    return ListFit(cent, len(points), 0, np.bincount(assign, minlength=len(cent))), assign, False


def _spherical_kmeans(
    matrix: np.ndarray, k: int, iterations: int = 8, sample_per_centroid: int = KMEANS_SAMPLE_PER_CENTROID
) -> tuple[np.ndarray, np.ndarray]:
    """Unit centroids and assignments of every row; deterministic (evenly spaced rows).

    Centroids are fitted on at most ``sample_per_centroid * k`` evenly spaced rows, then every row is
    assigned once: an iteration costs O(k^2 d) instead of O(n k d), which keeps a 100,000-point reload
    within seconds (the lists only steer the search; the scoring inside a list stays exact). A cluster
    left empty restarts at the worst-served row, so a group keeps about k lists.
    """
    n = len(matrix)
    fit = matrix
    if n > sample_per_centroid * k:
        fit = matrix[np.linspace(0, n - 1, sample_per_centroid * k).astype(np.int64)]
    cent = fit[np.linspace(0, len(fit) - 1, k).astype(np.int64)].copy()
    for _ in range(iterations):
        sims = fit @ cent.T
        assign = np.argmax(sims, axis=1)
        # Per-cluster sums by sorting once (O(n d)), not a (k, n) one-hot matmul (O(n k d)).
        order = np.argsort(assign, kind="stable")
        counts = np.bincount(assign, minlength=k)
        keep = counts > 0
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[keep]
        sums = np.add.reduceat(fit[order], starts, axis=0)
        cent[keep] = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
        empty = np.flatnonzero(~keep)
        if len(empty):
            worst = np.argsort(sims[np.arange(len(fit)), assign], kind="stable")[: len(empty)]
            cent[empty[: len(worst)]] = fit[worst]
    assign = np.argmax(matrix @ cent.T, axis=1)
    return np.ascontiguousarray(cent, dtype=np.float32), assign


@dataclass(slots=True)
class FusionResult:
    sentiment: dict[str, float]  # {"negative","neutral","positive"} -> probability, sums to 1
    topics: list[tuple[str, float]]  # top 3 over the extended label set, most probable first
    topic_kb_only: bool  # the top topic exists only in the KB
    evidence: list[dict[str, Any]]  # signal.v1 evidence items, highest attention first, <= top_m
    # Weight of the KB read-out in the fused prediction: the larger of the two task gates
    # (p_task = (1 - g_task) * head + g_task * kb); 0 when no KB point was attended.
    gate: float
    routed_groups: list[str]
    gates: dict[str, float] = field(default_factory=dict)  # per task: {"sentiment": g, "topic": g}


@dataclass(slots=True)
class Readout:
    """The KB side of fusion for a batch, before the gate (training reuses it)."""

    points: np.ndarray  # (B, m) positions in index.entries, -1 = none; highest attention first
    attention: np.ndarray  # (B, m) alpha, 0 where no point
    cosine: np.ndarray  # (B, m)
    routed: np.ndarray  # (B, k) group positions, best first
    y: dict[str, np.ndarray]  # task -> (B, C_task) read-out distribution (0 rows where has is False)
    has: dict[str, np.ndarray]  # task -> (B,) a labelled point was attended
    max_sim: dict[str, np.ndarray]  # task -> (B,) best cosine of a labelled attended point (0 if none)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    z = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)


def logsumexp(x: np.ndarray, axis: int = -1) -> np.ndarray:
    top = np.max(x, axis=axis, keepdims=True)
    return (np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True)) + top).squeeze(axis)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


_blas: Any = None  # threadpoolctl's BLAS controllers, found once per process (False: not available)
_blas_lock = threading.Lock()


@contextlib.contextmanager
def blas_threads(limit: int | None) -> Iterator[None]:
    """Limit BLAS threads inside the block (threadpoolctl; a no-op without it or with ``limit=None``).

    The limit is process-wide while it lasts (OpenBLAS has one setting), which is what we want here: the
    classify thread is the only BLAS user on the hot path.
    """
    global _blas
    if limit is None:
        yield
        return
    if _blas is None:
        with _blas_lock:
            if _blas is None:
                try:
                    from threadpoolctl import ThreadpoolController
                except ImportError:
                    _blas = False
                else:
                    _blas = ThreadpoolController().select(user_api="blas")
    if _blas is False:
        yield
        return
    with _blas.limit(limits=limit):
        yield


class Fusion:
    def __init__(
        self,
        params: FusionParams,
        head_topics: Sequence[str],
        sentiments: Sequence[str],
        top_m: int,
        top_groups: int,
        nprobe: int = DEFAULT_NPROBE,
        blas_limit: int | None = FUSION_BLAS_THREADS,
        shortlist: int = DEFAULT_SHORTLIST,
    ) -> None:
        if top_m < 1 or top_groups < 1 or nprobe < 1:
            raise FusionError(f"kb_top_m and kb_top_groups must be >= 1 (got {top_m}, {top_groups})")
        self.params = params
        self.head_topics = tuple(head_topics)
        self.sentiments = tuple(sentiments)
        self.top_m = top_m
        self.top_groups = top_groups
        self.nprobe = nprobe
        self.shortlist = max(shortlist, top_m)
        self.blas_limit = blas_limit
        self._gate_w = {task: params.gates[task].vector() for task in TASKS}
        self._gate_b = {task: float(params.gates[task].bias) for task in TASKS}
        kinds = np.zeros(len(ENTRY_KINDS), dtype=np.float32)
        for i, kind in enumerate(ENTRY_KINDS):
            kinds[i] = params.kind_bias.get(kind, 0.0)
        self._kind_bias = kinds
        self._bias_for: tuple[KnowledgeIndex, tuple[np.ndarray, ...]] | None = None  # last index seen

    # --- public -------------------------------------------------------------------------------
    def fuse(
        self,
        embedding: np.ndarray,
        sentiment_logits: np.ndarray,
        topic_logits: np.ndarray,
        index: KnowledgeIndex | None,
    ) -> list[FusionResult]:
        probs, gates, readout, index = self.fuse_arrays(embedding, sentiment_logits, topic_logits, index)
        return self._results(probs, gates, readout, index)

    def fuse_arrays(
        self,
        embedding: np.ndarray,
        sentiment_logits: np.ndarray,
        topic_logits: np.ndarray,
        index: KnowledgeIndex | None,
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], Readout | None, KnowledgeIndex | None]:
        """Fused probabilities per task ((B, C) arrays, topic over ``index.topics``), gates, read-out."""
        logits = {
            "sentiment": np.asarray(sentiment_logits, dtype=np.float32),
            "topic": np.asarray(topic_logits, dtype=np.float32),
        }
        head = {task: softmax(logits[task]) for task in TASKS}
        if head["topic"].shape[1] != len(self.head_topics):
            raise FusionError(
                f"topic_logits has {head['topic'].shape[1]} columns, "
                f"the head has {len(self.head_topics)} topics"
            )
        batch = head["sentiment"].shape[0]
        if index is None or index.size == 0 or batch == 0:
            return head, {t: np.zeros(batch, dtype=np.float32) for t in TASKS}, None, None
        if index.topics[: index.n_head_topics] != self.head_topics:
            raise FusionError("KB index was built for other head topics; rebuild it with the model's labels")
        with blas_threads(self.blas_limit):
            readout = self.read(embedding, index)
        extra = len(index.topics) - index.n_head_topics
        if extra:
            head["topic"] = np.pad(head["topic"], ((0, 0), (0, extra)))
        energy = {task: logsumexp(logits[task]) for task in TASKS}
        probs, gates = self.mix(head, readout, index.n_head_topics, energy)
        return probs, gates, readout, index

    def read(self, embedding: np.ndarray, index: KnowledgeIndex) -> Readout:
        """Routing, top-m attention and per-task read-out for a batch (no gate)."""
        h = np.ascontiguousarray(embedding, dtype=np.float32)
        if h.ndim != 2 or h.shape[1] != index.dim:
            raise FusionError(f"embedding shape {h.shape} does not match the KB index dimension {index.dim}")
        batch, m = h.shape[0], self.top_m
        n_groups = len(index.groups)
        k = min(self.top_groups, n_groups)

        # Router: best centroid per group, top-k groups per message.
        cent_sims = h @ index.router_centroids.T
        group_scores = np.maximum.reduceat(cent_sims, index.router_starts, axis=1)
        if k < n_groups:
            routed = np.argpartition(-group_scores, k - 1, axis=1)[:, :k]
        else:
            routed = np.broadcast_to(np.arange(n_groups), (batch, n_groups)).copy()
        order = np.argsort(-np.take_along_axis(group_scores, routed, axis=1), axis=1, kind="stable")
        routed = np.take_along_axis(routed, order, axis=1)

        # Inverted lists to score (a small group is one list, scored by its group score).
        list_scores = np.where(
            index.list_centroid >= 0,
            cent_sims[:, np.maximum(index.list_centroid, 0)],
            group_scores[:, index.list_group],
        )
        # The best ``nprobe`` lists over the routed groups together, so probes go where the message matches
        # best (at least k lists: a KB of small groups, one list each, is scored exactly).
        is_routed = np.zeros((batch, n_groups), dtype=bool)
        is_routed[np.arange(batch)[:, None], routed] = True
        scores = np.where(is_routed[:, index.list_group], list_scores, -np.inf)
        n_slots = min(max(self.nprobe, k), scores.shape[1])
        if n_slots < scores.shape[1]:
            lists = np.argpartition(-scores, n_slots - 1, axis=1)[:, :n_slots]
        else:
            lists = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
        rows_all, slots_all = np.nonzero(np.isfinite(np.take_along_axis(scores, lists, axis=1)))
        lists_all = lists[rows_all, slots_all]

        # Candidates per (message, probed list): one matmul per list over the messages that probe it. Only
        # logits are written; a candidate's point is looked up once at the end from (slot -> list,
        # position). A list no longer than ``width`` is written whole; a longer one writes its top
        # ``keep`` and their positions. (At ~200 lists a batch, per-call overhead and bytes written were
        # the cost.) With reduced scoring the logits are approximate (PCA projection, ``keep`` =
        # shortlist) and the shortlist is scored again exactly below.
        reduced = index.reduced_dim > 0
        keep = self.shortlist if reduced else m
        width = max(keep, min(index.max_list_len, SLOT_WIDTH))
        cand_logit = np.full((batch, n_slots, width), -np.inf, dtype=np.float32)
        cand_pos: np.ndarray | None = None  # (batch, n_slots, width) positions, only if a list is long
        slot_list = np.zeros((batch, n_slots), dtype=np.int64)
        slot_list[rows_all, slots_all] = lists_all
        inv_t = np.float32(1.0 / self.params.temperature)
        hs = h * inv_t  # scale the queries once, not every list
        if reduced:  # logit ~ (proj^T h).(proj^T v) / T + log w + kind_bias, up to a per-message constant
            r = index.reduced_dim
            hs = np.empty((batch, r + 1 + len(ENTRY_KINDS)), dtype=np.float32)
            hs[:, :r] = (h @ index.reduce_proj) * inv_t
            hs[:, r] = 1.0
            hs[:, r + 1 :] = self._kind_bias
        list_matrices = index.list_reduced if reduced else index.list_vectors
        biases = self._point_bias(index)[1:]
        order = np.argsort(lists_all, kind="stable")
        rows_all, slots_all, lists_all = rows_all[order], slots_all[order], lists_all[order]
        firsts = np.flatnonzero(np.r_[True, lists_all[1:] != lists_all[:-1]])
        for first, last in zip(firsts.tolist(), [*firsts[1:].tolist(), len(lists_all)], strict=True):
            lst = int(lists_all[first])
            rows, slots = rows_all[first:last], slots_all[first:last]
            logits = hs[rows] @ list_matrices[lst].T
            if not reduced:
                logits += biases[lst]
            if logits.shape[1] > width:
                top = np.argpartition(-logits, keep - 1, axis=1)[:, :keep]
                logits = np.take_along_axis(logits, top, axis=1)
                if cand_pos is None:
                    cand_pos = np.broadcast_to(np.arange(width), cand_logit.shape).copy()
                cand_pos[rows, slots, :keep] = top
            cand_logit[rows, slots, : logits.shape[1]] = logits
        flat_logit = cand_logit.reshape(batch, -1)

        # Overall top ``keep`` of the routed candidates.
        if flat_logit.shape[1] > keep:
            best = np.argpartition(-flat_logit, keep - 1, axis=1)[:, :keep]
        else:
            best = np.broadcast_to(np.arange(keep), (batch, keep))
        logit = np.take_along_axis(flat_logit, best, axis=1)
        valid = np.isfinite(logit)  # -inf: an empty candidate slot (point logits are finite)
        if cand_pos is None:
            pos = best % width
        else:
            pos = np.take_along_axis(cand_pos.reshape(batch, -1), best, axis=1)
        lists = np.take_along_axis(slot_list, best // width, axis=1)
        flat = np.where(valid, index.list_offset[lists] + pos, 0)
        points = np.where(valid, index.list_point_flat[flat], -1)
        safe = np.where(valid, points, 0)
        full_bias = self._full_bias(index)
        if reduced:
            # Exact float32 scores of the shortlist (a gather of batch x shortlist rows).
            vectors = index.vectors_at(safe.ravel()).reshape(batch, keep, index.dim)
            cosine = np.einsum("bd,bkd->bk", h, vectors)
            logit = np.where(valid, cosine * inv_t + full_bias[safe], -np.inf).astype(np.float32)
        # Top m, highest logit first.
        top_m = np.argsort(-logit, axis=1, kind="stable")[:, :m]
        logit = np.take_along_axis(logit, top_m, axis=1)
        valid = np.take_along_axis(valid, top_m, axis=1) & np.isfinite(logit)
        points = np.where(valid, np.take_along_axis(points, top_m, axis=1), -1)
        safe = np.where(valid, points, 0)
        if reduced:
            cosine = np.where(valid, np.take_along_axis(cosine, top_m, axis=1), 0.0)
        else:
            # cosine recovered from the logit: cos = (logit - bias) * T (no per-list cosine bookkeeping)
            cosine = np.where(valid, (logit - full_bias[safe]) * self.params.temperature, 0.0)
        alpha = np.where(valid, np.exp(logit - logit[:, :1]), 0.0).astype(np.float32)
        alpha /= alpha.sum(axis=1, keepdims=True)

        y: dict[str, np.ndarray] = {}
        has: dict[str, np.ndarray] = {}
        max_sim: dict[str, np.ndarray] = {}
        for task, labels, n_labels in (
            ("sentiment", index.point_sentiment, len(index.sentiments)),
            ("topic", index.point_topic, len(index.topics)),
        ):
            lab = np.where(valid, labels[safe], -1)
            labelled = lab >= 0
            w = np.where(labelled, alpha, 0.0)
            mass = w.sum(axis=1)
            onehot = lab[:, :, None] == np.arange(n_labels)[None, None, :]
            dist = (onehot * w[:, :, None]).sum(axis=1)
            has[task] = mass > 0
            y[task] = (dist / np.where(mass > 0, mass, 1.0)[:, None]).astype(np.float32)
            max_sim[task] = np.where(labelled, cosine, -np.inf).max(axis=1)
            max_sim[task] = np.where(has[task], max_sim[task], 0.0).astype(np.float32)
        return Readout(points, alpha, cosine, routed, y, has, max_sim)

    def gate_features(
        self, task: str, head: np.ndarray, readout: Readout, n_head_topics: int, energy: np.ndarray
    ) -> np.ndarray:
        """(B, len(GATE_FEATURES)) features of the gate for one task; ``energy``: logsumexp of its logits."""
        y = readout.y[task]
        kb_only = y[:, n_head_topics:].sum(axis=1) if task == "topic" else np.zeros(len(y), np.float32)
        return np.stack(
            [
                readout.max_sim[task],
                np.maximum(readout.max_sim[task] - NEAR_DUP_FROM, 0.0) / (1.0 - NEAR_DUP_FROM),
                y.max(axis=1),
                head.max(axis=1),
                (head * y).sum(axis=1),
                kb_only,
                energy,
            ],
            axis=1,
        ).astype(np.float32)

    def mix(
        self,
        head: dict[str, np.ndarray],
        readout: Readout,
        n_head_topics: int,
        energy: dict[str, np.ndarray],
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """p = (1 - g) head + g y per task; head topic rows already padded to the extended label set.

        ``energy``: per task, logsumexp of the head logits (low for a message unlike the head's classes).
        """
        probs: dict[str, np.ndarray] = {}
        gates: dict[str, np.ndarray] = {}
        for task in TASKS:
            feats = self.gate_features(task, head[task], readout, n_head_topics, energy[task])
            g = _sigmoid(feats @ self._gate_w[task] + self._gate_b[task])
            g = np.where(readout.has[task], g, 0.0).astype(np.float32)
            gates[task] = g
            probs[task] = (1.0 - g)[:, None] * head[task] + g[:, None] * readout.y[task]
        return probs, gates

    # --- internals ----------------------------------------------------------------------------
    def _full_bias(self, index: KnowledgeIndex) -> np.ndarray:
        """Per point (entries order): log w_i + kind_bias[kind_i]."""
        return self._point_bias(index)[0]

    def _point_bias(self, index: KnowledgeIndex) -> tuple[np.ndarray, ...]:
        """(per-point bias, then one slice per inverted list), computed once per index, not per batch."""
        if self._bias_for is not None and self._bias_for[0] is index:
            return self._bias_for[1]
        full = (index.point_log_weight + self._kind_bias[index.point_kind]).astype(np.float32)
        biases = (full, *(np.ascontiguousarray(full[pts]) for pts in index.list_points))
        self._bias_for = (index, biases)
        return biases

    def _results(
        self,
        probs: dict[str, np.ndarray],
        gates: dict[str, np.ndarray],
        readout: Readout | None,
        index: KnowledgeIndex | None,
    ) -> list[FusionResult]:
        topics = index.topics if index is not None else self.head_topics
        n_head = len(self.head_topics)
        p_topic = probs["topic"]
        top_n = min(3, p_topic.shape[1])
        top = np.argsort(-p_topic, axis=1, kind="stable")[:, :top_n]
        top_p = np.take_along_axis(p_topic, top, axis=1)
        sent = probs["sentiment"]
        # Python lists once per batch: indexing numpy arrays element by element costs more than the rest
        points: list[list[int]] = readout.points.tolist() if readout is not None else []
        attention: list[list[float]] = readout.attention.tolist() if readout is not None else []
        routed_rows: list[list[int]] = readout.routed.tolist() if readout is not None else []
        sent_rows: list[list[float]] = sent.tolist()
        top_rows: list[list[int]] = top.tolist()
        top_p_rows: list[list[float]] = top_p.tolist()
        gate_s: list[float] = gates["sentiment"].tolist()
        gate_t: list[float] = gates["topic"].tolist()
        results: list[FusionResult] = []
        for b in range(sent.shape[0]):
            evidence: list[dict[str, Any]] = []
            routed: list[str] = []
            if readout is not None and index is not None:
                evidence = index.evidence_items(points[b], attention[b])
                routed = [index.groups[g] for g in routed_rows[b]]
            g_s, g_t = gate_s[b], gate_t[b]
            results.append(
                FusionResult(
                    sentiment=dict(zip(self.sentiments, sent_rows[b], strict=True)),
                    topics=[(topics[i], p) for i, p in zip(top_rows[b], top_p_rows[b], strict=True)],
                    topic_kb_only=top_rows[b][0] >= n_head,
                    evidence=evidence,
                    gate=max(g_s, g_t),
                    routed_groups=routed,
                    gates={"sentiment": g_s, "topic": g_t},
                )
            )
        return results
