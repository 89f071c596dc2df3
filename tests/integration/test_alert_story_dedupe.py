"""On a real broker (Tansu): signals carrying one story fingerprint (the finsignal.story header) count
once per key, live and after a restart's rebuild; the same burst told as distinct stories fires."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from kafka import KafkaProducer
from prometheus_client import REGISTRY

from tests.integration.test_alert_stage import (
    KEY,
    alerts_of,
    burst,
    caught_up,
    history,
    running,
    tail,
    wait_for,
)
from worker.alerts.signals import parse_time
from worker.config import Settings
from worker.schemas import STORY_HEADER
from worker.story import story_id

REPEATS = "finsignal_alerts_story_repeats_total"


def produce(settings: Settings, items: list[tuple[dict[str, Any], str | None]]) -> float:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    for signal, story in items:
        headers = [(STORY_HEADER, story.encode())] if story is not None else []
        producer.send(settings.signals_topic, key=KEY.encode(), value=orjson.dumps(signal), headers=headers)
    producer.flush(10)
    producer.close()
    return max(parse_time(s["published_at"], "published_at") for s, _ in items)


def repeats_metric() -> float:
    return REGISTRY.get_sample_value(REPEATS) or 0.0


def test_copies_of_one_story_count_once_live_and_after_a_restart(
    settings_factory: Callable[..., Settings],
) -> None:
    now = time.time()
    one_story = story_id("ACME shares plunge after fraud probe")
    assert one_story is not None
    calm = [(s, None) for s in history(now)]  # no header: every signal counts, as before
    copies = [(s, one_story) for s in burst(now)]  # 30 copies, 6 a minute, over 10 rotating topics
    distinct = [(s, story_id(f"ACME slumps on story number {i}")) for i, s in enumerate(burst(now))]
    end = [(s, None) for s in tail(now)]

    # Control: the burst told as 30 distinct stories fires once.
    control = settings_factory()
    control = control.model_copy(
        update={
            "signals_topic": control.signals_topic + ".distinct",
            "alerts_topic": control.alerts_topic + ".distinct",
            "alert_group_id": control.alert_group_id + ".distinct",
        }
    )
    produce(control, calm + distinct + end)
    with running(control) as stage:
        wait_for("firing and resolved", lambda: len(alerts_of(control)) >= 2, timeout_s=90)
        assert stage.engine.duplicates == 0
    assert [(a["status"], a["key"]) for a in alerts_of(control)] == [("firing", KEY), ("resolved", KEY)]

    # The same burst as 30 copies of one story: ACME counts it once (29 repeats), each of the 10
    # topics once (2 repeats each): no alert.
    settings = settings_factory()
    before = repeats_metric()
    newest = produce(settings, calm + copies + end)
    repeats = 29 + 10 * 2
    with running(settings) as stage:
        # (a rebalance may rebuild the engine after it caught up: wait for the rebuilt one too)
        wait_for(
            f"{repeats} repeats counted",
            lambda: caught_up(stage, newest)() and stage.engine.duplicates == repeats,
            timeout_s=60,
        )
    assert repeats_metric() - before >= repeats  # and more if a rebalance re-read them live
    assert alerts_of(settings) == []

    # Restart: the rebuild re-reads the copies with their headers and still counts the story once.
    with running(settings) as stage:
        wait_for(
            "restarted stage to count the story once",
            lambda: caught_up(stage, newest)() and stage.engine.duplicates == repeats,
            timeout_s=60,
        )
        assert stage.engine.events > 150  # the history was replayed
    assert alerts_of(settings) == []
