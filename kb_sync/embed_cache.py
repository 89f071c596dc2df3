"""Embeddings of KB points cached in Redis, keyed by model and point content.

One Redis hash per model: ``<ns>:emb:<model sha256>``, field = the point's content hash, value = the
float32 vector's raw bytes. A reload therefore embeds only new or changed points, and a second worker
(or a restart) embeds nothing. Vectors are plain numbers (no pickle); a value of the wrong size (another
model, corruption) counts as a miss and is overwritten.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import redis

from kb_sync.model import KBEntry

log = logging.getLogger(__name__)

_CHUNK = 2000  # fields per HMGET/HSET round trip: big enough to amortise, small enough not to block Redis


class EmbeddingCache:
    def __init__(self, client: redis.Redis, namespace: str, model_sha256: str, dim: int) -> None:
        self.client = client
        self.key = f"{namespace}:emb:{model_sha256}"
        self.dim = dim
        self.hits = 0
        self.misses = 0

    def get_many(self, content_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        size = self.dim * 4
        for start in range(0, len(content_hashes), _CHUNK):
            chunk = list(content_hashes[start : start + _CHUNK])
            values = self.client.hmget(self.key, chunk)
            for name, value in zip(chunk, values, strict=True):
                if isinstance(value, bytes) and len(value) == size:
                    found[name] = np.frombuffer(value, dtype=np.float32)
        return found

    def put_many(self, vectors: dict[str, np.ndarray]) -> None:
        items = [(name, np.asarray(v, dtype=np.float32).tobytes()) for name, v in vectors.items()]
        for start in range(0, len(items), _CHUNK):
            self.client.hset(self.key, mapping=dict(items[start : start + _CHUNK]))

    def embed_entries(
        self, entries: Sequence[KBEntry], embed: Callable[[list[str]], np.ndarray]
    ) -> np.ndarray:
        """Row i = embedding of entries[i]; only points missing from the cache are embedded (and stored).

        A Redis error while reading or writing the cache is not fatal: the points are embedded locally.
        """
        hashes = [entry.content_hash for entry in entries]
        unique = list(dict.fromkeys(hashes))
        try:
            cached = self.get_many(unique)
        except redis.RedisError as exc:
            log.warning("KB embedding cache unreadable (%s): embedding every point", exc)
            cached = {}
        missing = [h for h in unique if h not in cached]
        self.hits += len(unique) - len(missing)
        self.misses += len(missing)
        if missing:
            text_of = {entry.content_hash: entry.text for entry in entries}
            fresh = embed([text_of[h] for h in missing])
            new = dict(zip(missing, fresh, strict=True))
            cached.update(new)
            try:
                self.put_many(new)
            except redis.RedisError as exc:
                log.warning("KB embedding cache not written (%s): the next reload embeds again", exc)
        if not hashes:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([cached[name] for name in hashes]).astype(np.float32, copy=False)
