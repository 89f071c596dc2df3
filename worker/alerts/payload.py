"""alert.v1 payloads (schemas/alert.v1.json) and the one-line rendering used by the CLI and the demo."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.alerts.engine import Alert, TopMessage, format_time

SCHEMA = "alert.v1"


def _top_message(message: TopMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"id": message.id}
    if message.text is not None:
        out["text"] = message.text
    out["sentiment_probability"] = round(message.p_negative, 4)
    out["evidence"] = [dict(item) for item in message.evidence]
    return out


def alert_payload(alert: Alert) -> dict[str, Any]:
    """The alert.v1 JSON object (plus detail fields the schema allows: peak_score, baseline rate)."""
    model = {name: alert.model[name] for name in ("name", "version", "sha256") if name in alert.model}
    model.setdefault("name", "unknown")
    model.setdefault("version", "unknown")
    return {
        "schema": SCHEMA,
        "id": alert.id,
        "status": alert.status,
        "key_type": alert.key_type,
        "key": alert.key,
        "window_start": format_time(alert.window_start),
        "window_end": format_time(alert.window_end),
        "count": alert.count,
        "negative_count": round(alert.negative_count, 3),
        "negative_share": round(min(alert.negative_share, 1.0), 4),
        "baseline_share": round(alert.baseline_share, 4),
        "baseline_rate_per_hour": round(alert.baseline_rate_per_hour, 3),
        "score": round(alert.score, 3),
        "peak_score": round(alert.peak_score, 3),
        "severity": alert.severity,
        "top_messages": [_top_message(m) for m in alert.top_messages],
        "model": model,
        "kb_version": alert.kb_version,
        "created_at": format_time(alert.created_at),
    }


_SEVERITY_MARK = {"info": "INFO", "warning": "WARN", "critical": "CRIT"}


def format_alert_line(alert: Mapping[str, Any], max_text: int = 60) -> str:
    """One readable line for an alert.v1 payload, e.g. for the demo and ``finsignal alerts tail``.

    FIRING CRIT entity:ACME  14:00:00-14:05:00Z  11.0/14 negative (79% vs 18% usual)  score 5.9  "Acme ..."
    """
    status = str(alert.get("status", "?")).upper()
    severity = _SEVERITY_MARK.get(str(alert.get("severity")), str(alert.get("severity", "?")))
    start = str(alert.get("window_start", ""))
    end = str(alert.get("window_end", ""))
    span = f"{start}..{end[11:] if end[:10] == start[:10] else end}"
    share = float(alert.get("negative_share", 0.0))
    base = float(alert.get("baseline_share", 0.0))
    line = (
        f"{status:<8} {severity:<4} {alert.get('key', '?')}  {span}  "
        f"{float(alert.get('negative_count', 0.0)):.1f}/{alert.get('count', 0)} negative "
        f"({share:.0%} vs {base:.0%} usual)  score {float(alert.get('score', 0.0)):.1f}"
    )
    top = alert.get("top_messages") or []
    if top and isinstance(top[0], Mapping):
        first = top[0]
        text = first.get("text")
        if not text:
            evidence = first.get("evidence") or []
            text = evidence[0].get("text") if evidence and isinstance(evidence[0], Mapping) else None
        shown = str(text or first.get("id", ""))
        if len(shown) > max_text:
            shown = shown[: max_text - 3] + "..."
        line += f'  "{shown}"'
    return line
