"""KBEntry round trip and content hash."""

from __future__ import annotations

import dataclasses

import pytest

from kb_sync.model import KBEntry, KBSnapshot
from worker.schemas import SchemaError

RAW = {
    "id": "eq:1",
    "kind": "exemplar",
    "text": "The company lowered its outlook.",
    "topic": "Earnings",
    "sentiment": "negative",
    "weight": 2.0,
    "group": "equities",
    "author": "a",
    "entities": ["ACME"],
    "note": "n",
}


def test_round_trip() -> None:
    entry = KBEntry.from_dict(RAW)
    assert entry.entities == ("ACME",)
    assert entry.to_dict() == RAW
    assert KBEntry.from_dict(entry.to_dict()) == entry


def test_defaults_and_minimal_dict() -> None:
    entry = KBEntry.from_dict({"id": "t", "kind": "term", "text": "hawkish", "sentiment": "negative",
                               "group": "rates", "author": "a"})  # fmt: skip
    assert (entry.weight, entry.topic, entry.entities, entry.note) == (1.0, None, (), None)
    assert "entities" not in entry.to_dict() and "note" not in entry.to_dict()


def test_from_dict_validates() -> None:
    with pytest.raises(SchemaError, match="field 'kind'"):
        KBEntry.from_dict({**RAW, "kind": "rumour"})


def test_content_hash_tracks_meaning_not_authorship() -> None:
    entry = KBEntry.from_dict(RAW)
    assert len(entry.content_hash) == 64
    assert dataclasses.replace(entry, author="b", note="other").content_hash == entry.content_hash
    assert dataclasses.replace(entry, id="eq:2").content_hash == entry.content_hash
    for change in ({"text": "x"}, {"sentiment": "positive"}, {"topic": "IPO"}, {"weight": 1.0},
                   {"group": "macro"}, {"kind": "phrase"}, {"entities": ("XYZ",)}):  # fmt: skip
        assert dataclasses.replace(entry, **change).content_hash != entry.content_hash, change


def test_entry_is_frozen() -> None:
    entry = KBEntry.from_dict(RAW)
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.text = "y"  # type: ignore[misc]


def test_snapshot_helpers() -> None:
    a = KBEntry.from_dict(RAW)
    b = dataclasses.replace(a, id="x", topic="Brand New", group="crypto")
    snapshot = KBSnapshot(version=3, entries=(a, b), published_at="2026-11-28T00:00:00Z", author="me")
    assert len(snapshot) == 2
    assert snapshot.by_id()["x"] is b
    assert snapshot.topics == ("Brand New", "Earnings")
    assert snapshot.groups == ("crypto", "equities")
