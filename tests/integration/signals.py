"""signal.v1 records for alert-stage tests: the schema's example with the fields the alert engine reads."""

from __future__ import annotations

import copy
import json
from typing import Any

from worker.alerts.engine import format_time
from worker.schemas import schema_dir

EXAMPLE = json.loads((schema_dir() / "examples" / "signal.example.json").read_text())


def make_signal(
    signal_id: str, published: float, p_negative: float, topic: str = "Markets", acme: bool = True
) -> dict[str, Any]:
    """A signal published at ``published`` (epoch s) with P(negative) = ``p_negative``, the rest split
    between neutral and positive; keyed to the example's ACME entity unless ``acme`` is False (then it
    counts for its topic only)."""
    s = copy.deepcopy(EXAMPLE)
    s["id"] = signal_id
    s["published_at"] = format_time(published)
    s["processed_at"] = format_time(published + 0.5)
    s["topic"] = {"label": topic, "probability": 0.8, "kb_only": False}
    s["topics"] = [{"label": topic, "probability": 0.8}]
    rest = round((1.0 - p_negative) / 2, 4)
    s["sentiment"] = {
        "label": "negative" if p_negative >= 0.5 else "neutral",
        "probability": max(p_negative, rest),
        "probabilities": {"negative": p_negative, "neutral": rest, "positive": rest},
    }
    if not acme:
        s["entities"] = []
    return s
