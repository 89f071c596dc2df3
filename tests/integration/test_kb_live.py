"""The KB live on a real Redis and a real Tansu broker: rollback, the embedding cache across workers, and
`finsignal kb publish` refusals that leave Redis untouched.

The worker helpers (``running``, ``send``, ``read_topic``, ``scrape``) come from test_worker_e2e.py. Both
workers of a test run in this process and share the default prometheus registry, so cache figures are
deltas of the process-wide counters (read from the registry, before and after each worker starts).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from prometheus_client import REGISTRY
from test_worker_e2e import read_topic, running, scrape, send

from kb_sync import cli as kb_cli
from kb_sync.loader import load_default_kb
from kb_sync.model import KBEntry
from kb_sync.store import KBStore
from worker.commands.run import Stages
from worker.config import Settings

NEW_TOPIC = "Lunar Widgets"
MESSAGE = "Quorvex tokens soar as the Lunar Widget Exchange lists them for trading"
EXEMPLARS = (
    "Quorvex tokens soar as the Lunar Widget Exchange lists them",
    "Lunar Widget Exchange lists new widget tokens for trading",
    "Widget tokens jump after a Lunar Widget Exchange listing",
)


def _event(event_id: str, text: str) -> bytes:
    published = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return orjson.dumps({"id": event_id, "text": text, "source": "test", "published_at": published})


def _signal(settings: Settings, event_id: str, total: int) -> dict[str, Any]:
    """The signal of ``event_id`` once ``total`` signals are on the topic (it is read from the start)."""
    signals = [orjson.loads(v) for _, v, _ in read_topic(settings, settings.signals_topic, total)]
    (found,) = [s for s in signals if s["id"] == event_id]
    return found


def _wait_kb_version(stages: Stages, version: int, timeout_s: float = 10.0) -> None:
    start = time.monotonic()
    while scrape(stages)["finsignal_kb_version"] != version:
        assert time.monotonic() - start < timeout_s, f"KB v{version} not serving within {timeout_s} s"
        time.sleep(0.2)


@pytest.fixture
def kb_store(settings_factory: Callable[..., Settings]) -> Iterator[KBStore]:
    settings = settings_factory()
    client = redis.Redis.from_url(settings.redis_url)
    yield KBStore(client, settings.kb_namespace)
    for key in client.scan_iter(f"{settings.kb_namespace}*"):
        client.delete(key)
    client.close()


def test_rollback_removes_a_new_topic_and_restores_the_old_prediction(
    settings_factory: Callable[..., Settings], kb_store: KBStore
) -> None:
    settings = settings_factory(kb_poll_interval_s=1.0)
    v1 = kb_store.publish(load_default_kb(), author="test")
    with running(settings) as stages:
        send(settings, [_event("before", MESSAGE)])
        before = _signal(settings, "before", 1)
        assert before["kb_version"] == v1 and before["topic"]["label"] != NEW_TOPIC

        exemplars = [
            KBEntry(
                id=f"lunar:{i}", kind="exemplar", text=t, group="crypto", author="expert", topic=NEW_TOPIC
            )
            for i, t in enumerate(EXEMPLARS)
        ]
        v2 = kb_store.apply_delta(exemplars, [], author="expert")
        _wait_kb_version(stages, v2)
        send(settings, [_event("published", MESSAGE)])
        published = _signal(settings, "published", 2)
        assert published["kb_version"] == v2
        assert published["topic"]["label"] == NEW_TOPIC and published["topic"]["kb_only"] is True

        v3 = kb_store.rollback(v1, author="expert")
        assert v3 > v2
        _wait_kb_version(stages, v3)
        send(settings, [_event("rolled-back", MESSAGE)])
        after = _signal(settings, "rolled-back", 3)

    assert after["kb_version"] == v3, "the signal names the rollback's version, not the one restored"
    assert after["topic"]["label"] == before["topic"]["label"] != NEW_TOPIC
    assert after["sentiment"]["label"] == before["sentiment"]["label"]
    assert [e["id"] for e in after["evidence"]] == [e["id"] for e in before["evidence"]]
    assert not any(e["id"].startswith("lunar:") for e in after["evidence"])


def test_a_second_worker_embeds_no_points(
    settings_factory: Callable[..., Settings], kb_store: KBStore
) -> None:
    settings = settings_factory(kb_poll_interval_s=1.0)
    entries = load_default_kb()
    version = kb_store.publish(entries, author="test")
    unique_points = len({e.content_hash for e in entries})  # the cache is keyed by content hash
    embedded, hits = "finsignal_kb_points_embedded_total", "finsignal_kb_embed_cache_hits_total"

    def counters() -> dict[str, float]:
        return {name: REGISTRY.get_sample_value(name) or 0.0 for name in (embedded, hits)}

    at_start = counters()
    with running(settings) as first:
        _wait_kb_version(first, version)
        after_first = counters()
        with running(settings) as second:
            _wait_kb_version(second, version)
            after_second = counters()
            send(settings, [_event("second", "Acme Corp cuts full-year guidance, shares tumble")])
            signal = _signal(settings, "second", 1)

    # The first worker found an empty cache (fresh namespace) and embedded every point; the second
    # embedded none and took every point from the cache.
    assert after_first[embedded] - at_start[embedded] == unique_points
    assert after_first[hits] - at_start[hits] == 0
    assert after_second[embedded] - after_first[embedded] == 0, "the second worker embedded points"
    assert after_second[hits] - after_first[hits] == unique_points
    assert signal["kb_version"] == version and signal["evidence"]


# --- `finsignal kb publish` refusals -----------------------------------------------------------------


def _run_kb(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="finsignal")
    kb_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["kb", *argv])
    return int(args.handler(args))


def _row(entry_id: str, **changes: object) -> dict[str, object]:
    row: dict[str, object] = {"id": entry_id, "kind": "term", "text": f"text of {entry_id}",
                              "sentiment": "negative", "group": "macro", "author": "t"}  # fmt: skip
    row.update(changes)
    return {k: v for k, v in row.items() if v is not _MISSING}


_MISSING = object()


def _redis_state(client: redis.Redis, namespace: str) -> dict[bytes, Any]:
    """Every key of the namespace with its value (strings) or list (history)."""
    state: dict[bytes, Any] = {}
    for key in client.scan_iter(f"{namespace}*"):
        kind = client.type(key)
        state[key] = client.lrange(key, 0, -1) if kind == b"list" else client.dump(key)
    return state


@pytest.mark.parametrize(
    ("lines", "delta", "expected"),
    [
        pytest.param([_row("a"), _row("b", text=_MISSING)], False,
                     ["line 2: field 'text': is required"], id="no-text"),
        pytest.param([_row("a", sentiment="bullish")], False,
                     ["line 1: field 'sentiment':", '"bullish" is not one of'], id="unknown-sentiment"),
        pytest.param([_row("a"), _row("b"), _row("c", text="x" * 1001)], False,
                     ["line 3: field 'text': is longer than 1000 characters"], id="oversize-text"),
        pytest.param([{"op": "upsert", **_row("d", sentiment="bullish")}], True,
                     ["line 1: field 'sentiment':"], id="delta-unknown-sentiment"),
        pytest.param([], False, ["refusing to publish an empty KB"], id="empty-whole-file"),
        pytest.param([{"op": "remove", "id": "keep:1"}, {"op": "remove", "id": "keep:2"}], True,
                     ["would leave the KB empty"], id="delta-empties-kb"),
    ],
)  # fmt: skip
def test_publish_refusals_name_line_and_field_and_change_nothing_in_redis(
    lines: list[dict[str, object]],
    delta: bool,
    expected: list[str],
    redis_url: str,
    unique_name: Callable[[str], str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    namespace = unique_name("kb")
    flags = ["--redis-url", redis_url, "--kb-namespace", namespace, "--author", "t"]
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps(_row(f"keep:{i}")) + "\n" for i in (1, 2)))
    assert _run_kb(["publish", str(good), *flags]) == 0
    client = redis.Redis.from_url(redis_url)
    try:
        before = _redis_state(client, namespace)
        assert before, "the first publish wrote nothing"
        capsys.readouterr()

        bad = tmp_path / "bad.jsonl"
        bad.write_text("".join(json.dumps(line) + "\n" for line in lines))
        assert _run_kb(["publish", str(bad), *(["--delta"] if delta else []), *flags]) == 1
        err = capsys.readouterr().err
        assert err.startswith("finsignal kb publish:")
        for fragment in expected:
            assert fragment in err, err
        assert _redis_state(client, namespace) == before, "a refused publish changed Redis"
        assert KBStore(client, namespace).current_version() == 1
    finally:
        for key in client.scan_iter(f"{namespace}*"):
            client.delete(key)
        client.close()
