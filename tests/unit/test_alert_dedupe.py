"""Copies of one story (the ``finsignal.story`` header) count once per key in the alert engine."""

from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.alerts.engine import AlertConfig, AlertEngine, SignalEvent, replay
from worker.alerts.signals import parse_signal, story_of
from worker.schemas import STORY_HEADER
from worker.story import story_id

T0 = 1_800_000_000.0
KEY = "entity:ACME"
TOPIC = "topic:Markets"
CLOCK = "topic:clock"


def ev(i: str, t: float, story: str | None, keys: tuple[str, ...] = (KEY,), p: float = 0.95) -> SignalEvent:
    return SignalEvent(id=i, event_time=t, keys=keys, p_negative=p, processed_time=t + 1.0, story=story)


def calm(start: float, end: float) -> list[SignalEvent]:
    """ACME at 12 msg/h, one negative in five, each a story of its own; a clock key every 20 s."""
    out = []
    t, i = start, 0
    while t < end:
        if i % 15 == 0:
            out.append(ev(f"c{i}", t, f"calm-{i}", p=0.9 if (i // 15) % 5 == 0 else 0.05))
        out.append(ev(f"k{i}", t + 1.0, None, keys=(CLOCK,), p=0.1))
        t, i = t + 20.0, i + 1
    return out


def merged(*parts: list[SignalEvent]) -> list[SignalEvent]:
    return sorted((e for part in parts for e in part), key=lambda e: (e.event_time, e.id))


def counted(engine: AlertEngine, events: list[SignalEvent], key: str = KEY) -> int:
    """How many of ``events`` the engine counted for ``key`` (processing them one by one)."""
    n = 0
    for event in events:
        before = engine.duplicates
        engine.process(event)
        n += key in event.keys and engine.duplicates == before
    return n


BURST_AT = T0 + 6 * 3600 + 45


def test_a_burst_of_copies_of_one_story_does_not_fire_but_distinct_stories_do() -> None:
    copies = [ev(f"b{i}", BURST_AT + 10 * i, "one-story") for i in range(30)]
    distinct = [replace(e, story=f"story-{i}") for i, e in enumerate(copies)]
    engine = AlertEngine()
    alerts = [a for e in merged(calm(T0, T0 + 7 * 3600), copies) for a in engine.process(e)]
    assert alerts == [] and engine.duplicates == 29
    alerts = replay(merged(calm(T0, T0 + 7 * 3600), distinct))
    assert [a.status for a in alerts if a.key == KEY] == ["firing", "resolved"]
    # with the dedupe switched off the copies fire like distinct stories
    off = replay(merged(calm(T0, T0 + 7 * 3600), copies), AlertConfig(dedupe_window_s=0))
    assert [a.status for a in off if a.key == KEY] == ["firing", "resolved"]


def test_copies_count_once_within_the_window_and_again_after_it() -> None:
    engine = AlertEngine(AlertConfig(dedupe_window_s=600))
    events = [
        ev("a", T0, "s"),
        ev("b", T0 + 100, "s"),  # a copy
        ev("c", T0 + 600, "s"),  # still within 600 s of the counted copy
        ev("d", T0 + 700, "s"),  # 700 s after the counted copy: a new telling, counted
        ev("e", T0 + 800, "s"),  # within 600 s of "d"
        ev("f", T0 + 800, None),  # no story: always counted
        ev("g", T0 + 800, "t"),
    ]
    assert counted(engine, events) == 4
    assert engine.duplicates == 3


def test_a_copy_arriving_before_its_original_still_counts_once() -> None:
    # Out of order within the allowed lateness: the later copy is read first, the original second.
    engine = AlertEngine()
    assert counted(engine, [ev("clock", T0 + 100, None, keys=(CLOCK,)), ev("copy", T0 + 90, "s")]) == 1
    assert counted(engine, [ev("original", T0 + 10, "s")]) == 0
    assert engine.duplicates == 1 and engine.late_events == 0


def test_stories_count_per_key() -> None:
    # The story was counted for ACME; a copy that also names the topic counts for the topic only.
    engine = AlertEngine()
    engine.process(ev("a", T0, "s", keys=(KEY,)))
    engine.process(ev("b", T0 + 5, "s", keys=(TOPIC, KEY)))
    assert engine.duplicates == 1
    assert counted(engine, [ev("c", T0 + 6, "s", keys=(TOPIC,))], key=TOPIC) == 0
    assert engine.duplicates == 2


def test_late_copies_are_deduplicated_too() -> None:
    engine = AlertEngine(AlertConfig(allowed_lateness_s=60))
    engine.process(ev("a", T0, "s"))
    engine.process(ev("clock", T0 + 600, None, keys=(CLOCK,)))
    before = engine.baseline(KEY)
    engine.process(ev("late-copy", T0 + 1, "s"))  # late (counted as such) and a copy: no baseline
    assert engine.duplicates == 1 and engine.late_events == 1
    assert engine.baseline(KEY) == before
    engine.process(ev("late-new", T0 + 1, "other"))  # a late new story feeds the baseline
    assert engine.duplicates == 1 and engine.late_events == 2
    assert engine.baseline(KEY).rate_per_s > before.rate_per_s


def test_story_memory_is_bounded_by_count_and_by_time() -> None:
    engine = AlertEngine(AlertConfig(dedupe_max_stories=3, dedupe_window_s=600))
    for i in range(5):
        engine.process(ev(f"s{i}", T0 + i, f"story-{i}"))
    assert engine.stories_held(KEY) == 3
    assert counted(engine, [ev("again-0", T0 + 10, "story-0")]) == 1  # the oldest was forgotten
    assert counted(engine, [ev("again-4", T0 + 10, "story-4")]) == 0  # the newest is remembered
    # the clock moves on (another key): the key's stories expire once no on-time copy could match
    for j in range(60):
        engine.process(ev(f"k{j}", T0 + 60 + 30 * j, None, keys=(CLOCK,)))
    assert engine.stories_held(KEY) == 0


def test_a_new_key_keeps_its_story_when_its_first_event_advances_the_clock() -> None:
    # T0 starts a window of buckets, where the engine evicts idle keys: the new key's story (noted
    # before its first bucket exists, in the same event) must survive that.
    engine = AlertEngine()
    engine.process(ev("clock", T0 - 10, None, keys=(CLOCK,)))
    engine.process(ev("first", T0 + 5, "s", keys=(TOPIC,)))
    assert engine.stories_held(TOPIC) == 1
    assert counted(engine, [ev("copy", T0 + 20, "s", keys=(TOPIC,))], key=TOPIC) == 0


def test_header_reading() -> None:
    story = story_id("Acme shares plunge after fraud probe")
    assert story is not None
    headers = [("finsignal.source.topic", b"news.raw"), (STORY_HEADER, story.encode())]
    assert story_of(headers) == story
    assert story_of(None) is None and story_of([]) is None
    assert story_of([(STORY_HEADER, b"\xff\xfe")]) is None
    assert story_of([(STORY_HEADER, b"")]) is None
    signal = {
        "id": "x",
        "published_at": "2027-01-15T08:00:00Z",
        "processed_at": "2027-01-15T08:00:01Z",
        "sentiment": {"probabilities": {"negative": 0.9}},
        "topic": {"label": "Markets"},
    }
    assert parse_signal(signal, story).story == story
    assert parse_signal(signal).story is None


def syndicated(seed: int, jitter_s: float) -> list[SignalEvent]:
    """40 stories on one key over 20 minutes, each told 1-4 times within 3 minutes, read with jitter."""
    rng = random.Random(seed)
    timed = []
    for s in range(40):
        t = T0 + 30.0 * s
        for c in range(rng.randint(1, 4)):
            when = t + (rng.uniform(0, 180) if c else 0.0)
            timed.append((when + rng.uniform(0, jitter_s), ev(f"{s}-{c}", when, f"st{s}", p=rng.random())))
    timed.sort(key=lambda pair: pair[0])
    return [e for _, e in timed]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.0, 100.0))
def test_each_story_counts_once_whatever_the_arrival_order(seed: int, jitter: float) -> None:
    events = syndicated(seed, jitter)
    engine = AlertEngine()  # lateness 120 s covers the jitter: nothing is late
    assert counted(engine, events) == 40
    assert engine.duplicates == len(events) - 40 and engine.late_events == 0
    assert replay(events) == replay(events)
