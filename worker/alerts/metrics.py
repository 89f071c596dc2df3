"""Prometheus metrics of the alert stage (default registry; safe to import more than once)."""

from __future__ import annotations

from typing import Any, TypeVar

from prometheus_client import REGISTRY, Counter, Gauge

_M = TypeVar("_M")


def _metric(cls: type[_M], name: str, documentation: str, labelnames: tuple[str, ...] = ()) -> _M:
    # A re-import (tests, importlib.reload) must reuse the collector instead of failing on a duplicate.
    existing: Any = getattr(REGISTRY, "_names_to_collectors", {}).get(name)
    if existing is not None:
        return existing  # type: ignore[no-any-return]
    return cls(name, documentation, labelnames)  # type: ignore[call-arg]


ALERTS = _metric(Counter, "finsignal_alerts", "alerts published, by severity", ("severity",))
ALERTS_RESOLVED = _metric(Counter, "finsignal_alerts_resolved", "resolved notices published")
LATE_EVENTS = _metric(
    Counter, "finsignal_alerts_late_events", "signals older than the watermark (folded into baselines only)"
)
INVALID_SIGNALS = _metric(
    Counter, "finsignal_alerts_invalid_signals", "signals the alert stage could not read (logged, skipped)"
)
DUPLICATES_SUPPRESSED = _metric(
    Counter, "finsignal_alerts_duplicates_suppressed", "alerts not re-published: already on the alerts topic"
)
PUBLISH_FAILURES = _metric(
    Counter,
    "finsignal_alerts_publish_failures",
    "alert sends not confirmed by the broker (retried on a fresh producer; offsets wait)",
)
STORY_REPEATS = _metric(
    Counter,
    "finsignal_alerts_story_repeats",
    "signal x key pairs not counted: a copy of a story the key counted within alert_dedupe_window_s",
)
ALERT_KEYS = _metric(Gauge, "finsignal_alerts_keys", "keys (topics and entities) the alert engine tracks")
FIRING = _metric(Gauge, "finsignal_alerts_firing", "keys with a firing alert")
REORDER_HELD = _metric(
    Gauge,
    "finsignal_alerts_reorder_held",
    "signals waiting in the reorder buffer for the stage watermark (min over active partitions)",
)
REORDER_FORCED = _metric(
    Counter,
    "finsignal_alerts_reorder_forced",
    "signals released before the watermark passed them (alert_reorder_max_records / _max_wait_s)",
)
