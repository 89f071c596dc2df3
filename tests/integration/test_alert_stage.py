"""The alert stage on a real Kafka-protocol broker (Tansu): one burst -> one alert, across restarts."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer

from tests.integration.signals import make_signal as signal
from tests.integration.threads import run_in_thread
from worker.alerts.engine import format_time
from worker.alerts.signals import parse_time
from worker.alerts.stage import AlertStage, read_alerts
from worker.cli import main
from worker.config import Settings
from worker.schemas import validate

KEY = "entity:ACME"


def history(now: float) -> list[dict[str, Any]]:
    """3 h of ACME at 12 msg/h, one in five negative, plus a market-wide message every minute."""
    out = []
    t = now - 3 * 3600
    i = 0
    while t < now - 20 * 60:
        if i % 5 == 0:
            out.append(signal(f"h{i}", t, 0.9 if (i // 5) % 5 == 0 else 0.05))
        else:
            out.append(market(f"m{i}", t))
        i += 1
        t += 60
    return out


def market(signal_id: str, t: float) -> dict[str, Any]:
    s = signal(signal_id, t, 0.1)
    s["entities"] = []  # counts for the topic only
    return s


def burst(now: float, first: int = 0, last: int = 30) -> list[dict[str, Any]]:
    """ACME bad news at 6 per minute for 5 minutes from now-15 min; topics rotate so no topic surges."""
    start = now - 15 * 60
    return [signal(f"b{i}", start + 10 * i, 0.92, topic=f"Story {i % 10}") for i in range(first, last)]


def tail(now: float, start_min: float = 10.0, end_min: float = 1.0) -> list[dict[str, Any]]:
    t = now - start_min * 60
    out = []
    while t < now - end_min * 60:
        out.append(market(f"t{t:.0f}", t))
        t += 20
    return out


def produce(settings: Settings, signals: list[dict[str, Any]]) -> float:
    """Send in order (one key, one partition: the order is the event order); returns the newest time."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    for s in signals:
        producer.send(settings.signals_topic, key=KEY.encode(), value=orjson.dumps(s))
    producer.flush(10)
    producer.close()
    return max(parse_time(s["published_at"], "published_at") for s in signals)


@contextmanager
def running(settings: Settings) -> Iterator[AlertStage]:
    with run_in_thread(AlertStage(settings), name="alert-stage") as stage:
        yield stage


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def alerts_of(settings: Settings) -> list[dict[str, Any]]:
    return read_alerts(settings, idle_s=0.3, timeout_s=10)


def caught_up(stage: AlertStage, newest: float) -> Callable[[], bool]:
    return lambda: stage.ready.is_set() and (stage.engine.clock or 0) >= newest - 1


def test_burst_gives_one_alert_and_restarts_do_not_repeat_it(
    settings_factory: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_factory()
    now = time.time()
    produce(settings, history(now) + burst(now) + tail(now))

    with running(settings) as stage:
        wait_for("firing and resolved", lambda: len(alerts_of(settings)) >= 2, timeout_s=90)
        assert stage.engine.late_events == 0
    alerts = alerts_of(settings)
    assert [(a["status"], a["key"]) for a in alerts] == [("firing", KEY), ("resolved", KEY)]
    assert alerts[0]["id"] == alerts[1]["id"]
    for payload in alerts:
        validate("alert", payload)
    firing = alerts[0]
    assert firing["top_messages"] and firing["top_messages"][0]["id"].startswith("b")
    assert firing["negative_share"] > 3 * firing["baseline_share"]

    # `finsignal alerts tail` prints them one line each
    code = main(
        [
            "alerts",
            "tail",
            "--from-beginning",
            "--max",
            "2",
            "--idle-exit-s",
            "10",
            "--kafka-bootstrap",
            settings.kafka_bootstrap,
            "--alerts-topic",
            settings.alerts_topic,
        ]
    )
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and len(lines) == 2
    assert lines[0].startswith("FIRING") and lines[1].startswith("RESOLVED") and KEY in lines[0]

    # Restart in the same group: state is rebuilt from the signals topic, nothing is re-published.
    newest = produce(settings, tail(time.time(), start_min=1.0, end_min=0.0))
    with running(settings) as stage:
        wait_for("restarted stage to catch up", caught_up(stage, newest), timeout_s=60)
        assert stage.engine.events > 150  # the history was replayed, not just the new signals
    assert alerts_of(settings) == alerts

    # A new consumer group re-reads everything live (like a crash before any commit): the published
    # alerts put the key in its cooldown, so nothing is repeated.
    fresh = settings.model_copy(update={"alert_group_id": settings.alert_group_id + ".fresh"})
    with running(fresh) as stage:
        wait_for("fresh group to catch up", caught_up(stage, newest), timeout_s=60)
        assert stage.engine.cooldown_until(KEY) > newest - 3600
    assert alerts_of(settings) == alerts


def test_restart_in_the_middle_of_a_burst_neither_loses_nor_repeats(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory()
    now = time.time()
    newest = produce(settings, history(now) + burst(now, 0, 3))  # too few messages to fire yet

    with running(settings) as stage:
        wait_for("first part processed", caught_up(stage, newest), timeout_s=60)
    assert alerts_of(settings) == []

    produce(settings, burst(now, 3, 30) + tail(now))
    with running(settings) as stage:
        wait_for("firing and resolved", lambda: len(alerts_of(settings)) >= 2, timeout_s=90)
    alerts = alerts_of(settings)
    assert [(a["status"], a["key"]) for a in alerts] == [("firing", KEY), ("resolved", KEY)]
    # The firing window starts at the burst's first messages, which the first run had consumed.
    assert alerts[0]["window_start"] <= format_time(now - 15 * 60 + 30)


def test_restart_while_firing_resolves_the_published_alert_once(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory()
    now = time.time()
    newest = produce(settings, history(now) + burst(now))  # no calm tail yet: the key stays firing

    with running(settings) as stage:
        wait_for("firing", lambda: len(alerts_of(settings)) >= 1, timeout_s=90)
        wait_for("burst processed", caught_up(stage, newest), timeout_s=60)
    (firing,) = alerts_of(settings)
    assert firing["status"] == "firing" and firing["key"] == KEY

    produce(settings, tail(now))
    with running(settings) as stage:
        wait_for("resolved", lambda: len(alerts_of(settings)) >= 2, timeout_s=90)
        assert stage.engine.firing() == {}
    alerts = alerts_of(settings)
    assert [(a["status"], a["id"]) for a in alerts] == [("firing", firing["id"]), ("resolved", firing["id"])]
