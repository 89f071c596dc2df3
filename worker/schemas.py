"""Compiled JSON Schema validators (jsonschema-rs) for every event type.

The schema files live in the top-level ``schemas/`` folder (one file per event type and major
version). A checkout reads them from there; an installed wheel ships them as data files under
``<prefix>/share/finsignal/schemas`` (see ``[tool.setuptools.data-files]`` in pyproject.toml).

Error messages name the field ("field 'sentiment.label': ...") and never dump the whole payload.
A schema may carry ``"x-messages": {"<schema path>": "<message>"}`` to replace the library's
wording for a keyword whose default message is unhelpful (``anyOf``, a ``pattern``).
"""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs

from worker.config import REPO_ROOT

# kind -> file name; the major version is part of the contract (a v2 is a new kind entry).
SCHEMA_FILES: dict[str, str] = {
    "news_event": "news_event.v1.json",
    "signal": "signal.v1.json",
    "dlq_record": "dlq_record.v1.json",
    "kb_entry": "kb_entry.v1.json",
    "alert": "alert.v1.json",
}
KINDS: tuple[str, ...] = tuple(SCHEMA_FILES)

_MAX_VALUE_CHARS = 60

# Kafka headers of a DLQ record (schemas/dlq_record.v1.json); the value is the original bytes.
DLQ_REASON = "finsignal.error.reason"
DLQ_DETAIL = "finsignal.error.detail"
DLQ_SOURCE_TOPIC = "finsignal.source.topic"
DLQ_SOURCE_PARTITION = "finsignal.source.partition"
DLQ_SOURCE_OFFSET = "finsignal.source.offset"
DLQ_FAILED_AT = "finsignal.failed_at"
# Kafka header of a signal record: the story fingerprint of its text (worker.story.story_id), so the
# alert stage counts the copies of one story once. Absent when the text has no content words.
STORY_HEADER = "finsignal.story"


class SchemaError(ValueError):
    """A payload does not match its schema; ``str()`` reads "field 'x': message"."""

    def __init__(self, kind: str, path: str, message: str) -> None:
        self.kind = kind
        self.path = path  # dotted field path ("sentiment.label", "tickers[2]"); "" for the whole object
        self.message = message
        super().__init__(f"field '{path}': {message}" if path else message)


def schema_dir() -> Path:
    """The folder holding the schema files (checkout first, then the installed data files)."""
    candidates = [REPO_ROOT / "schemas", Path(sys.prefix) / "share" / "finsignal" / "schemas"]
    for folder in candidates:
        if (folder / SCHEMA_FILES["news_event"]).is_file():
            return folder
    raise FileNotFoundError(
        "finsignal schema files not found; looked in " + ", ".join(str(c) for c in candidates)
    )


@cache
def load_schema(kind: str) -> dict[str, Any]:
    """The parsed schema document of ``kind``."""
    try:
        name = SCHEMA_FILES[kind]
    except KeyError:
        raise ValueError(f"unknown schema kind {kind!r}; known: {', '.join(KINDS)}") from None
    schema: dict[str, Any] = json.loads((schema_dir() / name).read_text(encoding="utf-8"))
    return schema


@cache
def validator(kind: str) -> Any:
    """Compiled validator of ``kind`` (format checks on, so date-time strings are checked)."""
    return jsonschema_rs.validator_for(load_schema(kind), validate_formats=True)


def validate(kind: str, obj: Any) -> None:
    """Raise SchemaError describing the first problem when ``obj`` does not match ``kind``."""
    compiled = validator(kind)
    if compiled.is_valid(obj):
        return
    error = next(iter(compiled.iter_errors(obj)))
    raise _to_schema_error(kind, error)


def first_error(kind: str, obj: Any) -> str | None:
    """Fast path for the hot loop: None when valid, else the readable message (no exception)."""
    compiled = validator(kind)
    if compiled.is_valid(obj):
        return None
    return str(_to_schema_error(kind, next(iter(compiled.iter_errors(obj)))))


def decode_headers(headers: list[tuple[str, bytes]] | None) -> dict[str, str]:
    """Kafka record headers as the {name: UTF-8 text} map that dlq_record.v1 describes."""
    return {name: value.decode("utf-8", errors="replace") for name, value in headers or []}


def _to_schema_error(kind: str, error: Any) -> SchemaError:
    path = list(error.instance_path)
    schema_path = "/".join(str(p) for p in error.schema_path)
    custom = load_schema(kind).get("x-messages", {}).get(schema_path)
    detail = error.kind
    name = type(detail).__name__
    if name == "Required":
        path.append(detail.property)
        message = custom or "is required"
    elif name == "AdditionalProperties":
        unexpected = list(detail.unexpected)
        if len(unexpected) == 1:
            path.append(unexpected[0])
            message = custom or "unknown field (not allowed here)"
        else:
            message = custom or f"unknown fields {', '.join(map(repr, unexpected))} (not allowed here)"
    elif custom:
        message = custom
    elif name == "Enum":
        allowed = ", ".join(json.dumps(o) for o in detail.options)
        message = f"{_short(error.instance)} is not one of [{allowed}]"
    elif name == "MaxLength" and isinstance(error.instance, str):
        message = f"is longer than {detail.limit} characters ({len(error.instance)} given)"
    elif name in ("AnyOf", "OneOfNotValid"):
        message = f"matches none of the allowed alternatives ({name})"
    else:
        message = _shorten_values(error.message, error.instance)
    return SchemaError(kind, _dotted(path), message)


def _dotted(path: list[Any]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _MAX_VALUE_CHARS else text[:_MAX_VALUE_CHARS] + "..."


def _shorten_values(message: str, instance: Any) -> str:
    # The library quotes the offending value in full; a 60 kB text must not end up in a log line.
    text = json.dumps(instance, ensure_ascii=False) if not isinstance(instance, (dict, list)) else None
    if text is not None and len(text) > _MAX_VALUE_CHARS and text in message:
        return message.replace(text, text[:_MAX_VALUE_CHARS] + '..."', 1)
    if isinstance(instance, (dict, list)) and len(message) > 200:
        return message[:200] + "..."
    return message
