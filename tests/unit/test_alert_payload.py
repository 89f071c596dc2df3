"""Signals in (signal.v1 -> engine event) and alerts out (alert.v1 payloads, one-line rendering)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from worker.alerts.engine import Alert, TopMessage
from worker.alerts.payload import alert_payload, format_alert_line
from worker.alerts.signals import SignalError, parse_signal, signal_keys
from worker.schemas import schema_dir, validate


def example_signal() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((schema_dir() / "examples" / "signal.example.json").read_text())
    return data


def test_example_signal_counts_for_its_topic_and_entity() -> None:
    event = parse_signal(example_signal())
    assert event.keys == ("topic:Stock Movement", "entity:ACME")
    assert event.p_negative == pytest.approx(0.93)
    assert event.id == "reuters-2026-11-28-000123"
    assert event.kb_version == 7 and event.model["name"] == "finsignal-encoder"
    assert event.text is None  # signal.v1 carries no text
    assert event.evidence[0]["id"] == "starter:sent:neg:02"
    assert event.event_time < event.processed_time


def test_entities_repeat_once_and_text_is_kept_when_present() -> None:
    signal = example_signal()
    signal["entities"].append(dict(signal["entities"][0]))
    signal["text"] = "Acme Corp shares slump"
    assert signal_keys(signal) == ("topic:Stock Movement", "entity:ACME")
    assert parse_signal(signal).text == "Acme Corp shares slump"


def test_event_time_is_capped_at_processing_time() -> None:
    signal = example_signal()
    signal["published_at"] = "2030-01-01T00:00:00Z"  # a publisher with a broken clock
    event = parse_signal(signal)
    assert event.event_time == event.processed_time


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda s: s.pop("published_at"), "published_at"),
        (lambda s: s.__setitem__("processed_at", "yesterday"), "processed_at"),
        (lambda s: s.__setitem__("published_at", "2026-11-28T14:03:11"), "published_at"),
        (lambda s: s["sentiment"]["probabilities"].pop("negative"), "sentiment.probabilities.negative"),
        (lambda s: s["sentiment"]["probabilities"].__setitem__("negative", 1.5), "sentiment.probabilities"),
        (lambda s: s.__setitem__("id", ""), "id"),
    ],
)
def test_bad_signals_name_the_field(change: Any, field: str) -> None:
    signal = example_signal()
    change(signal)
    with pytest.raises(SignalError, match=field.replace(".", r"\.")):
        parse_signal(signal)


def test_signal_without_any_key_is_refused() -> None:
    signal = example_signal()
    signal["topic"]["label"] = ""
    signal["entities"] = []
    with pytest.raises(SignalError, match="no alert key"):
        parse_signal(signal)


def make_alert(status: str = "firing", text: str | None = "Acme slumps") -> Alert:
    return Alert(
        id="entity:ACME@2026-11-28T14:00:00Z",
        status=status,  # type: ignore[arg-type]
        key="entity:ACME",
        window_start=1_795_874_400.0,
        window_end=1_795_874_700.0,
        count=14,
        negative_count=11.0,
        baseline_share=0.18,
        baseline_rate_per_hour=12.0,
        score=5.9,
        peak_score=6.2,
        severity="critical",
        top_messages=(
            TopMessage("m1", 0.93, ({"id": "kb1", "text": "cuts guidance", "attention": 0.6},), text),
        ),
        model={"name": "finsignal-encoder", "version": "1.0.0", "sha256": "ab", "extra": 1},
        kb_version=7,
        created_at=1_795_874_702.5,
    )


@pytest.mark.parametrize("status", ["firing", "resolved"])
@pytest.mark.parametrize("text", ["Acme slumps", None])
def test_payload_matches_the_alert_schema(status: str, text: str | None) -> None:
    payload = alert_payload(make_alert(status, text))
    validate("alert", payload)
    assert payload["id"] == "entity:ACME@2026-11-28T14:00:00Z"
    assert payload["window_start"] == "2026-11-28T14:00:00Z"
    assert payload["created_at"] == "2026-11-28T14:05:02.500Z"
    assert payload["negative_share"] == pytest.approx(11 / 14, abs=1e-4)
    assert payload["key_type"] == "entity"
    assert payload["model"] == {"name": "finsignal-encoder", "version": "1.0.0", "sha256": "ab"}
    assert ("text" in payload["top_messages"][0]) == (text is not None)


def test_schema_still_rejects_a_bad_alert() -> None:
    payload = alert_payload(make_alert())
    broken = copy.deepcopy(payload)
    broken["severity"] = "huge"
    with pytest.raises(ValueError, match="severity"):
        validate("alert", broken)


def test_one_line_rendering() -> None:
    line = format_alert_line(alert_payload(make_alert()))
    assert line.startswith("FIRING   CRIT entity:ACME")
    assert "11.0/14 negative (79% vs 18% usual)" in line
    assert "score 5.9" in line and '"Acme slumps"' in line
    # no text: the top evidence stands in; long texts are cut
    no_text = format_alert_line(alert_payload(make_alert("resolved", None)))
    assert no_text.startswith("RESOLVED CRIT") and '"cuts guidance"' in no_text
    long = format_alert_line(alert_payload(make_alert(text="x" * 300)), max_text=20)
    assert '"' + "x" * 17 + '..."' in long
    assert format_alert_line({}).startswith("?")
