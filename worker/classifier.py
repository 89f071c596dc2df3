"""Encoder + KB fusion + entity tagging: texts in, fusion results out (no Kafka here).

The serving KB is one immutable ``KnowledgeIndex`` behind a plain attribute: the KB watcher thread
builds a new index (embedding only points the Redis cache lacks) and swaps the reference; a batch
reads the reference once, so it never sees half a KB and never waits for a reload.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import redis

from kb_sync.embed_cache import EmbeddingCache
from kb_sync.model import KBEntry, KBSnapshot
from worker import metrics
from worker.config import Settings
from worker.encoder import Encoder, EncoderOutput
from worker.entities import EntityTagger
from worker.fusion import Fusion, FusionParams, FusionResult, KnowledgeIndex

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Classified:
    """One batch through the model: fusion results plus the encoder facts a signal reports."""

    results: list[FusionResult]
    output: EncoderOutput
    kb_version: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Encoded:
    """A batch through the encoder only, with the KB index it is to be fused with."""

    output: EncoderOutput
    index: KnowledgeIndex | None
    seconds: float


def serving_fusion(settings: Settings, encoder: Encoder) -> Fusion:
    """The fusion the worker serves with: the model's fitted parameters and the settings' top-m points
    and top-k groups (`kb explain` and `kb audit` use it too, so they fuse exactly as the worker does)."""
    return Fusion(
        FusionParams.load(settings.model_dir),
        head_topics=encoder.topics,
        sentiments=encoder.sentiments,
        top_m=settings.kb_top_m,
        top_groups=settings.kb_top_groups,
    )


class Classifier:
    def __init__(
        self,
        settings: Settings,
        encoder: Encoder | None = None,
        cache_client: Callable[[], redis.Redis] | None = None,
    ) -> None:
        self.settings = settings
        self.encoder = encoder or Encoder.from_settings(settings)
        self.fusion = serving_fusion(settings, self.encoder)
        self.tagger = EntityTagger.from_file()
        self.model_info = {
            "name": self.encoder.name,
            "version": self.encoder.version,
            "sha256": self.encoder.sha256,
        }
        self._cache_client = cache_client
        self._index: KnowledgeIndex | None = None
        self._swap_lock = threading.Lock()  # two reloads never interleave their swaps

    @property
    def kb_version(self) -> int:
        index = self._index
        return index.version if index is not None else 0

    @property
    def index(self) -> KnowledgeIndex | None:
        return self._index

    def set_kb(self, snapshot: KBSnapshot) -> None:
        """Embed (cache first), index and swap in a KB version; raises and keeps the old one on failure.

        Points the serving index already holds (same content hash) take its vector, and its inverted
        lists are reused (``KnowledgeIndex.build(previous=...)``): a reload costs about the changed points.
        """
        start = time.perf_counter()
        previous = self._index
        if previous is not None and previous.dim != self.encoder.dim:
            previous = None
        embeddings, positions = self._embed_points(snapshot, previous)
        index = KnowledgeIndex.build(
            snapshot,
            embeddings,
            self.encoder.topics,
            self.encoder.sentiments,
            previous=previous,
            previous_positions=positions,
        )
        with self._swap_lock:
            self._index = index
        seconds = time.perf_counter() - start
        metrics.KB_VERSION.set(snapshot.version)
        metrics.KB_ENTRIES.set(len(snapshot))
        metrics.KB_RELOAD_SECONDS.observe(seconds)
        log.info(
            "KB version %d serving: %d points, built in %.2f s (inverted lists kept for %d groups, "
            "fitted for %d)",
            snapshot.version,
            len(snapshot),
            seconds,
            len(index.kept_groups),
            len(index.refit_groups),
        )

    def classify_texts(self, texts: list[str]) -> Classified:
        return self.fuse_encoded(self.encode_texts(texts))

    def encode_texts(self, texts: list[str]) -> Encoded:
        """The encoder half of ``classify_texts``; the KB version the batch will be fused with is read now."""
        index = self._index  # one read: the whole batch uses one KB version
        start = time.perf_counter()
        output = self.encoder.encode(texts)
        return Encoded(output, index, time.perf_counter() - start)

    def fuse_encoded(self, encoded: Encoded) -> Classified:
        """The KB half of ``classify_texts``."""
        start = time.perf_counter()
        output, index = encoded.output, encoded.index
        results = self.fusion.fuse(output.embedding, output.sentiment_logits, output.topic_logits, index)
        seconds = encoded.seconds + time.perf_counter() - start
        return Classified(results, output, index.version if index is not None else 0, seconds)

    def _embed_points(
        self, snapshot: KBSnapshot, previous: KnowledgeIndex | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(vectors, positions): row i = vector of entry i, copied from point positions[i] of the serving
        index when it holds the point (-1: it does not), else from the Redis cache, else embedded."""
        entries = snapshot.entries
        missing = np.arange(len(entries))
        pos = None
        if previous is not None and previous.size:
            pos = previous.positions_of([e.content_hash for e in entries])
            # One gather of every row (a placeholder where the point is new, overwritten below).
            vectors = previous.vectors_at(np.maximum(pos, 0))
            missing = np.flatnonzero(pos < 0)
        else:
            vectors = np.empty((len(entries), self.encoder.dim), dtype=np.float32)
        todo = [entries[i] for i in missing.tolist()]
        if todo:
            vectors[missing] = self._embed_entries(snapshot.version, todo)
        log.info(
            "KB version %d: %d points from the serving KB, %d looked up",
            snapshot.version,
            len(entries) - len(todo),
            len(todo),
        )
        return vectors, pos

    def _embed_entries(self, version: int, entries: list[KBEntry]) -> np.ndarray:
        if self._cache_client is None:
            metrics.KB_POINTS_EMBEDDED.inc(len(entries))
            return self.encoder.embed([e.text for e in entries])
        client = self._cache_client()
        try:
            cache = EmbeddingCache(client, self.settings.kb_namespace, self.encoder.sha256, self.encoder.dim)
            vectors = cache.embed_entries(entries, self.encoder.embed)
        finally:
            client.close()
        metrics.KB_EMBED_CACHE_HITS.inc(cache.hits)
        metrics.KB_POINTS_EMBEDDED.inc(cache.misses)
        log.info(
            "KB version %d: %d points from the embedding cache, %d embedded",
            version,
            cache.hits,
            cache.misses,
        )
        return vectors
