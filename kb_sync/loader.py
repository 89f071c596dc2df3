"""Read KB files (JSON Lines) and check them completely before anything is written to Redis.

Two shapes:
- a whole KB: one kb_entry.v1 object per line, no "op" field;
- a delta: lines {"op": "upsert", ...entry} or {"op": "remove", "id": "..."}.

Every problem is reported with its line number and field ("line 12: field 'sentiment': ..."); one bad
line refuses the whole file, so a KB is never half-applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from kb_sync.model import KBEntry
from worker.schemas import SchemaError, validate

MAX_LINE_BYTES = 16_384  # an entry's text is capped at 1000 chars by the schema; this bounds the rest
MAX_REPORTED_ERRORS = 20
DEFAULT_KB_PATH = Path(__file__).resolve().parent / "data" / "default_kb.jsonl"


class KBFileError(ValueError):
    """A KB file was refused; ``errors`` holds one "line N: ..." message per problem."""

    def __init__(self, source: str, errors: Sequence[str]) -> None:
        self.source = source
        self.errors = list(errors)
        shown = self.errors[:MAX_REPORTED_ERRORS]
        more = len(self.errors) - len(shown)
        text = f"{source}: refused ({len(self.errors)} problem{'s' if len(self.errors) != 1 else ''}):\n  "
        text += "\n  ".join(shown)
        if more:
            text += f"\n  ... and {more} more"
        super().__init__(text)


@dataclass(frozen=True)
class KBFile:
    """A parsed, fully validated KB file."""

    source: str
    delta: bool
    entries: tuple[KBEntry, ...] = ()  # whole KB (delta=False) or the upserts (delta=True)
    removes: tuple[str, ...] = ()

    @property
    def upserts(self) -> tuple[KBEntry, ...]:
        return self.entries


def load_kb_file(path: str | Path, *, delta: bool = False, max_entries: int | None = None) -> KBFile:
    """Parse and validate a whole-KB file (``delta=False``) or a delta file; raises KBFileError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KBFileError(str(path), [f"cannot read the file: {exc.strerror}"]) from None
    return parse_kb_lines(raw.splitlines(), source=str(path), delta=delta, max_entries=max_entries)


def load_default_kb() -> tuple[KBEntry, ...]:
    """The starter KB shipped with the package (kb_sync/data/default_kb.jsonl)."""
    return load_kb_file(DEFAULT_KB_PATH).entries


def parse_kb_lines(
    lines: Iterable[bytes | str],
    *,
    source: str = "<kb>",
    delta: bool = False,
    max_entries: int | None = None,
) -> KBFile:
    """Validate every line; collect all problems, then either refuse (KBFileError) or return KBFile."""
    errors: list[str] = []
    entries: list[KBEntry] = []
    removes: list[str] = []
    first_line: dict[str, int] = {}  # id -> line where it first appeared (duplicates are refused)

    for number, line in enumerate(lines, start=1):
        raw = line.encode() if isinstance(line, str) else line
        if not raw.strip():
            continue
        parsed, problem = _parse_line(raw, number)
        if problem:
            errors.append(problem)
            continue
        assert parsed is not None
        op = parsed.pop("op", None)
        problem = _check_op(op, delta, number)
        if problem:
            errors.append(problem)
            continue
        entry_id = str(parsed.get("id"))
        if op == "remove":
            problem = _check_remove(parsed, number)
            if problem:
                errors.append(problem)
                continue
        else:
            try:
                validate("kb_entry", parsed)
            except SchemaError as exc:
                errors.append(f"line {number}: {exc}")
                continue
        if entry_id in first_line:
            errors.append(
                f"line {number}: field 'id': duplicate id {entry_id!r} (first on line {first_line[entry_id]})"
            )
            continue
        first_line[entry_id] = number
        if op == "remove":
            removes.append(entry_id)
        else:
            entries.append(KBEntry.from_dict(parsed, check=False))

    if not errors and not delta and not entries:
        errors.append("the file has no entries; refusing to publish an empty KB")
    if not errors and delta and not entries and not removes:
        errors.append("the delta file has no operations")
    if not errors and max_entries is not None and len(entries) > max_entries:
        errors.append(f"{len(entries)} entries exceed kb_max_entries={max_entries}")
    if errors:
        raise KBFileError(source, errors)
    return KBFile(source=source, delta=delta, entries=tuple(entries), removes=tuple(removes))


def apply_delta_entries(
    base: Iterable[KBEntry], upserts: Iterable[KBEntry], removes: Iterable[str], *, source: str = "<delta>"
) -> tuple[KBEntry, ...]:
    """The KB after a delta: removes must name existing ids; an empty result is refused."""
    result = {entry.id: entry for entry in base}
    missing = [entry_id for entry_id in removes if entry_id not in result]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:10])
        raise KBFileError(source, [f"remove: id(s) not in the current KB: {shown}"])
    for entry_id in removes:
        del result[entry_id]
    for entry in upserts:
        result[entry.id] = entry
    if not result:
        raise KBFileError(source, ["the delta would leave the KB empty; refusing"])
    return tuple(result.values())


def _parse_line(raw: bytes, number: int) -> tuple[dict[str, Any] | None, str | None]:
    if len(raw) > MAX_LINE_BYTES:
        return None, f"line {number}: line is {len(raw)} bytes, more than the {MAX_LINE_BYTES} allowed"
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, f"line {number}: not valid JSON ({exc})"
    if not isinstance(parsed, dict):
        return None, f"line {number}: expected a JSON object, got {type(parsed).__name__}"
    return parsed, None


def _check_op(op: object, delta: bool, number: int) -> str | None:
    if not delta and op is not None:
        return f"line {number}: field 'op': this is a delta file (lines have \"op\"); publish it with --delta"
    if delta and op not in ("upsert", "remove"):
        return f'line {number}: field \'op\': must be "upsert" or "remove" in a delta file (got {op!r})'
    return None


def _check_remove(parsed: dict[str, Any], number: int) -> str | None:
    extra = sorted(set(parsed) - {"id"})
    if extra:
        return f'line {number}: field \'{extra[0]}\': a remove line has only "op" and "id"'
    if not isinstance(parsed.get("id"), str) or not parsed["id"]:
        return f"line {number}: field 'id': is required (a non-empty string)"
    return None
