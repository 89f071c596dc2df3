"""The versioned KB store on a real Redis."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import redis

from kb_sync.loader import KBFileError, load_default_kb
from kb_sync.model import KBEntry
from kb_sync.store import KBConflict, KBCorrupt, KBNotFound, KBStore, KBTooLarge


def make_entry(entry_id: str, **changes: Any) -> KBEntry:
    entry = KBEntry(id=entry_id, kind="term", text=f"text of {entry_id}", group="macro", author="t",
                    sentiment="negative")  # fmt: skip
    return dataclasses.replace(entry, **changes)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url, socket_timeout=5)
    yield c
    c.close()


@pytest.fixture
def store(client: redis.Redis, unique_name: Callable[[str], str]) -> KBStore:
    return KBStore(client, unique_name("kb"))


def namespace_keys(client: redis.Redis, namespace: str) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for key in client.scan_iter(match=f"{namespace}:*"):
        out[key] = client.lrange(key, 0, -1) if client.type(key) == b"list" else client.get(key)
    return out


def test_publish_load_and_versions(store: KBStore) -> None:
    assert store.current_version() is None
    with pytest.raises(KBNotFound, match="no KB has been published"):
        store.load()
    kb = load_default_kb()
    assert store.publish(kb, author="alice", message="starter") == 1
    assert store.current_version() == 1
    snapshot = store.load()
    assert snapshot.version == 1 and snapshot.entries == kb
    assert (snapshot.author, snapshot.message) == ("alice", "starter")
    assert snapshot.published_at.endswith("Z")

    assert store.publish(kb[:10], author="bob") == 2
    assert store.current_version() == 2
    assert len(store.load()) == 10
    assert store.load(1).entries == kb  # old versions stay readable
    with pytest.raises(KBNotFound, match="KB version 9 is not stored"):
        store.load(9)


def test_publish_notifies_subscribers(store: KBStore, client: redis.Redis) -> None:
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(store.events_channel)
    try:
        version = store.publish([make_entry("a")], author="t")
        message = None
        for _ in range(20):
            message = pubsub.get_message(timeout=0.5)
            if message:
                break
        assert message is not None
        assert orjson.loads(message["data"]) == {"version": version}
    finally:
        pubsub.close()


def test_history_and_rollback(store: KBStore) -> None:
    v1 = store.publish([make_entry("a"), make_entry("b")], author="alice", message="first")
    v2 = store.apply_delta([make_entry("c")], ["a"], author="bob", message="add c, drop a")
    assert [e.id for e in store.load(v2).entries] == ["b", "c"]
    v3 = store.rollback(v1, author="carol")
    assert v3 == 3 and store.current_version() == 3
    assert store.load().entries == store.load(v1).entries
    history = store.history()
    assert [h["version"] for h in history] == [1, 2, 3]
    assert [h["action"] for h in history] == ["publish", "delta", "rollback"]
    assert [h["author"] for h in history] == ["alice", "bob", "carol"]
    assert history[2]["message"] == "rollback to v1"
    assert history[1]["parent"] == 1
    assert [h["entries"] for h in history] == [2, 2, 2]


def test_diff(store: KBStore) -> None:
    v1 = store.publish([make_entry("a"), make_entry("b"), make_entry("c")], author="t")
    v2 = store.apply_delta([make_entry("b", sentiment="positive"), make_entry("d")], ["c"], author="t")
    changes = store.diff(v1, v2)
    assert [e["id"] for e in changes["added"]] == ["d"]
    assert [e["id"] for e in changes["removed"]] == ["c"]
    assert [c["id"] for c in changes["changed"]] == ["b"]
    assert changes["changed"][0]["before"]["sentiment"] == "negative"
    assert changes["changed"][0]["after"]["sentiment"] == "positive"
    assert store.diff(v2, v2) == {"added": [], "removed": [], "changed": []}


def test_refusals_leave_redis_unchanged(store: KBStore, client: redis.Redis) -> None:
    store.publish([make_entry("a")], author="t")
    before = namespace_keys(client, store.namespace)
    with pytest.raises(KBFileError, match="empty KB"):
        store.publish([], author="t")
    with pytest.raises(KBFileError, match="leave the KB empty"):
        store.apply_delta([], ["a"], author="t")
    with pytest.raises(KBFileError, match="not in the current KB"):
        store.apply_delta([make_entry("z")], ["nope"], author="t")
    with pytest.raises(KBFileError, match="duplicate id 'x'"):
        store.publish([make_entry("x"), make_entry("x")], author="t")
    small = KBStore(client, store.namespace, max_entries=2)
    with pytest.raises(KBTooLarge, match="kb_max_entries=2"):
        small.publish([make_entry(str(i)) for i in range(3)], author="t")
    assert namespace_keys(client, store.namespace) == before
    assert store.current_version() == 1


def test_pointer_never_moves_back_and_stale_delta_is_rebased(store: KBStore, client: redis.Redis) -> None:
    store.publish([make_entry("a")], author="t")
    # A writer holding version 5 while version 6 already went live must lose, not roll the KB back.
    client.set(f"{store.namespace}:seq", 5)
    client.set(f"{store.namespace}:current", 7)
    with pytest.raises(KBConflict):
        store.publish([make_entry("b")], author="late")  # gets version 6 < current 7
    assert client.get(f"{store.namespace}:current") == b"7"
    assert client.exists(f"{store.namespace}:v:6") == 0  # the loser's blob is cleaned up


def test_concurrent_deltas_do_not_lose_updates(store: KBStore, redis_url: str) -> None:
    store.publish([make_entry("base")], author="t")
    errors: list[BaseException] = []

    def add(i: int) -> None:
        c = redis.Redis.from_url(redis_url, socket_timeout=5)
        try:
            KBStore(c, store.namespace).apply_delta([make_entry(f"w{i}")], [], author=f"w{i}")
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            c.close()

    threads = [threading.Thread(target=add, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert {e.id for e in store.load().entries} == {"base", "w0", "w1", "w2", "w3"}
    assert [h["version"] for h in store.history()] == sorted(h["version"] for h in store.history())


def test_corrupt_blob_is_detected(store: KBStore, client: redis.Redis) -> None:
    version = store.publish([make_entry("a")], author="t")
    client.set(f"{store.namespace}:v:{version}", b'[{"id": "a"}]')
    with pytest.raises(KBCorrupt, match="sha256"):
        store.load(version)


def test_invalid_entry_with_matching_checksum_is_detected(store: KBStore, client: redis.Redis) -> None:
    # Someone writes a blob and a matching meta by hand: the entries are still schema-checked.
    import hashlib

    version = store.publish([make_entry("a")], author="t")
    blob = orjson.dumps([{**make_entry("a").to_dict(), "sentiment": "bearish"}])
    raw_meta = client.get(f"{store.namespace}:v:{version}:meta")
    assert isinstance(raw_meta, bytes)
    meta = orjson.loads(raw_meta)
    meta["sha256"] = hashlib.sha256(blob).hexdigest()
    client.set(f"{store.namespace}:v:{version}", blob)
    client.set(f"{store.namespace}:v:{version}:meta", orjson.dumps(meta))
    with pytest.raises(KBCorrupt, match="entry 0: field 'sentiment'"):
        store.load(version)


def test_old_versions_are_pruned_but_history_kept(
    client: redis.Redis, unique_name: Callable[[str], str]
) -> None:
    store = KBStore(client, unique_name("kb"), keep_versions=2)
    for i in range(4):
        store.publish([make_entry(f"e{i}")], author="t")
    with pytest.raises(KBNotFound, match="pruned"):
        store.load(1)
    assert store.load(3).entries[0].id == "e2"
    assert len(store.history()) == 4


def test_namespaces_are_isolated(client: redis.Redis, unique_name: Callable[[str], str]) -> None:
    one, two = KBStore(client, unique_name("kb")), KBStore(client, unique_name("kb"))
    one.publish([make_entry("a")], author="t")
    assert two.current_version() is None
