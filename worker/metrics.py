"""Prometheus metrics of the classify stage (names fixed by DESIGN.md) on the default registry."""

from __future__ import annotations

from typing import Any, TypeVar

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

_M = TypeVar("_M")


def _metric(cls: type[_M], name: str, documentation: str, labelnames: tuple[str, ...] = (), **kw: Any) -> _M:
    # Re-imports (tests, reload) reuse the collector instead of failing on a duplicate name.
    existing: Any = getattr(REGISTRY, "_names_to_collectors", {}).get(name)
    if existing is not None:
        return existing  # type: ignore[no-any-return]
    return cls(name, documentation, labelnames, **kw)  # type: ignore[call-arg]


MESSAGES_CONSUMED = _metric(Counter, "finsignal_messages_consumed", "messages read from the input topic")
SIGNALS_PRODUCED = _metric(Counter, "finsignal_signals_produced", "signals confirmed by the broker")
DLQ = _metric(Counter, "finsignal_dlq", "messages sent to the DLQ, by reason", ("reason",))
BATCH_SIZE = _metric(
    Histogram,
    "finsignal_batch_size",
    "messages per inference batch",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
INFERENCE_SECONDS = _metric(Histogram, "finsignal_inference_seconds", "encoder + fusion time per batch")
END_TO_END_SECONDS = _metric(
    Histogram, "finsignal_end_to_end_seconds", "from the input record's timestamp to the confirmed signal"
)
CONSUMER_LAG = _metric(Gauge, "finsignal_consumer_lag", "records behind the log end", ("topic", "partition"))
KB_VERSION = _metric(Gauge, "finsignal_kb_version", "KB version serving (0: none)")
KB_ENTRIES = _metric(Gauge, "finsignal_kb_entries", "knowledge points in the serving KB")
KB_RELOAD_SECONDS = _metric(Histogram, "finsignal_kb_reload_seconds", "time to load, embed and swap a KB")
KB_RELOAD_FAILURES = _metric(Counter, "finsignal_kb_reload_failures", "KB versions refused or failed to load")
KB_STALE = _metric(Gauge, "finsignal_kb_stale", "1 while Redis is unreachable and the KB may be stale")
READY = _metric(Gauge, "finsignal_ready", "1 when model and KB are loaded and the consumer has joined")
KB_EMBED_CACHE_HITS = _metric(
    Counter, "finsignal_kb_embed_cache_hits", "KB points whose embedding came from the Redis cache"
)
KB_POINTS_EMBEDDED = _metric(
    Counter, "finsignal_kb_points_embedded", "KB points embedded by this process (cache misses)"
)
PRODUCE_FAILURES = _metric(
    Counter, "finsignal_produce_failures", "batches whose outputs the broker did not confirm (retried)"
)
