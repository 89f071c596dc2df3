"""Input decoding on the hot path: size cap, UTF-8, JSON, schema; failures become DLQ reasons.

Pure functions, no I/O. ``decode_event`` turns one Kafka record value into a ``NewsEvent`` or a
``DecodeFailure`` whose ``reason`` is one of ``REASONS`` (the DLQ reason contract of
docs/INTERNALS.md and schemas/dlq_record.v1.json); ``dlq_headers`` builds the Kafka headers of the
matching DLQ record (the record value stays the original bytes).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from worker.schemas import (
    DLQ_DETAIL,
    DLQ_FAILED_AT,
    DLQ_REASON,
    DLQ_SOURCE_OFFSET,
    DLQ_SOURCE_PARTITION,
    DLQ_SOURCE_TOPIC,
    first_error,
)

REASONS: tuple[str, ...] = ("too_large", "invalid_utf8", "malformed_json", "schema", "empty_text")
MAX_DETAIL_CHARS = 300  # a detail is a hint for a human, never the payload itself
# Original headers that would shadow ours in a {name: value} map are kept under this prefix.
ORIGINAL_HEADER_PREFIX = "original."
_DLQ_HEADER_NAMES = frozenset(
    (DLQ_REASON, DLQ_DETAIL, DLQ_SOURCE_TOPIC, DLQ_SOURCE_PARTITION, DLQ_SOURCE_OFFSET, DLQ_FAILED_AT)
)


@dataclass(frozen=True, slots=True)
class NewsEvent:
    """A valid schemas/news_event.v1.json object."""

    id: str
    text: str
    source: str
    published_at: str  # as given (RFC 3339)
    tickers: tuple[str, ...]
    payload: dict[str, Any]  # the parsed object (lang, url, metadata, extra fields)


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    reason: str  # one of REASONS
    detail: str  # short, human-readable; never the whole payload


def decode_event(raw: bytes | None, max_bytes: int) -> NewsEvent | DecodeFailure:
    """Decode one record value; checks run in order: empty, size, UTF-8, JSON, object, schema, blank text.

    The size cap is checked before any parsing, so an oversized message costs nothing. orjson parses
    the bytes directly (it validates UTF-8 itself); only when it fails is the value decoded with
    Python's strict UTF-8 codec to tell invalid_utf8 (with the byte position) from malformed_json.
    orjson stops at a nesting depth of 1024 with a JSONDecodeError, so deep nesting cannot crash us.

    Speed (timeit, 100k runs, shared 2-core dev box, one thread): about 380,000 msgs/s for a valid
    193-byte event (~2.6 us each; orjson alone is ~0.6 us, the rest is the schema check).
    """
    if not raw:
        return DecodeFailure("malformed_json", "empty message")
    size = len(raw)
    if size > max_bytes:
        return DecodeFailure(
            "too_large", f"message is {size} bytes, over the limit of {max_bytes} bytes (max_message_bytes)"
        )
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _json_failure(raw, exc)
    if not isinstance(obj, dict):
        return DecodeFailure("schema", f"expected a JSON object, got {_json_type(obj)}")
    error = first_error("news_event", obj)
    if error is not None:
        return _schema_failure(obj, error)
    text: str = obj["text"]
    if not text.strip():  # the schema's \S check and str.strip() differ on a few control characters
        return DecodeFailure("empty_text", "field 'text': must contain a non-space character")
    return NewsEvent(
        id=obj["id"],
        text=text,
        source=obj["source"],
        published_at=obj["published_at"],
        tickers=tuple(obj.get("tickers", ())),
        payload=obj,
    )


def dlq_headers(
    failure: DecodeFailure,
    topic: str,
    partition: int,
    offset: int,
    original_headers: list[tuple[str, bytes]] | None = None,
) -> list[tuple[str, bytes]]:
    """Kafka headers of the DLQ record for ``failure`` (schemas/dlq_record.v1.json once decoded).

    The six finsignal headers come first; the original record's headers are APPENDED after them
    unchanged, except one whose name is one of our six, which is renamed ``original.<name>`` so a
    {name: value} reading (worker.schemas.decode_headers) always sees this failure's values.
    """
    failed_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    headers: list[tuple[str, bytes]] = [
        (DLQ_REASON, failure.reason.encode()),
        (DLQ_DETAIL, _cap(failure.detail).encode("utf-8", errors="replace")),
        (DLQ_SOURCE_TOPIC, topic.encode("utf-8")),
        (DLQ_SOURCE_PARTITION, str(partition).encode()),
        (DLQ_SOURCE_OFFSET, str(offset).encode()),
        (DLQ_FAILED_AT, failed_at.encode()),
    ]
    for name, value in original_headers or ():
        if name in _DLQ_HEADER_NAMES:
            name = ORIGINAL_HEADER_PREFIX + name
        headers.append((name, value if value is not None else b""))  # kafka-python allows None values
    return headers


def _json_failure(raw: bytes, exc: orjson.JSONDecodeError) -> DecodeFailure:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return DecodeFailure(
            "invalid_utf8", f"invalid UTF-8 at byte {bad.start} (0x{raw[bad.start]:02x}): {bad.reason}"
        )
    return DecodeFailure("malformed_json", _cap(str(exc)))


def _schema_failure(obj: dict[str, Any], error: str) -> DecodeFailure:
    text = obj.get("text")
    if isinstance(text, str) and not text.strip():
        # The schema rejects blank text itself (minLength 1, pattern \S); "empty_text" tells users more.
        # It is the reason only when blank text is the sole problem: otherwise report the other one.
        other = first_error("news_event", {**obj, "text": "x"})
        if other is None:
            return DecodeFailure("empty_text", "field 'text': must contain a non-space character")
        return DecodeFailure("schema", _cap(f"{other}; field 'text' is blank too"))
    return DecodeFailure("schema", _cap(error))


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _cap(text: str) -> str:
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 3] + "..."
