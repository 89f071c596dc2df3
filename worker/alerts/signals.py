"""Reading signal.v1 payloads into engine events: keys, event time and the negative probability."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from worker.alerts.engine import SignalEvent
from worker.schemas import STORY_HEADER

_EVIDENCE_FIELDS = ("id", "text", "kind", "group", "topic", "sentiment", "weight", "attention")
_MAX_EVIDENCE = 3


class SignalError(ValueError):
    """A signal the alert stage cannot use; the message names the field."""


def parse_time(value: Any, field: str) -> float:
    """RFC 3339 (``Z`` or offset) -> seconds since the epoch."""
    if not isinstance(value, str):
        raise SignalError(f"field '{field}': expected an RFC 3339 date-time string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise SignalError(f"field '{field}': {value[:40]!r} is not an RFC 3339 date-time") from None
    if moment.tzinfo is None:
        raise SignalError(f"field '{field}': {value[:40]!r} has no time zone")
    return moment.timestamp()


def signal_keys(signal: Mapping[str, Any]) -> tuple[str, ...]:
    """Each signal counts for its topic and for each of its entities."""
    keys: list[str] = []
    topic = signal.get("topic")
    if isinstance(topic, Mapping) and isinstance(topic.get("label"), str) and topic["label"]:
        keys.append(f"topic:{topic['label']}")
    for entity in signal.get("entities") or ():
        if isinstance(entity, Mapping) and isinstance(entity.get("ticker"), str) and entity["ticker"]:
            keys.append(f"entity:{entity['ticker']}")
    return tuple(dict.fromkeys(keys))


def story_of(headers: Iterable[tuple[str, bytes]] | None) -> str | None:
    """The story fingerprint from a signal record's ``finsignal.story`` header (None: absent/unreadable)."""
    for name, value in headers or ():
        if name == STORY_HEADER:
            try:
                story = bytes(value).decode("ascii").strip()
            except (TypeError, ValueError):
                return None
            return story[:64] or None
    return None


def parse_signal(signal: Mapping[str, Any], story: str | None = None) -> SignalEvent:
    """The engine's view of one signal (already schema-checked or not: every field used is checked);
    ``story`` is its record's story fingerprint (``story_of``), if any."""
    if not isinstance(signal, Mapping):
        raise SignalError("signal is not a JSON object")
    signal_id = signal.get("id")
    if not isinstance(signal_id, str) or not signal_id:
        raise SignalError("field 'id': missing or empty")
    published = parse_time(signal.get("published_at"), "published_at")
    processed = parse_time(signal.get("processed_at"), "processed_at")
    try:
        p_negative = float(signal["sentiment"]["probabilities"]["negative"])
    except (KeyError, TypeError, ValueError):
        raise SignalError("field 'sentiment.probabilities.negative': missing or not a number") from None
    if not 0.0 <= p_negative <= 1.0:
        raise SignalError("field 'sentiment.probabilities.negative': not in [0, 1]")
    keys = signal_keys(signal)
    if not keys:
        raise SignalError("signal has neither a topic label nor an entity ticker: no alert key")
    evidence = tuple(
        {name: item[name] for name in _EVIDENCE_FIELDS if name in item}
        for item in (signal.get("evidence") or ())[:_MAX_EVIDENCE]
        if isinstance(item, Mapping)
    )
    text = signal.get("text")
    model = signal.get("model")
    kb_version = signal.get("kb_version")
    return SignalEvent(
        id=signal_id,
        # An event cannot have happened after it was processed: this caps a publisher's bad clock.
        event_time=min(published, processed),
        processed_time=processed,
        keys=keys,
        p_negative=p_negative,
        evidence=evidence,
        text=text if isinstance(text, str) else None,
        model=model if isinstance(model, Mapping) else {},
        kb_version=kb_version if isinstance(kb_version, int) and kb_version >= 0 else 0,
        story=story,
    )
