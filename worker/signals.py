"""Building signal.v1 payloads (schemas/signal.v1.json) from a decoded event and its fusion result."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from worker.decode import NewsEvent
from worker.entities import EntityMatch
from worker.fusion import FusionResult


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def merge_entities(
    given_tickers: tuple[str, ...], tagged: list[EntityMatch], name_of: Callable[[str], str]
) -> list[dict[str, str]]:
    """Tickers the publisher attached come first (they are authoritative), then tagger matches."""
    out: dict[str, dict[str, str]] = {}
    for ticker in given_tickers:
        symbol = ticker.strip().lstrip("$").upper()
        if symbol:
            out.setdefault(symbol, {"ticker": symbol, "name": name_of(symbol), "match": ticker})
    for match in tagged:
        out.setdefault(
            match["ticker"], {"ticker": match["ticker"], "name": match["name"], "match": match["match"]}
        )
    return list(out.values())


def signal_key(entities: list[dict[str, str]], topic: str) -> str:
    """Kafka key: the first entity when there is one (a company's signals stay on one partition),
    else the topic."""
    return f"entity:{entities[0]['ticker']}" if entities else f"topic:{topic}"


def build_signal(
    event: NewsEvent,
    result: FusionResult,
    entities: list[dict[str, str]],
    *,
    n_tokens: int,
    truncated: bool,
    model: dict[str, str],
    kb_version: int,
    timings: dict[str, float],
    processed_at: str,
) -> dict[str, Any]:
    top_topic, top_probability = result.topics[0]
    sentiment_label = max(result.sentiment, key=result.sentiment.__getitem__)
    return {
        "schema": "signal.v1",
        "id": event.id,
        "source": event.source,
        "published_at": event.published_at,
        "processed_at": processed_at,
        "key": signal_key(entities, top_topic),
        "topic": {"label": top_topic, "probability": _p(top_probability), "kb_only": result.topic_kb_only},
        "topics": [{"label": label, "probability": _p(p)} for label, p in result.topics[:3]],
        "sentiment": {
            "label": sentiment_label,
            "probability": _p(result.sentiment[sentiment_label]),
            "probabilities": {name: _p(p) for name, p in result.sentiment.items()},
        },
        "entities": entities,
        "evidence": result.evidence,
        "gate": _p(result.gate),
        "routed_groups": list(result.routed_groups),
        "truncated": truncated,
        "n_tokens": n_tokens,
        "model": model,
        "kb_version": kb_version,
        "timings": timings,
    }


def _p(value: float) -> float:
    # Clamp float noise (1.0000001) so the schema's [0, 1] holds; 5 decimals keep payloads small.
    return round(min(1.0, max(0.0, float(value))), 5)
