"""The pure alert engine: firing, resolving, cooldown, hysteresis, lateness, priors, determinism."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.alerts.engine import Alert, AlertConfig, AlertEngine, SignalEvent, alert_id, replay
from worker.alerts.synthetic import burst_trial

T0 = 1_800_000_000.0  # a whole number of buckets: 2027-01-15T08:00:00Z
KEY = "entity:ACME"
CLOCK = "topic:clock"


def ev(event_id: str, t: float, keys: tuple[str, ...], p: float, text: str | None = None) -> SignalEvent:
    return SignalEvent(
        id=event_id,
        event_time=t,
        keys=keys,
        p_negative=p,
        processed_time=t + 1.0,
        text=text,
        model={"name": "m", "version": "1"},
        kb_version=3,
    )


def calm(start: float, end: float, every_s: float = 300.0, prefix: str = "c") -> list[SignalEvent]:
    """ACME at 12 msg/h with one negative in five (share ~0.22), plus a clock key every 20 s."""
    out = []
    i = 0
    t = start
    while t < end:
        if i % 15 == 0:
            p = 0.9 if (i // 15) % 5 == 0 else 0.05
            out.append(ev(f"{prefix}{i}", t, (KEY,), p))
        out.append(ev(f"{prefix}k{i}", t + 1.0, (CLOCK,), 0.1))
        i += 1
        t += every_s / 15
    return out


def burst(
    start: float, minutes: float, per_min: float = 6.0, p: float = 0.9, prefix: str = "b"
) -> list[SignalEvent]:
    step = 60.0 / per_min
    n = int(minutes * per_min)
    return [ev(f"{prefix}{i}", start + i * step, (KEY,), p, text=f"ACME slumps {i}") for i in range(n)]


def merged(*parts: list[SignalEvent]) -> list[SignalEvent]:
    return sorted((e for part in parts for e in part), key=lambda e: (e.event_time, e.id))


def run(events: list[SignalEvent], config: AlertConfig | None = None) -> tuple[AlertEngine, list[Alert]]:
    engine = AlertEngine(config)
    alerts: list[Alert] = []
    for event in events:
        alerts.extend(engine.process(event))
    return engine, alerts


BURST_AT = T0 + 6 * 3600 + 45  # mid-bucket


def standard_stream() -> list[SignalEvent]:
    return merged(calm(T0, T0 + 7 * 3600), burst(BURST_AT, 5))


def test_burst_fires_once_then_resolves_with_the_same_id() -> None:
    _, alerts = run(standard_stream())
    acme = [a for a in alerts if a.key == KEY]
    assert [a.status for a in acme] == ["firing", "resolved"]
    firing, resolved = acme
    assert firing.id == resolved.id == alert_id(KEY, firing.window_start)
    assert firing.id.startswith("entity:ACME@2027-01-15T14:")
    assert firing.window_start % 30 == 0  # aligned on the bucket grid
    assert BURST_AT - 60 <= firing.window_start <= BURST_AT  # the span starts where the evidence does
    assert firing.window_end - BURST_AT <= 120  # within two minutes of event time
    assert firing.negative_share > 2.5 * firing.baseline_share
    config = AlertConfig()
    assert firing.count >= config.min_messages and firing.negative_count >= config.min_count
    assert firing.key_type == "entity"
    # the window slides past the burst, then the key is calm again
    assert resolved.window_end >= BURST_AT + 5 * 60
    assert resolved.window_end <= BURST_AT + 5 * 60 + 300 + 60
    assert resolved.count >= 30 and resolved.peak_score >= firing.score
    assert not [a for a in alerts if a.key != KEY]


def test_no_alert_on_a_calm_stream() -> None:
    _, alerts = run(calm(T0, T0 + 12 * 3600))
    assert alerts == []


def test_top_messages_are_the_most_negative_with_text() -> None:
    config = AlertConfig(top_messages=2)
    _, alerts = run(standard_stream(), config)
    firing = alerts[0]
    assert len(firing.top_messages) == 2
    assert all(m.text and m.text.startswith("ACME slumps") for m in firing.top_messages)
    ordered = sorted(firing.top_messages, key=lambda m: (-m.p_negative, m.id))
    assert list(firing.top_messages) == ordered
    assert firing.model == {"name": "m", "version": "1"} and firing.kb_version == 3
    assert firing.created_at > firing.window_end  # the triggering signal's processed_at


def test_a_long_burst_gives_one_alert_hysteresis() -> None:
    # 40 minutes of burst with gaps of 2 minutes: the score dips but stays above the resolve level.
    parts = [burst(BURST_AT + k * 240, 2, prefix=f"b{k}-") for k in range(10)]
    _, alerts = run(merged(calm(T0, T0 + 8 * 3600), *parts))
    assert [a.status for a in alerts if a.key == KEY] == ["firing", "resolved"]


def test_cooldown_blocks_a_second_burst_soon_after_then_allows_a_later_one() -> None:
    config = AlertConfig(cooldown_s=1800)
    soon = BURST_AT + 15 * 60  # after the first resolves (~10 min after its start), inside the cooldown
    late = BURST_AT + 60 * 60  # well after the cooldown
    events = merged(
        calm(T0, T0 + 8 * 3600), burst(BURST_AT, 5), burst(soon, 5, prefix="s"), burst(late, 5, prefix="l")
    )
    _, alerts = run(events, config)
    acme = [a for a in alerts if a.key == KEY]
    firing = [a for a in acme if a.status == "firing"]
    assert len(firing) == 2
    assert firing[0].window_start < soon <= late - 30 <= firing[1].window_start
    assert firing[0].id != firing[1].id
    resolved = [a for a in acme if a.status == "resolved"]
    assert [a.id for a in resolved] == [a.id for a in firing][: len(resolved)]


def test_quiet_key_resolves_as_event_time_moves_on() -> None:
    # After the burst ACME says nothing at all; other keys' events move the clock and resolve it.
    events = merged(calm(T0, BURST_AT), burst(BURST_AT, 5))
    clock_only = [ev(f"x{i}", BURST_AT + 300 + 20 * i, (CLOCK,), 0.1) for i in range(60)]
    _, alerts = run(events + clock_only)
    assert [a.status for a in alerts if a.key == KEY] == ["firing", "resolved"]


def test_late_events_are_counted_and_feed_the_baseline_only() -> None:
    engine, _ = run(calm(T0, T0 + 3600))
    before = engine.baseline(KEY)
    late = [ev(f"late{i}", T0 + 600 + i, (KEY,), 0.95) for i in range(10)]  # 50 min behind the clock
    alerts = [a for e in late for a in engine.process(e)]
    assert alerts == []
    assert engine.late_events == 10
    after = engine.baseline(KEY)
    assert after.share > before.share  # folded into the statistics, not dropped


def test_events_within_the_lateness_still_count_for_the_window() -> None:
    config = AlertConfig()
    events = standard_stream()
    # Deliver the burst's events 60 s late (inside the 120 s allowed lateness): same single alert.
    delayed = sorted(events, key=lambda e: e.event_time + (60.0 if e.id.startswith("b") else 0.0))
    engine, alerts = run(delayed, config)
    assert engine.late_events == 0
    assert [a.status for a in alerts if a.key == KEY] == ["firing", "resolved"]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), jitter=st.floats(0.0, 100.0))
def test_out_of_order_arrival_within_lateness_still_one_alert(seed: int, jitter: float) -> None:
    rng = random.Random(seed)
    events = sorted(standard_stream(), key=lambda e: e.event_time + rng.uniform(0.0, jitter))
    engine, alerts = run(events)
    assert engine.late_events == 0
    statuses = [a.status for a in alerts if a.key == KEY]
    assert statuses == ["firing", "resolved"]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 100_000))
def test_replay_is_deterministic(seed: int) -> None:
    events = list(burst_trial(seed, warmup_hours=3.0).events)
    first = replay(events)
    second = replay(events)
    assert first == second
    assert len({(a.id, a.status) for a in first}) == len(first)  # ids never repeat for a status


def test_new_key_does_not_alert_on_its_first_messages() -> None:
    # A key never seen before gets 10 messages in 5 minutes, 7 of them negative: the prior says that
    # can be its normal; after hours of a quiet, mostly positive history the same is a surge. (At the
    # alert_surge_llr of 5 nats the same 10 in 4 minutes fire on a new key too.)
    first = [ev(f"n{i}", BURST_AT + 30 * i, (KEY,), 0.9 if i % 4 else 0.05) for i in range(10)]
    clock = [ev(f"k{i}", BURST_AT + 10 * i, (CLOCK,), 0.1) for i in range(60)]
    _, alerts = run(merged(first, clock))
    assert alerts == []
    _, alerts = run(merged(calm(T0, BURST_AT - 60), first, clock))
    assert [a.status for a in alerts if a.key == KEY][:1] == ["firing"]


def test_baseline_is_frozen_while_firing() -> None:
    engine = AlertEngine()
    for e in merged(calm(T0, T0 + 6 * 3600), burst(BURST_AT, 3)):
        engine.process(e)
        if e.event_time < BURST_AT:
            before = engine.baseline(KEY)
    assert KEY in engine.firing()
    for e in calm(BURST_AT + 200, BURST_AT + 3600, prefix="z"):
        engine.process(e)
    after = engine.baseline(KEY)
    assert after.share == pytest.approx(before.share, abs=0.05)


def test_repeats_of_one_story_are_no_surge() -> None:
    # Four copies of one negative story within 30 s on a quiet key: with the story fingerprint (the
    # finsignal.story header) they count once, no surge. Without it (signals of an older classify
    # stage) they look like four bad stories within 30 s, which the defaults take for a burst;
    # alert_min_messages = 5 keeps them out then (see worker/alerts/TUNING.md).
    copies = [replace(ev(f"r{i}", BURST_AT + 75 + 10 * i, (KEY,), 0.95), story="one") for i in range(4)]
    _, alerts = run(merged(calm(T0, T0 + 7 * 3600), copies))
    assert alerts == []
    anonymous = [replace(e, story=None) for e in copies]
    _, alerts = run(merged(calm(T0, T0 + 7 * 3600), anonymous))
    assert [a.status for a in alerts][:1] == ["firing"]
    _, alerts = run(merged(calm(T0, T0 + 7 * 3600), anonymous), AlertConfig(min_messages=5))
    assert alerts == []


def test_severity_follows_the_score() -> None:
    # surge_llr 8 nats = 4 "sigmas": the score at which either test fires is >= 4
    config = AlertConfig(fire_score=4.0, warning_score=4.0, critical_score=100.0, surge_llr=8.0)
    _, alerts = run(standard_stream(), config)
    assert alerts[0].severity == "warning"
    config = replace(config, warning_score=50.0, critical_score=60.0)
    _, alerts = run(standard_stream(), config)
    assert alerts[0].severity == "info"
    _, alerts = run(standard_stream(), replace(config, warning_score=4.0, critical_score=4.0))
    assert alerts[0].severity == "critical"


def test_restore_firing_prevents_refire_and_resolves_the_restored_id() -> None:
    engine = AlertEngine()
    events = standard_stream()
    before = [e for e in events if e.event_time < BURST_AT]
    for e in before:
        engine.process(e)
    engine.restore_firing(KEY, "entity:ACME@published", BURST_AT, BURST_AT + 60, "warning", 0.2, 5.0, 8, 6.0)
    alerts = [a for e in events if e.event_time >= BURST_AT for a in engine.process(e)]
    assert [(a.status, a.id) for a in alerts if a.key == KEY] == [("resolved", "entity:ACME@published")]


def test_restore_resolved_starts_a_cooldown_and_forget_drops_an_episode() -> None:
    engine = AlertEngine(AlertConfig(cooldown_s=3600))
    events = standard_stream()
    for e in events:
        if e.event_time < BURST_AT:
            engine.process(e)
    engine.restore_resolved(KEY, BURST_AT - 60)
    assert engine.cooldown_until(KEY) == BURST_AT - 60 + 3600
    alerts = [a for e in events if e.event_time >= BURST_AT for a in engine.process(e)]
    assert alerts == []  # the burst falls inside the restored cooldown
    engine.restore_firing(KEY, "x", BURST_AT, BURST_AT, "info", 0.2, 5.0, 8, 6.0)
    engine.forget_episode(KEY)
    assert engine.firing() == {}


def test_config_errors_name_the_settings() -> None:
    with pytest.raises(ValueError, match="alert_resolve_score"):
        AlertConfig(resolve_score=5.0, fire_score=4.0)
    with pytest.raises(ValueError, match="alert_bucket_s"):
        AlertConfig(bucket_s=600.0, window_s=300.0)


def test_config_from_settings_reports_a_config_error() -> None:
    from worker.config import ConfigError, load_settings

    good = AlertConfig.from_settings(load_settings(alert_bucket_s=15, alert_min_messages=4))
    assert good.bucket_s == 15.0 and good.min_messages == 4 and good.n_buckets == 20
    with pytest.raises(ConfigError, match="alert_fire_score"):
        AlertConfig.from_settings(load_settings(alert_fire_score=1.0, alert_resolve_score=2.0))


def test_scan_reports_nothing_for_unknown_keys() -> None:
    engine = AlertEngine()
    assert engine.score("entity:NOPE").score == -math.inf
    engine.process(ev("a", T0, (KEY,), 0.5))
    assert engine.score(KEY).buckets == 0  # one message: below every minimum


SILENT = AlertConfig(fire_score=1e9, warning_score=1e9, critical_score=1e9, surge_llr=1e9)


def scan_after(events: list[SignalEvent]) -> tuple[float, float, int, float]:
    engine, alerts = run(events, SILENT)
    assert alerts == []
    scan = engine.score(KEY)
    return round(scan.score, 9), round(scan.llr, 9), scan.count, round(scan.negative, 9)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), jitter=st.floats(0.0, 110.0))
def test_window_and_scores_do_not_depend_on_arrival_order(seed: int, jitter: float) -> None:
    # Messages of the last few minutes delivered in any order within the allowed lateness leave the
    # same windows, counts and scores behind (bucket sums and first-message times commute).
    rng = random.Random(seed)
    history = calm(T0, BURST_AT)
    recent = [ev(f"r{i}", BURST_AT + rng.uniform(0, 240), (KEY,), rng.random()) for i in range(12)]
    recent += [ev(f"rk{i}", BURST_AT + 20 * i, (CLOCK,), 0.1) for i in range(13)]
    in_order = sorted(recent, key=lambda e: (e.event_time, e.id))
    shuffled = sorted(recent, key=lambda e: e.event_time + rng.uniform(0.0, jitter))
    assert scan_after(history + shuffled) == scan_after(history + in_order)


@settings(max_examples=30, deadline=None)
@given(
    lags=st.lists(st.floats(121.0, 3 * 3600.0), min_size=1, max_size=20),
    p=st.floats(0.0, 1.0),
)
def test_late_events_never_alert_nor_move_a_window(lags: list[float], p: float) -> None:
    engine, _ = run(merged(calm(T0, BURST_AT), burst(BURST_AT, 3)))
    before = engine.score(KEY)
    clock = engine.clock
    assert clock is not None
    late = [ev(f"late{i}", clock - lag, (KEY,), p) for i, lag in enumerate(lags)]
    assert [a for e in late for a in engine.process(e)] == []
    assert engine.late_events == len(lags)
    after = engine.score(KEY)
    assert (after.count, after.negative) == (before.count, before.negative)


def test_sequential_test_needs_the_messages_close_together() -> None:
    # Five bad stories on a quiet key within 40 s is a burst (it fires on the fourth); the same five
    # spread over 4.5 minutes is not.
    history = calm(T0, BURST_AT)
    clock = [ev(f"k{i}", BURST_AT + 10 * i, (CLOCK,), 0.1) for i in range(40)]
    compact = [ev(f"c{i}", BURST_AT + 10 * i, (KEY,), 0.85) for i in range(5)]
    spread = [ev(f"s{i}", BURST_AT + 65 * i, (KEY,), 0.85) for i in range(5)]
    _, alerts = run(merged(history, clock, compact))
    firing = [a for a in alerts if a.status == "firing"]
    assert [a.key for a in firing] == [KEY]
    assert firing[0].count == 4 and firing[0].window_end <= BURST_AT + 30
    _, alerts = run(merged(history, clock, spread))
    assert alerts == []


def test_min_span_lets_only_a_persisting_surge_fire() -> None:
    # Four bad stories within 30 s fire at once by default; with alert_surge_min_span_s = 45 they
    # must persist: alone they do not fire, followed by more of the same they do, a bit later.
    start = BURST_AT + 120  # 2 minutes after the key's last calm message
    history = calm(T0, BURST_AT + 400)
    clock = [ev(f"k{i}", start + 10 * i, (CLOCK,), 0.1) for i in range(40)]
    cluster = [ev(f"c{i}", start + 10 * i, (KEY,), 0.9) for i in range(4)]
    more = [ev(f"m{i}", start + 40 + 10 * i, (KEY,), 0.9) for i in range(4)]
    patient = AlertConfig(surge_min_span_s=45.0)
    _, alerts = run(merged(history, clock, cluster))
    assert [(a.key, a.status) for a in alerts][:1] == [(KEY, "firing")]
    assert alerts[0].window_end <= start + 30
    _, alerts = run(merged(history, clock, cluster), patient)
    assert alerts == []
    _, alerts = run(merged(history, clock, cluster, more), patient)
    firing = [a for a in alerts if a.status == "firing"]
    assert [a.key for a in firing] == [KEY] and start + 40 <= firing[0].window_end <= start + 70
    with pytest.raises(ValueError, match="alert_surge_min_span_s"):
        AlertConfig(surge_min_span_s=300.0)


def test_alert_config_defaults_and_every_engine_setting_come_from_settings() -> None:
    from worker.alerts.engine import SETTING_OF_FIELD
    from worker.config import Settings, load_settings

    assert AlertConfig.from_settings(Settings()) == AlertConfig()
    # Every alert_* setting is either an engine parameter or read by the alert stage itself.
    stage_only = {
        "alert_group_id",
        "alert_rebuild_horizon_s",
        "alert_partition_idle_s",
        "alert_reorder_max_records",
        "alert_reorder_max_wait_s",
    }
    alert_settings = {name for name in Settings.model_fields if name.startswith("alert_")}
    assert alert_settings - stage_only == set(SETTING_OF_FIELD.values())
    # A non-default value reaches the engine (min_share_ratio and volume_tolerance once did not).
    tuned = AlertConfig.from_settings(load_settings(alert_min_share_ratio=1.7, alert_volume_tolerance=3.5))
    assert (tuned.min_share_ratio, tuned.volume_tolerance) == (1.7, 3.5)
