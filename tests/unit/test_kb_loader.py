"""KB files: whole KBs and deltas, refused with line and field when anything is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kb_sync.loader import (
    DEFAULT_KB_PATH,
    KBFileError,
    apply_delta_entries,
    load_default_kb,
    load_kb_file,
    parse_kb_lines,
)
from kb_sync.model import SENTIMENTS, STANDARD_GROUPS, KBEntry

TOPICS_20 = {
    "Analyst Update", "Fed | Central Banks", "Company | Product News", "Treasuries | Corporate Debt",
    "Dividend", "Earnings", "Energy | Oil", "Financials", "Currencies", "General News | Opinion",
    "Gold | Metals | Materials", "IPO", "Legal | Regulation", "M&A | Investments", "Macro", "Markets",
    "Politics", "Personnel Change", "Stock Commentary", "Stock Movement",
}  # fmt: skip


def entry(entry_id: str = "e1", **changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": entry_id,
        "kind": "term",
        "text": "profit warning",
        "sentiment": "negative",
        "group": "corporate",
        "author": "tester",
    }
    base.update(changes)
    return base


def lines(*objs: object) -> list[str]:
    return [o if isinstance(o, str) else json.dumps(o) for o in objs]


def refused(*objs: object, delta: bool = False) -> KBFileError:
    with pytest.raises(KBFileError) as caught:
        parse_kb_lines(lines(*objs), delta=delta)
    return caught.value


def test_whole_kb_parses_in_order() -> None:
    parsed = parse_kb_lines(lines(entry("a"), "", entry("b", topic="Earnings", sentiment=None)))
    assert not parsed.delta
    assert [e.id for e in parsed.entries] == ["a", "b"]
    assert parsed.entries[1].topic == "Earnings" and parsed.entries[1].sentiment is None
    assert parsed.entries[0].weight == 1.0


def test_error_names_line_and_field() -> None:
    error = refused(entry("a"), entry("b"), entry("c", sentiment="bearish"))
    assert error.errors == [
        'line 3: field \'sentiment\': "bearish" is not one of ["negative", "neutral", "positive", null]'
    ]
    assert "line 3: field 'sentiment'" in str(error)


def test_all_problems_are_reported_together() -> None:
    error = refused(entry("a", text=""), "{not json", entry("c", weight=11), [1, 2])
    assert [e.split(":")[0] for e in error.errors] == ["line 1", "line 2", "line 3", "line 4"]
    assert "field 'text'" in error.errors[0]
    assert "not valid JSON" in error.errors[1]
    assert "field 'weight'" in error.errors[2]
    assert "expected a JSON object" in error.errors[3]


def test_refuses_no_text() -> None:
    error = refused(entry("a", text="   "))
    assert error.errors == ["line 1: field 'text': must contain a non-space character"]
    assert refused(entry("a", text=None)).errors[0].startswith("line 1: field 'text': ")
    without_text = entry("a")
    del without_text["text"]
    assert refused(without_text).errors == ["line 1: field 'text': is required"]


def test_refuses_oversize_text() -> None:
    error = refused(entry("a", text="x" * 1001))
    assert error.errors == ["line 1: field 'text': is longer than 1000 characters (1001 given)"]


def test_refuses_oversize_line() -> None:
    error = refused(entry("a", note="n" * 20_000))
    assert error.errors[0].startswith("line 1: line is ")


def test_refuses_unknown_sentiment_and_missing_labels() -> None:
    assert "field 'sentiment'" in refused(entry(sentiment="bullish")).errors[0]
    assert refused(entry(sentiment=None)).errors == [
        "line 1: needs a topic or a sentiment (at least one must be non-null)"
    ]


def test_refuses_duplicate_ids() -> None:
    error = refused(entry("a"), entry("b"), entry("a"))
    assert error.errors == ["line 3: field 'id': duplicate id 'a' (first on line 1)"]


def test_refuses_empty_kb() -> None:
    assert "empty KB" in refused("", "  ").errors[0]


def test_refuses_more_than_max_entries() -> None:
    with pytest.raises(KBFileError, match="exceed kb_max_entries=2"):
        parse_kb_lines(lines(entry("a"), entry("b"), entry("c")), max_entries=2)


def test_delta_lines_need_delta_flag_and_vice_versa() -> None:
    assert "publish it with --delta" in refused({"op": "upsert", **entry("a")}).errors[0]
    assert "field 'op'" in refused(entry("a"), delta=True).errors[0]
    assert "field 'op'" in refused({"op": "replace", **entry("a")}, delta=True).errors[0]


def test_delta_parses_upserts_and_removes() -> None:
    parsed = parse_kb_lines(
        lines({"op": "upsert", **entry("a", weight=2)}, {"op": "remove", "id": "b"}), delta=True
    )
    assert parsed.delta
    assert [e.id for e in parsed.upserts] == ["a"] and parsed.upserts[0].weight == 2.0
    assert parsed.removes == ("b",)


def test_delta_remove_line_is_strict() -> None:
    assert "field 'text'" in refused({"op": "remove", "id": "b", "text": "x"}, delta=True).errors[0]
    assert "field 'id'" in refused({"op": "remove"}, delta=True).errors[0]
    error = refused({"op": "upsert", **entry("a")}, {"op": "remove", "id": "a"}, delta=True)
    assert error.errors == ["line 2: field 'id': duplicate id 'a' (first on line 1)"]


def test_apply_delta_builds_on_base() -> None:
    base = tuple(KBEntry.from_dict(entry(i)) for i in ("a", "b", "c"))
    result = apply_delta_entries(
        base, [KBEntry.from_dict(entry("b", weight=3)), KBEntry.from_dict(entry("d"))], ["a"]
    )
    assert [(e.id, e.weight) for e in result] == [("b", 3.0), ("c", 1.0), ("d", 1.0)]


def test_apply_delta_refuses_unknown_remove_and_empty_result() -> None:
    base = (KBEntry.from_dict(entry("a")),)
    with pytest.raises(KBFileError, match="not in the current KB: 'zz'"):
        apply_delta_entries(base, [], ["zz"])
    with pytest.raises(KBFileError, match="leave the KB empty"):
        apply_delta_entries(base, [], ["a"])


def test_load_kb_file_reports_path_and_line(tmp_path: Path) -> None:
    path = tmp_path / "kb.jsonl"
    path.write_text(json.dumps(entry("a")) + "\n" + json.dumps(entry("b", group="Equities!")) + "\n")
    with pytest.raises(KBFileError) as caught:
        load_kb_file(path)
    assert str(caught.value).startswith(f"{path}: refused (1 problem):")
    assert "line 2: field 'group'" in str(caught.value)
    with pytest.raises(KBFileError, match="cannot read the file"):
        load_kb_file(tmp_path / "missing.jsonl")


def test_starter_kb_covers_topics_sentiments_and_groups() -> None:
    assert DEFAULT_KB_PATH.is_file()
    kb = load_default_kb()
    topics = {e.topic for e in kb if e.topic}
    assert topics >= TOPICS_20
    for topic in TOPICS_20:
        assert sum(e.topic == topic for e in kb) >= 3
    for sentiment in SENTIMENTS:
        assert sum(e.sentiment == sentiment and e.topic is None for e in kb) >= 6
    assert {e.group for e in kb} <= set(STANDARD_GROUPS)
    assert len({e.group for e in kb}) >= 8
