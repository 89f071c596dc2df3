"""Decoding a KB version blob with the previous version's entries reused (kb_sync.store.DecodedEntries)."""

from __future__ import annotations

import orjson
import pytest

from kb_sync.store import DecodedEntries, KBCorrupt, decode_entries


def item(i: int, text: str | None = None, **extra: object) -> dict[str, object]:
    return {
        "id": f"t{i}",
        "kind": "exemplar",
        "text": text or f"shares of company {i} fell after the profit warning",
        "group": "equities",
        "author": "x",
        "sentiment": "negative",
        **extra,
    }


def test_unchanged_entries_are_reused_changed_ones_built_again() -> None:
    reuse = DecodedEntries()
    v1 = decode_entries(orjson.dumps([item(i) for i in range(5)]), 1, 100, reuse=reuse)
    assert (reuse.reused, reuse.built, len(reuse)) == (0, 5, 5)
    hashes = [e.content_hash for e in v1]  # cached on the entries
    changed = [item(0), item(1, "a new text"), item(3), item(4), item(9)]  # t2 removed, t9 added
    v2 = decode_entries(orjson.dumps(changed), 2, 100, reuse=reuse)
    assert (reuse.reused, reuse.built) == (3, 2)
    assert v2[0] is v1[0] and v2[2] is v1[3] and v2[3] is v1[4]  # the same objects, hashes included
    assert v2[0].content_hash == hashes[0]
    assert v2[1].text == "a new text" and v2[4].id == "t9"
    assert v2 == decode_entries(orjson.dumps(changed), 2, 100)  # same result as a plain decode


def test_only_byte_identical_json_is_reused() -> None:
    reuse = DecodedEntries()
    decode_entries(orjson.dumps([item(1, weight=1)]), 1, 100, reuse=reuse)
    # Equal in Python (1 == 1.0 == True) but other JSON: validated again, and true is refused.
    decode_entries(orjson.dumps([item(1, weight=1.0)]), 2, 100, reuse=reuse)
    assert reuse.reused == 0
    with pytest.raises(KBCorrupt, match="entry 0"):
        decode_entries(orjson.dumps([item(1, weight=True)]), 3, 100, reuse=reuse)
    # Key order differs: other bytes, so built again (and equal).
    reordered = dict(reversed(list(item(1, weight=1.0).items())))
    decode_entries(orjson.dumps([reordered]), 4, 100, reuse=reuse)
    assert (reuse.reused, reuse.built) == (0, 1)


def test_a_refused_version_keeps_the_last_good_one_for_reuse() -> None:
    reuse = DecodedEntries()
    first = decode_entries(orjson.dumps([item(1), item(2)]), 1, 100, reuse=reuse)
    bad = [item(1), {**item(2), "text": "x" * 5000}]
    with pytest.raises(KBCorrupt, match="entry 1"):
        decode_entries(orjson.dumps(bad), 2, 100, reuse=reuse)
    with pytest.raises(KBCorrupt, match="duplicate id"):
        decode_entries(orjson.dumps([item(1), item(1)]), 3, 100, reuse=reuse)
    again = decode_entries(orjson.dumps([item(1), item(2)]), 4, 100, reuse=reuse)
    assert (reuse.reused, reuse.built) == (2, 0)
    assert again[0] is first[0] and again[1] is first[1]
