"""KB embedding cache on a real Redis: a second load embeds nothing; changed points are re-embedded."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import redis

from kb_sync.embed_cache import EmbeddingCache
from kb_sync.model import KBEntry


def _entry(i: int, text: str) -> KBEntry:
    return KBEntry(id=f"p{i}", kind="exemplar", text=text, group="equities", author="t", sentiment="negative")


def test_second_load_hits_cache_and_only_changed_points_are_embedded(
    redis_url: str, unique_name: Callable[[str], str]
) -> None:
    client = redis.Redis.from_url(redis_url)
    namespace = unique_name("kb")
    calls: list[list[str]] = []

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.stack([np.full(4, float(len(t)), dtype=np.float32) for t in texts])

    entries = [_entry(i, f"text {i}" * (i + 1)) for i in range(5)]
    first = EmbeddingCache(client, namespace, "sha-a", 4)
    vectors = first.embed_entries(entries, embed)
    assert (first.hits, first.misses) == (0, 5)
    assert vectors[3, 0] == len(entries[3].text)

    second = EmbeddingCache(client, namespace, "sha-a", 4)
    again = second.embed_entries(entries, embed)
    assert (second.hits, second.misses) == (5, 0)
    np.testing.assert_array_equal(again, vectors)
    assert len(calls) == 1

    changed = entries[:4] + [_entry(4, "a brand new text")]
    third = EmbeddingCache(client, namespace, "sha-a", 4)
    third.embed_entries(changed, embed)
    assert (third.hits, third.misses) == (4, 1) and calls[-1] == ["a brand new text"]

    other_model = EmbeddingCache(client, namespace, "sha-b", 4)
    other_model.embed_entries(entries, embed)
    assert other_model.misses == 5  # another model's vectors are never reused
    client.delete(first.key, other_model.key)
