"""The reorder buffer on its own: per-partition and per-source watermarks, idle streams, bounds,
commit offsets."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from worker.alerts.engine import AlertConfig, AlertEngine, SignalEvent
from worker.alerts.reorder import ReorderBuffer

T0 = 1_800_000_000.0
HOUR = 3600.0


def event(i: int, t: float, p_negative: float = 0.1, key: str = "entity:ACME") -> SignalEvent:
    return SignalEvent(id=f"s{i}", event_time=t, keys=(key,), p_negative=p_negative)


def always(_: str) -> bool:
    return True


def never(_: str) -> bool:
    return False


def chunks(items: list[SignalEvent], size: int) -> list[list[SignalEvent]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def two_partitions() -> tuple[list[SignalEvent], list[SignalEvent]]:
    """p0: 3 h of a calm key, then a burst; p1: the same 3 h shifted 2 h ahead (a partition read faster)."""
    p0 = [event(i, T0 + 60 * i) for i in range(180)]
    p0 += [event(1000 + i, T0 + 3 * HOUR + 10 * i, 0.95) for i in range(12)]
    p1 = [event(2000 + i, T0 + 2 * HOUR + 60 * i, key="entity:OTHER") for i in range(180)]
    return p0, p1


def test_a_partition_far_ahead_waits_and_events_come_out_in_event_time_order() -> None:
    p0, p1 = two_partitions()
    buffer: ReorderBuffer[str, str] = ReorderBuffer(idle_s=5.0, max_records=10_000, max_wait_s=600.0)
    buffer.track(["p0", "p1"], now=0.0)
    released: list[SignalEvent] = []
    arrival: list[SignalEvent] = []
    offsets = {"p0": 0, "p1": 0}
    # The consumer hands over p1's whole backlog first, then p0 in chunks, as a fetcher would.
    for name, chunk in [("p1", c) for c in chunks(p1, 60)] + [("p0", c) for c in chunks(p0, 40)]:
        for item in chunk:
            buffer.add(name, offsets[name], item, now=1.0)
            offsets[name] += 1
            arrival.append(item)
        out = buffer.release(now=1.0, caught_up=never)
        if name == "p1":
            assert out == []  # p0 has shown nothing yet: its events could be older than all of p1's
        released.extend(out)
        assert all(e.event_time <= buffer.current_watermark for e in out)

    assert [e.event_time for e in released] == sorted(e.event_time for e in released)
    assert buffer.forced == 0
    held = len(buffer)
    assert held == sum(1 for e in p1 if e.event_time > p0[-1].event_time)  # only what p0 has not reached
    engine = AlertEngine(AlertConfig())
    alerts = [a for e in released for a in engine.process(e)]
    assert engine.late_events == 0
    assert [(a.key, a.status) for a in alerts] == [("entity:ACME", "firing")]

    # the control: the same events in the order they arrived make the burst late and miss it
    control = AlertEngine(AlertConfig())
    control_alerts = [a for e in arrival for a in control.process(e)]
    assert control.late_events > 150
    assert not [a for a in control_alerts if a.key == "entity:ACME"]


def interleaved_sources() -> list[tuple[str, SignalEvent]]:
    """One signals partition carrying two input partitions' signals, interleaved record by record:
    s1 runs 2 h ahead of s0 at every offset (as a classify stage reading s1 faster would write them)."""
    s0, s1 = two_partitions()
    out: list[tuple[str, SignalEvent]] = []
    for i in range(max(len(s0), len(s1))):
        out += [("s1", s1[i])] if i < len(s1) else []
        out += [("s0", s0[i])] if i < len(s0) else []
    return out


def replay_one_partition(records: list[tuple[str, SignalEvent]], with_headers: bool) -> list[SignalEvent]:
    buffer: ReorderBuffer[str, str] = ReorderBuffer(idle_s=5.0, max_records=10_000, max_wait_s=600.0)
    buffer.track(["p0"], now=0.0)
    if with_headers:
        buffer.expect(["s0", "s1"], now=0.0)  # the stage looks up the source topic's partitions
    released: list[SignalEvent] = []
    for offset, (source, item) in enumerate(records):
        buffer.add("p0", offset, item, now=1.0, source=source if with_headers else None)
        released.extend(buffer.release(now=1.0, caught_up=never))
        assert all(e.event_time <= buffer.current_watermark for e in released)
    released.extend(buffer.release(now=10.0, caught_up=always))  # the partition is read to its end
    assert buffer.forced == 0 and len(buffer) == 0
    return released


def test_two_sources_interleaved_in_one_partition_come_out_in_event_time_order() -> None:
    records = interleaved_sources()
    released = replay_one_partition(records, with_headers=True)

    assert len(released) == len(records)
    assert [e.event_time for e in released] == sorted(e.event_time for e in released)
    engine = AlertEngine(AlertConfig())
    alerts = [a for e in released for a in engine.process(e)]
    assert engine.late_events == 0
    # one alert: it fires on the burst and resolves on s1's later calm hours
    assert [(a.key, a.status) for a in alerts] == [("entity:ACME", "firing"), ("entity:ACME", "resolved")]
    assert alerts[0].id == alerts[1].id


def test_records_without_source_headers_fall_back_to_the_partition_watermark() -> None:
    # The same records from an older worker (no headers): the partition is the only source, its
    # watermark is s1's newest time, so s0's events go at once, in arrival order, and count late.
    records = interleaved_sources()
    released = replay_one_partition(records, with_headers=False)

    assert [e.id for e in released] == [e.id for _, e in records]
    engine = AlertEngine(AlertConfig())
    alerts = [a for e in released for a in engine.process(e)]
    assert engine.late_events > 150
    assert not [a for a in alerts if a.key == "entity:ACME"]


def test_an_expected_source_holds_every_partition_back_until_it_proves_idle() -> None:
    buffer: ReorderBuffer[str, str] = ReorderBuffer(idle_s=5.0, max_records=100, max_wait_s=600.0)
    buffer.track(["p0", "p1"], now=0.0)
    assert buffer.stream_count == 2  # one placeholder per partition: any source may be in it
    buffer.add("p0", 0, event(0, T0 + 100), now=1.0, source="s0")
    buffer.expect(["s0", "s1"], now=1.0)  # the caller knows the source topic has two partitions
    # placeholders retired; s0 and s1 expected on both partitions
    assert buffer.stream_count == 4 and buffer.knows("s1")
    buffer.add("p1", 0, event(1, T0 + 200), now=1.0, source="s0")
    assert buffer.release(now=1.0, caught_up=always) == []  # s1 has said nothing yet
    buffer.add("p1", 1, event(2, T0 + 50), now=2.0, source="s1")  # s1 was behind: not late
    assert buffer.release(now=2.0, caught_up=always) == []  # s1 on p0 is still expected
    assert buffer.current_watermark == -math.inf
    # s1 stays quiet on p0: after idle_s with p0 caught up it stops holding; s1 on p1 holds at T0+50
    assert buffer.release(now=6.5, caught_up=lambda p: p != "p0") == []
    assert [e.id for e in buffer.release(now=6.5, caught_up=always)] == ["s2"]
    assert buffer.current_watermark == T0 + 50  # s1 on p1 was quiet for 4.5 s only
    out = buffer.release(now=7.0, caught_up=always)  # every stream idle: all final
    assert [e.id for e in out] == ["s0", "s1"] and buffer.forced == 0
    assert buffer.commit_offsets() == {"p0": 1, "p1": 2}


def test_an_idle_caught_up_partition_stops_holding_the_watermark() -> None:
    buffer: ReorderBuffer[str, str] = ReorderBuffer(idle_s=5.0, max_records=100, max_wait_s=600.0)
    buffer.track(["p0", "p1"], now=0.0)  # p1 is assigned but empty
    for i in range(10):
        buffer.add("p0", i, event(i, T0 + i), now=1.0)

    assert buffer.release(now=4.9, caught_up=always) == []  # p1 may still bring older events
    lagging: Callable[[str], bool] = lambda p: p != "p1"  # noqa: E731
    assert buffer.release(now=60.0, caught_up=lagging) == []  # quiet but not at its end: not idle
    out = buffer.release(now=60.0, caught_up=always)
    assert [e.id for e in out] == [f"s{i}" for i in range(10)]
    assert buffer.forced == 0 and len(buffer) == 0

    # Every partition idle released everything, but the watermark is the newest time seen, not +inf:
    # once p0 is heard from again, p1 (active again too) holds back newer events.
    buffer.add("p1", 0, event(20, T0 + 30), now=61.0)
    buffer.add("p0", 10, event(21, T0 + 40), now=61.0)
    out = buffer.release(now=61.0, caught_up=always)
    assert [e.id for e in out] == ["s20"] and buffer.current_watermark == T0 + 30
    assert math.isfinite(buffer.current_watermark)
    assert [e.id for e in buffer.release(now=70.0, caught_up=always)] == ["s21"]


def test_a_partition_that_wakes_up_behind_does_not_move_the_watermark_back() -> None:
    buffer: ReorderBuffer[str, str] = ReorderBuffer(idle_s=5.0, max_records=100, max_wait_s=600.0)
    buffer.track(["p0", "p1"], now=0.0)
    buffer.add("p0", 0, event(0, T0 + 100), now=10.0)
    assert [e.id for e in buffer.release(now=10.0, caught_up=always)] == ["s0"]  # p1 idle and empty
    buffer.add("p1", 0, event(1, T0 + 50), now=11.0)  # p1 wakes up behind: its event goes at once
    buffer.add("p0", 1, event(2, T0 + 200), now=11.0)  # newer than p1's watermark: held for p1
    assert [e.id for e in buffer.release(now=11.0, caught_up=always)] == ["s1"]
    assert buffer.current_watermark == T0 + 100
    buffer.add("p1", 1, event(3, T0 + 250), now=12.0)
    assert [e.id for e in buffer.release(now=12.0, caught_up=always)] == ["s2"]
    assert buffer.current_watermark == T0 + 200


def test_the_buffer_is_bounded_in_size_and_in_waiting_time() -> None:
    buffer: ReorderBuffer[str, str] = ReorderBuffer(idle_s=5.0, max_records=5, max_wait_s=30.0)
    buffer.track(["p0", "p1"], now=0.0)  # p1 never speaks and never counts as caught up
    for i in range(8):
        buffer.add("p0", i, event(i, T0 + 10 * (8 - i)), now=1.0)  # newest first: oldest last
    out = buffer.release(now=1.0, caught_up=never)
    assert [e.event_time for e in out] == [T0 + 10, T0 + 20, T0 + 30]  # the three oldest, in order
    assert buffer.forced == 3 and len(buffer) == 5

    assert buffer.release(now=30.9, caught_up=never) == []
    buffer.add("p0", 8, event(8, T0 + 5), now=20.0)  # 1 over the size bound: the oldest goes
    assert [e.id for e in buffer.release(now=20.0, caught_up=never)] == ["s8"]
    out = buffer.release(now=31.0, caught_up=never)  # the first five waited 30 s: forced out
    assert [e.event_time for e in out] == [T0 + 40, T0 + 50, T0 + 60, T0 + 70, T0 + 80]
    assert buffer.forced == 9 and len(buffer) == 0


def test_commit_offsets_stop_at_the_first_record_still_held() -> None:
    buffer: ReorderBuffer[str, str] = ReorderBuffer(idle_s=5.0, max_records=100, max_wait_s=600.0)
    buffer.track(["p0", "p1"], now=0.0)
    assert buffer.commit_offsets() == {}  # nothing seen: nothing to commit
    buffer.add("p0", 0, None, now=0.0)  # an unreadable record is done at once
    assert buffer.commit_offsets() == {"p0": 1}
    buffer.add("p0", 1, event(1, T0 + 300), now=0.0)  # held: p1 may be older
    buffer.add("p0", 2, event(2, T0 + 100), now=0.0)
    buffer.add("p1", 7, event(3, T0 + 200), now=0.0)
    out = buffer.release(now=0.0, caught_up=never)
    # watermark T0+200: offsets 2 (p0) and 7 (p1) go, offset 1 (T0+300) stays
    assert [e.id for e in out] == ["s2", "s3"]
    assert buffer.commit_offsets() == {"p0": 1, "p1": 8}  # offset 2 is done, but 1 is not
    buffer.add("p1", 8, event(4, T0 + 400), now=1.0)
    assert [e.id for e in buffer.release(now=1.0, caught_up=never)] == ["s1"]
    assert buffer.commit_offsets() == {"p0": 3, "p1": 8}


def test_drain_hands_over_everything_in_order() -> None:
    buffer: ReorderBuffer[str, str] = ReorderBuffer(idle_s=0.0, max_records=100, max_wait_s=600.0)
    buffer.track(["p0", "p1"], now=0.0)
    buffer.add("p0", 0, event(0, T0 + 30), now=0.0)
    buffer.add("p0", 1, event(1, T0 + 10), now=0.0)
    assert buffer.release(now=0.0, caught_up=never) == []
    assert [e.id for e in buffer.drain()] == ["s1", "s0"]
    assert len(buffer) == 0 and buffer.commit_offsets() == {"p0": 2}


@pytest.mark.parametrize(
    ("idle_s", "max_records", "max_wait_s"), [(-1.0, 10, 1.0), (1.0, 0, 1.0), (1.0, 10, 0.0)]
)
def test_bad_bounds_are_refused_with_the_setting_names(
    idle_s: float, max_records: int, max_wait_s: float
) -> None:
    with pytest.raises(ValueError, match="alert_partition_idle_s"):
        ReorderBuffer(idle_s, max_records, max_wait_s)
