"""Every schema compiles, every example validates as its name says, and errors name the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worker import schemas
from worker.schemas import KINDS, SchemaError, first_error, load_schema, validate

EXAMPLES = sorted((Path(schemas.schema_dir()) / "examples").glob("*.json"))
VALID = [p for p in EXAMPLES if not p.name.endswith(".invalid.json")]
INVALID = [p for p in EXAMPLES if p.name.endswith(".invalid.json")]


def _kind(path: Path) -> str:
    return path.name.split(".", 1)[0]


def test_every_kind_has_valid_and_invalid_examples() -> None:
    assert {_kind(p) for p in VALID} == set(KINDS)
    assert {_kind(p) for p in INVALID} == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_2020_12_with_versioned_id(kind: str) -> None:
    schema = load_schema(kind)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://finsignal.dev/schemas/{kind}/v1.json"


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_example_passes(path: Path) -> None:
    obj = json.loads(path.read_text())
    validate(_kind(path), obj)
    assert first_error(_kind(path), obj) is None


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_example_is_rejected(path: Path) -> None:
    obj = json.loads(path.read_text())
    with pytest.raises(SchemaError) as caught:
        validate(_kind(path), obj)
    assert caught.value.kind == _kind(path)
    assert first_error(_kind(path), obj) == str(caught.value)


def _news(**changes: object) -> dict[str, object]:
    event: dict[str, object] = {
        "id": "n1",
        "text": "Oil falls",
        "source": "wire",
        "published_at": "2026-11-28T10:00:00Z",
    }
    event.update(changes)
    return {k: v for k, v in event.items() if v is not None}


def test_error_names_nested_field() -> None:
    signal = json.loads((schemas.schema_dir() / "examples" / "signal.example.json").read_text())
    signal["sentiment"]["probabilities"]["neutral"] = 1.5
    with pytest.raises(SchemaError) as caught:
        validate("signal", signal)
    assert caught.value.path == "sentiment.probabilities.neutral"
    assert str(caught.value).startswith("field 'sentiment.probabilities.neutral': ")


def test_missing_field_is_named() -> None:
    assert first_error("news_event", _news(text=None)) == "field 'text': is required"


def test_blank_text_message_is_readable() -> None:
    assert (
        first_error("news_event", _news(text=" \t\n")) == "field 'text': must contain a non-space character"
    )


def test_date_time_format_is_checked() -> None:
    assert first_error("news_event", _news(published_at="2026-13-45 25:00")) is not None
    assert first_error("news_event", _news(published_at="2026-11-28T10:00:00+02:00")) is None


def test_news_event_allows_extra_fields() -> None:
    assert first_error("news_event", _news(priority=3, desk={"x": 1})) is None


def test_signal_rejects_extra_fields() -> None:
    signal = json.loads((schemas.schema_dir() / "examples" / "signal.example.json").read_text())
    signal["debug"] = True
    assert first_error("signal", signal) == "field 'debug': unknown field (not allowed here)"


def test_long_values_are_not_dumped_into_messages() -> None:
    message = first_error("news_event", _news(id="x" * 5000))
    assert message is not None and message.startswith("field 'id': ")
    assert len(message) < 200


def test_long_text_in_kb_entry_reports_sizes() -> None:
    entry = {
        "id": "a",
        "kind": "term",
        "text": "y" * 1500,
        "sentiment": "negative",
        "group": "fx",
        "author": "z",
    }
    assert first_error("kb_entry", entry) == "field 'text': is longer than 1000 characters (1500 given)"


def test_kb_entry_needs_topic_or_sentiment() -> None:
    entry = {"id": "a", "kind": "term", "text": "rally", "group": "equities", "author": "z"}
    assert first_error("kb_entry", entry) == "needs a topic or a sentiment (at least one must be non-null)"
    assert first_error("kb_entry", {**entry, "topic": "Brand New Topic"}) is None
    assert first_error("kb_entry", {**entry, "sentiment": "positive", "topic": None}) is None


def test_non_object_is_rejected() -> None:
    assert first_error("news_event", ["not", "an", "object"]) is not None
    assert first_error("news_event", "text") is not None


def test_unknown_kind_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown schema kind 'tweet'"):
        validate("tweet", {})


def test_dlq_headers_decode_into_a_valid_record() -> None:
    headers = [
        (schemas.DLQ_REASON, b"invalid_utf8"),
        (schemas.DLQ_DETAIL, b"byte 0xff at position 3"),
        (schemas.DLQ_SOURCE_TOPIC, b"news.raw"),
        (schemas.DLQ_SOURCE_PARTITION, b"0"),
        (schemas.DLQ_SOURCE_OFFSET, b"42"),
        (schemas.DLQ_FAILED_AT, b"2026-11-28T14:03:12.001Z"),
        ("traceparent", b"00-abc-def-01"),
    ]
    decoded = schemas.decode_headers(headers)
    assert decoded[schemas.DLQ_SOURCE_OFFSET] == "42"
    assert first_error("dlq_record", decoded) is None
    assert first_error("dlq_record", schemas.decode_headers(headers[1:])) == (
        "field 'finsignal.error.reason': is required"
    )
