"""worker.decode: every DLQ reason, the DLQ headers contract, and the demo stream's documented bad lines."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from worker.config import REPO_ROOT, Settings
from worker.decode import MAX_DETAIL_CHARS, REASONS, DecodeFailure, NewsEvent, decode_event, dlq_headers
from worker.schemas import (
    DLQ_DETAIL,
    DLQ_FAILED_AT,
    DLQ_REASON,
    DLQ_SOURCE_OFFSET,
    DLQ_SOURCE_PARTITION,
    DLQ_SOURCE_TOPIC,
    decode_headers,
    schema_dir,
    validate,
)

MAX = Settings.model_fields["max_message_bytes"].default
DATA = REPO_ROOT / "worker" / "data"
EXAMPLES = schema_dir() / "examples"


def event(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "n-1",
        "text": "Acme Robotics shares plunge after the company slashes its outlook.",
        "source": "newswire",
        "published_at": "2026-03-02T13:30:00Z",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def raw(obj: Any) -> bytes:
    return orjson.dumps(obj)


def failure(value: bytes | None, max_bytes: int = MAX) -> DecodeFailure:
    result = decode_event(value, max_bytes)
    assert isinstance(result, DecodeFailure), f"expected a failure, got {result!r}"
    assert result.reason in REASONS
    assert len(result.detail) <= MAX_DETAIL_CHARS
    return result


def test_valid_event_keeps_fields_and_payload() -> None:
    obj = event(lang="en", tickers=["ACME", "MSFT"], url="https://x.test/a", metadata={"desk": "eq"}, extra=1)
    result = decode_event(raw(obj), MAX)
    assert isinstance(result, NewsEvent)
    assert (result.id, result.source, result.published_at) == ("n-1", "newswire", "2026-03-02T13:30:00Z")
    assert result.text == obj["text"]
    assert result.tickers == ("ACME", "MSFT")
    assert result.payload == obj


def test_schema_examples_decode_as_the_schema_says() -> None:
    for path in sorted(EXAMPLES.glob("news_event.*.json")):
        result = decode_event(path.read_bytes(), MAX)
        if path.name.endswith(".invalid.json"):
            assert isinstance(result, DecodeFailure), path.name
        else:
            assert isinstance(result, NewsEvent), (path.name, result)
            assert result.tickers == tuple(json.loads(path.read_text()).get("tickers", ()))


@pytest.mark.parametrize("value", [None, b""])
def test_empty_value_is_malformed_json(value: bytes | None) -> None:
    result = failure(value)
    assert (result.reason, result.detail) == ("malformed_json", "empty message")


def test_72kb_text_is_too_large_and_detail_gives_both_sizes() -> None:
    value = raw(event(text="Markets " * 9000))
    assert len(value) > MAX
    result = failure(value)
    assert result.reason == "too_large"
    assert str(len(value)) in result.detail and str(MAX) in result.detail


def test_size_is_checked_before_parsing() -> None:
    # Garbage over the cap is too_large, not malformed_json: the parser never sees it.
    assert failure(b"\xff" * 1000, max_bytes=999).reason == "too_large"
    assert isinstance(decode_event(raw(event()), max_bytes=len(raw(event()))), NewsEvent)  # cap inclusive


def test_invalid_utf8_names_the_byte_position() -> None:
    value = (
        b'{"id": "u", "text": "caf'
        + b"\xe9"
        + b' ok", "source": "s", "published_at": "2026-03-02T13:30:00Z"}'
    )
    position = value.index(b"\xe9")
    result = failure(value)
    assert result.reason == "invalid_utf8"
    assert f"byte {position}" in result.detail


def test_invalid_utf8_wins_over_malformed_json() -> None:
    assert failure(b'{"text": "\xff').reason == "invalid_utf8"
    assert failure(b'"\xed\xa0\x80"').reason == "invalid_utf8"  # UTF-8-encoded surrogate


def test_truncated_json_is_malformed_json_with_a_short_detail() -> None:
    value = raw(event())[:-7]
    result = failure(value)
    assert result.reason == "malformed_json"
    assert result.detail and result.detail != "empty message"
    assert value.decode() not in result.detail


@pytest.mark.parametrize(
    ("value", "kind"),
    [(b"[1, 2]", "array"), (b'"text"', "string"), (b"42", "number"), (b"null", "null"), (b"true", "boolean")],
)
def test_json_that_is_not_an_object_is_schema(value: bytes, kind: str) -> None:
    result = failure(value)
    assert result.reason == "schema"
    assert kind in result.detail


def test_missing_text_is_schema_and_names_the_field() -> None:
    result = failure(raw(event(text=None)))
    assert result.reason == "schema"
    assert "'text'" in result.detail


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("text", 42),
        ("published_at", 1772458200),
        ("id", ["a"]),
        ("tickers", "ACME"),
        ("published_at", "soon"),
    ],
)
def test_wrong_types_are_schema_and_name_the_field(field: str, value: Any) -> None:
    result = failure(raw(event(**{field: value})))
    assert result.reason == "schema"
    assert f"field '{field}'" in result.detail


@pytest.mark.parametrize("text", ["", "   ", " \n\t ", "\u00a0\u2003"])
def test_blank_text_is_empty_text(text: str) -> None:
    result = failure(raw(event(text=text)))
    assert result.reason == "empty_text"
    assert "'text'" in result.detail


def test_blank_text_example_file_is_empty_text() -> None:
    assert failure((EXAMPLES / "news_event.blank_text.invalid.json").read_bytes()).reason == "empty_text"


def test_blank_text_with_another_problem_reports_the_other_problem() -> None:
    result = failure(raw(event(text=" ", id=None)))
    assert result.reason == "schema"
    assert "field 'id'" in result.detail and "blank" in result.detail


def test_text_the_schema_accepts_but_strip_removes_is_empty_text() -> None:
    # \x1f is no regex \s (the schema lets it through) but str.strip() removes it.
    assert failure(raw(event(text="\x1f\x1e"))).reason == "empty_text"


def test_control_characters_inside_text_are_kept() -> None:
    text = "Acme\x00 halted\x07\x1b[0m after\ttrading\r\nresumes \u2028 later"
    result = decode_event(raw(event(text=text)), MAX)
    assert isinstance(result, NewsEvent)
    assert result.text == text


@pytest.mark.parametrize("shape", ["array", "object"])
def test_10k_deep_nesting_fails_cleanly(shape: str) -> None:
    depth = 10_000
    value = b"[" * depth + b"]" * depth if shape == "array" else b'{"a":' * depth + b"1" + b"}" * depth
    result = failure(value)
    assert result.reason == "malformed_json"
    inner = b'{"id": "d", "text": "t", "source": "s", "published_at": "2026-03-02T13:30:00Z", "metadata": '
    deep_metadata = inner + b'{"a":' * depth + b"1" + b"}" * depth + b"}"
    assert failure(deep_metadata, max_bytes=len(deep_metadata)).reason == "malformed_json"


def test_long_schema_detail_is_capped() -> None:
    result = failure(raw(event(**{"id": "x" * 5000})))
    assert result.reason == "schema"
    assert "x" * 100 not in result.detail


# --- DLQ headers -------------------------------------------------------------------------------


def test_dlq_headers_validate_against_dlq_record_schema() -> None:
    fail = failure(b"{oops")
    headers = dlq_headers(fail, "news.raw", 3, 18422, [("trace-id", b"abc"), ("bin", b"\xff\x00")])
    assert all(isinstance(n, str) and isinstance(v, bytes) for n, v in headers)
    record = decode_headers(headers)
    validate("dlq_record", record)
    assert record[DLQ_REASON] == "malformed_json"
    assert record[DLQ_DETAIL] == fail.detail
    assert (record[DLQ_SOURCE_TOPIC], record[DLQ_SOURCE_PARTITION], record[DLQ_SOURCE_OFFSET]) == (
        "news.raw",
        "3",
        "18422",
    )
    failed_at = datetime.fromisoformat(record[DLQ_FAILED_AT])
    assert failed_at.utcoffset() is not None and failed_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert record[DLQ_FAILED_AT].endswith("Z")
    # original headers are appended after ours, unchanged
    assert headers[6:] == [("trace-id", b"abc"), ("bin", b"\xff\x00")]


def test_dlq_headers_every_reason_validates() -> None:
    for reason in REASONS:
        record = decode_headers(dlq_headers(DecodeFailure(reason, "d" * 5000), "t", 0, 0))
        validate("dlq_record", record)
        assert len(record[DLQ_DETAIL]) <= MAX_DETAIL_CHARS


def test_original_dlq_headers_do_not_shadow_ours() -> None:
    # A DLQ record replayed into the input topic carries old finsignal headers.
    original = [(DLQ_REASON, b"too_large"), (DLQ_SOURCE_OFFSET, b"1"), ("k", None)]
    headers = dlq_headers(DecodeFailure("schema", "field 'id': is required"), "news.raw", 0, 7, original)  # type: ignore[list-item]
    record = decode_headers(headers)
    validate("dlq_record", record)
    assert record[DLQ_REASON] == "schema"
    assert record[DLQ_SOURCE_OFFSET] == "7"
    assert record["original." + DLQ_REASON] == "too_large"
    assert record["k"] == ""


# --- the demo stream ---------------------------------------------------------------------------

# README wording of each bad line -> the reason it must get.
WHY_TO_REASON = {
    "invalid JSON": "malformed_json",
    "no `text` field": "schema",
    "`text` is a number": "schema",
    "`text` is empty": "empty_text",
    "invalid UTF-8": "invalid_utf8",
    "72,000 bytes": "too_large",
    "`published_at` is a number": "schema",
}


def readme_bad_lines() -> dict[int, tuple[str, str]]:
    """line number -> (id, expected reason), from the table in worker/data/README.md."""
    rows = re.findall(
        r"^\|\s*(\d+)\s*\|\s*(bad-[\w-]+)\s*\|\s*(.+?)\s*\|$", (DATA / "README.md").read_text(), re.M
    )
    out = {}
    for line, bad_id, why in rows:
        reasons = [reason for phrase, reason in WHY_TO_REASON.items() if phrase in why]
        assert len(reasons) == 1, f"README row for {bad_id} ({why!r}) maps to {reasons}"
        out[int(line)] = (bad_id, reasons[0])
    return out


def readme_good_count() -> int:
    match = re.search(r"^- (\d+) good events", (DATA / "README.md").read_text(), re.M)
    assert match, "worker/data/README.md no longer states the good event count"
    return int(match.group(1))


def test_sample_stream_decodes_to_the_documented_counts_and_reasons() -> None:
    expected = readme_bad_lines()
    assert expected, "no bad lines found in worker/data/README.md"
    lines = Path(DATA / "sample_stream.jsonl").read_bytes().splitlines()
    good = 0
    failures: dict[int, str] = {}
    for number, line in enumerate(lines, start=1):
        result = decode_event(line, MAX)
        if isinstance(result, NewsEvent):
            good += 1
            assert not result.id.startswith("bad-")
        else:
            failures[number] = result.reason
    assert good == readme_good_count()
    assert failures == {line: reason for line, (_, reason) in expected.items()}
    for line, (bad_id, _) in expected.items():
        assert f'"id": "{bad_id}"'.encode() in lines[line - 1]
