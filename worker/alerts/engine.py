"""The surge alert engine: pure, event-time, deterministic (no I/O, no wall clock).

Per key ("topic:<label>" or "entity:<TICKER>") it keeps
- short event-time buckets (``bucket_s``) covering the surge window and the allowed lateness;
- a baseline that adapts: exponentially decayed totals of messages, P(negative) and observed time
  (half-life ``halflife_s``), blended with a prior so that a key seen for the first time does not
  alert on its first messages;
- an episode state machine: normal -> firing -> resolved (+ cooldown) -> normal.

Surge tests, re-run on each of the key's signals over the trailing 1..N buckets of the window (a scan,
so a sharp burst is caught on a short span and a slower one on the full window). A span qualifies when
it holds at least ``min_messages`` messages (one or two bad stories are not a surge), a
confidence-weighted negative count k (sum of P(negative)) of at least ``min_count``, and a negative
share of at least ``min_share_ratio`` x the baseline share. On a qualifying span the key fires when
- the sequential test (``stats.surge_llr``, CUSUM-style) reaches ``surge_llr`` nats (plus
  log(rate / ``surge_llr_ref_rate_per_hour``) on keys busier than that) on a span that lasted at
  least ``surge_min_span_s`` from its first message: the likelihood
  ratio of the surge we want to catch fast (``surge_share_factor`` x the share at
  ``surge_rate_per_min``) against the baseline, measured from the span's first message, with each
  signal's evidence weighted by its P(negative) (``stats.share_log_lr``); this is the fast test;
- or the scan test (``stats.surge_z``) reaches ``fire_score``: a signed-root likelihood ratio against
  "the baseline share, at the baseline volume scaled by up to ``volume_tolerance``" with no specified
  alternative, the backstop for surges of other shapes.
An alert's score is the larger of the two in "sigmas" (sqrt(2 x llr) for the sequential test); it sets
the severity and the hysteresis: a firing key resolves only when its score falls below
``resolve_score``; after resolving it stays quiet for ``cooldown_s``.

Copies of one story (``SignalEvent.story``, the ``finsignal.story`` header) count once per key: a
story already counted for a key within ``dedupe_window_s`` (event time, either side) is skipped for
that key, in the windows and the baseline alike, and counted in ``duplicates``. The per-key story
memory expires with the clock and holds at most ``dedupe_max_stories`` ids. Signals without a story
count as before.

Time is the global event-time clock: the newest event time seen. The watermark (clock minus
``allowed_lateness_s``) decides which buckets are final; older events are "late": counted (and folded
into the baseline so the statistics lose nothing) but they no longer move a window.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

from worker.alerts.stats import share_log_lr, surge_llr, surge_z

Severity = Literal["info", "warning", "critical"]
Status = Literal["firing", "resolved"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")


# AlertConfig field -> the Settings field that owns its default and its operator-facing name.
SETTING_OF_FIELD: dict[str, str] = {
    "window_s": "alert_window_s",
    "bucket_s": "alert_bucket_s",
    "halflife_s": "alert_baseline_halflife_s",
    "allowed_lateness_s": "alert_allowed_lateness_s",
    "min_count": "alert_min_count",
    "min_messages": "alert_min_messages",
    "cooldown_s": "alert_cooldown_s",
    "fire_score": "alert_fire_score",
    "warning_score": "alert_warning_score",
    "critical_score": "alert_critical_score",
    "resolve_score": "alert_resolve_score",
    "min_share_ratio": "alert_min_share_ratio",
    "volume_tolerance": "alert_volume_tolerance",
    "prior_share": "alert_prior_share",
    "prior_messages": "alert_prior_messages",
    "prior_rate_per_hour": "alert_prior_rate_per_hour",
    "prior_exposure_s": "alert_prior_exposure_s",
    "surge_llr": "alert_surge_llr",
    "surge_llr_ref_rate_per_hour": "alert_surge_llr_ref_rate_per_hour",
    "surge_rate_per_min": "alert_surge_rate_per_min",
    "surge_share_factor": "alert_surge_share_factor",
    "surge_min_span_s": "alert_surge_min_span_s",
    "classifier_prior": "alert_classifier_prior",
    "top_messages": "alert_top_messages",
    "dedupe_window_s": "alert_dedupe_window_s",
    "dedupe_max_stories": "alert_dedupe_max_stories",
}


def _setting_default(field_name: str, kind: type[float] | type[int] = float) -> Any:
    """Defaults live in ``worker.config.Settings`` only (one owner); the engine reads them here."""
    from worker.config import Settings

    return kind(Settings.model_fields[SETTING_OF_FIELD[field_name]].default)


@dataclass(frozen=True)
class AlertConfig:
    """Engine parameters; defaults and validation ranges come from the ``alert_*`` Settings fields
    (``SETTING_OF_FIELD``), ``from_settings`` maps a loaded Settings object onto it."""

    window_s: float = _setting_default("window_s")
    bucket_s: float = _setting_default("bucket_s")
    halflife_s: float = _setting_default("halflife_s")
    allowed_lateness_s: float = _setting_default("allowed_lateness_s")
    min_count: float = _setting_default("min_count")
    min_messages: int = _setting_default("min_messages", int)
    cooldown_s: float = _setting_default("cooldown_s")
    fire_score: float = _setting_default("fire_score")
    warning_score: float = _setting_default("warning_score")
    critical_score: float = _setting_default("critical_score")
    resolve_score: float = _setting_default("resolve_score")
    min_share_ratio: float = _setting_default("min_share_ratio")
    volume_tolerance: float = _setting_default("volume_tolerance")
    prior_share: float = _setting_default("prior_share")
    prior_messages: float = _setting_default("prior_messages")
    prior_rate_per_hour: float = _setting_default("prior_rate_per_hour")
    prior_exposure_s: float = _setting_default("prior_exposure_s")
    surge_llr: float = _setting_default("surge_llr")
    surge_llr_ref_rate_per_hour: float = _setting_default("surge_llr_ref_rate_per_hour")
    surge_rate_per_min: float = _setting_default("surge_rate_per_min")
    surge_share_factor: float = _setting_default("surge_share_factor")
    surge_min_span_s: float = _setting_default("surge_min_span_s")
    classifier_prior: float = _setting_default("classifier_prior")
    top_messages: int = _setting_default("top_messages", int)
    dedupe_window_s: float = _setting_default("dedupe_window_s")
    dedupe_max_stories: int = _setting_default("dedupe_max_stories", int)
    evict_after_s: float = 4 * _setting_default("halflife_s")  # keys idle this long are forgotten

    def __post_init__(self) -> None:
        problems = []
        if self.bucket_s <= 0 or self.window_s < self.bucket_s:
            problems.append("alert_bucket_s must be > 0 and <= alert_window_s")
        if not self.resolve_score < self.fire_score <= self.warning_score <= self.critical_score:
            problems.append(
                "need alert_resolve_score < alert_fire_score <= alert_warning_score <= alert_critical_score"
            )
        if not 0.0 < self.prior_share < 1.0:
            problems.append("alert_prior_share must be in (0, 1)")
        if self.prior_messages <= 0 or self.prior_exposure_s <= 0 or self.prior_rate_per_hour <= 0:
            problems.append(
                "alert_prior_messages, alert_prior_exposure_s, alert_prior_rate_per_hour must be > 0"
            )
        if min(self.surge_llr, self.surge_rate_per_min, self.surge_llr_ref_rate_per_hour) <= 0:
            problems.append(
                "alert_surge_llr, alert_surge_rate_per_min, alert_surge_llr_ref_rate_per_hour must be > 0"
            )
        if self.surge_min_span_s < 0 or self.surge_min_span_s >= self.window_s:
            problems.append("alert_surge_min_span_s must be >= 0 and < alert_window_s")
        if self.surge_share_factor <= 1.0:
            problems.append("alert_surge_share_factor must be > 1")
        if not 0.0 < self.classifier_prior < 1.0:
            problems.append("alert_classifier_prior must be in (0, 1)")
        if self.dedupe_window_s < 0 or self.dedupe_max_stories < 1:
            problems.append("alert_dedupe_window_s must be >= 0 and alert_dedupe_max_stories >= 1")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def n_buckets(self) -> int:
        return max(1, math.ceil(self.window_s / self.bucket_s))

    @classmethod
    def from_settings(cls, settings: Any) -> AlertConfig:
        from worker.config import ConfigError

        kinds = {f.name: int if f.type == "int" else float for f in fields(cls)}
        values: dict[str, Any] = {
            name: kinds[name](getattr(settings, key)) for name, key in SETTING_OF_FIELD.items()
        }
        try:
            return cls(**values, evict_after_s=4.0 * values["halflife_s"])
        except ValueError as exc:
            raise ConfigError(f"invalid alert settings: {exc}") from None


@dataclass(frozen=True)
class SignalEvent:
    """What the engine needs of one signal (see ``worker.alerts.signals.parse_signal``)."""

    id: str
    event_time: float  # seconds since the epoch (published_at, capped at processed_at)
    keys: tuple[str, ...]  # "topic:<label>", "entity:<TICKER>", ...
    p_negative: float
    processed_time: float = 0.0
    evidence: tuple[Mapping[str, Any], ...] = ()
    text: str | None = None
    model: Mapping[str, Any] = field(default_factory=dict)
    kb_version: int = 0
    story: str | None = None  # story fingerprint (``finsignal.story`` header): copies count once per key


@dataclass(frozen=True)
class TopMessage:
    id: str
    p_negative: float
    evidence: tuple[Mapping[str, Any], ...] = ()
    text: str | None = None


@dataclass(frozen=True)
class Alert:
    id: str  # "<key>@<window start, RFC 3339>": the same for the firing and the resolved event
    status: Status
    key: str
    window_start: float
    window_end: float
    count: int
    negative_count: float
    baseline_share: float
    baseline_rate_per_hour: float
    score: float
    peak_score: float
    severity: Severity
    top_messages: tuple[TopMessage, ...]
    model: Mapping[str, Any]
    kb_version: int
    created_at: float  # processed_at of the signal that triggered it (deterministic on replay)

    @property
    def key_type(self) -> str:
        return self.key.partition(":")[0]

    @property
    def negative_share(self) -> float:
        return self.negative_count / self.count if self.count else 0.0


def alert_id(key: str, window_start: float) -> str:
    return f"{key}@{format_time(window_start)}"


def format_time(epoch_s: float) -> str:
    """RFC 3339 UTC with a Z; milliseconds only when not whole seconds."""
    moment = datetime.fromtimestamp(epoch_s, UTC)
    if moment.microsecond:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


class _Bucket:
    __slots__ = ("n", "neg", "first", "ps", "lr_share", "lr_sum", "top")

    def __init__(self, first: float) -> None:
        self.n = 0
        self.neg = 0.0
        self.first = first  # earliest event time in the bucket (a min: arrival order does not matter)
        self.ps: list[float] = []
        self.lr_share = -1.0  # baseline share lr_sum was computed for (recomputed when it changes)
        self.lr_sum = 0.0
        self.top: list[TopMessage] = []


def _keep_top(top: list[TopMessage], candidate: TopMessage, limit: int) -> None:
    top.append(candidate)
    if len(top) > limit:
        top.sort(key=_top_order)
        del top[limit:]


def _top_order(message: TopMessage) -> tuple[float, str]:
    return (-message.p_negative, message.id)


@dataclass
class _Episode:
    id: str
    window_start: float
    fired_at: float
    severity: Severity
    baseline_share: float
    baseline_rate: float  # per second
    peak_score: float
    count: int
    negative: float
    top: list[TopMessage]


class _KeyState:
    __slots__ = (
        "buckets",
        "s_n",
        "s_neg",
        "s_exp",
        "last_fold_end",
        "episode",
        "cooldown_until",
        "floor_idx",
        "model",
        "kb_version",
        "stories",
    )

    def __init__(self) -> None:
        self.buckets: dict[int, _Bucket] = {}
        self.s_n = 0.0  # decayed message count
        self.s_neg = 0.0  # decayed sum of P(negative)
        self.s_exp = 0.0  # decayed observed seconds
        self.last_fold_end: float | None = None
        self.episode: _Episode | None = None
        self.cooldown_until = -math.inf
        self.floor_idx = -(2**62)  # scans never reach below this bucket (start of the current era)
        self.model: Mapping[str, Any] = {}
        self.kb_version = 0
        self.stories: OrderedDict[str, float] | None = None  # story -> event time of its counted copy


@dataclass(frozen=True)
class Baseline:
    share: float
    rate_per_s: float


@dataclass(frozen=True)
class Scan:
    score: float  # max of the span's surge_z and sqrt(2 * llr), in "sigmas": severity and resolve
    buckets: int  # how many trailing buckets the chosen span covers (0: none qualified)
    count: int
    negative: float
    llr: float = -math.inf  # best sequential log-likelihood ratio over the qualifying spans (nats)
    fires: bool = False  # surge_z >= fire_score or llr >= surge_llr on some qualifying span


_NO_SCAN = Scan(-math.inf, 0, 0, 0.0)


class AlertEngine:
    """Feed signals in arrival order with ``process``; it returns the alerts they trigger."""

    def __init__(self, config: AlertConfig | None = None) -> None:
        self.config = config or AlertConfig()
        self._keys: dict[str, _KeyState] = {}
        self._active: set[str] = set()  # keys holding buckets
        self._firing: set[str] = set()
        self._clock: float | None = None  # newest event time seen
        self._now_idx: int | None = None
        self._ln2_over_h = math.log(2.0) / self.config.halflife_s
        self._prior_rate = self.config.prior_rate_per_hour / 3600.0
        self.events = 0
        self.late_events = 0
        self.fired = 0
        self.resolved = 0
        self.duplicates = 0  # (signal, key) pairs skipped as a copy of a story the key already counted

    # --- public API ------------------------------------------------------------------------
    @property
    def clock(self) -> float | None:
        return self._clock

    @property
    def watermark(self) -> float | None:
        return None if self._clock is None else self._clock - self.config.allowed_lateness_s

    def process(self, event: SignalEvent) -> list[Alert]:
        """Account one signal; return the alerts (firing and/or resolved) it triggers, in a fixed order."""
        self.events += 1
        cfg = self.config
        keys = tuple(dict.fromkeys(event.keys))
        if event.story is not None and cfg.dedupe_window_s > 0:
            keys = tuple(key for key in keys if not self._repeat(key, event.story, event.event_time))
        watermark = self.watermark
        if watermark is not None and event.event_time < watermark:
            self.late_events += 1
            for key in keys:
                state = self._state(key)
                if state.episode is None:  # the baseline is frozen while firing
                    state.s_n += 1.0
                    state.s_neg += event.p_negative
            return []
        alerts: list[Alert] = []
        if self._clock is None or event.event_time > self._clock:
            self._clock = event.event_time
            new_idx = math.floor(event.event_time / cfg.bucket_s)
            if self._now_idx is None:
                self._now_idx = new_idx
            elif new_idx > self._now_idx:
                self._now_idx = new_idx
                alerts.extend(self._advance(event))
        assert self._now_idx is not None and self._clock is not None
        idx = math.floor(event.event_time / cfg.bucket_s)
        message = TopMessage(event.id, event.p_negative, event.evidence, event.text)
        for key in keys:
            state = self._state(key)
            state.model = event.model
            state.kb_version = event.kb_version
            bucket = state.buckets.get(idx)
            if bucket is None:
                bucket = state.buckets[idx] = _Bucket(event.event_time)
                self._active.add(key)
            elif event.event_time < bucket.first:
                bucket.first = event.event_time
            bucket.n += 1
            bucket.neg += event.p_negative
            bucket.ps.append(event.p_negative)
            if bucket.lr_share > 0.0:  # keep the cached evidence current (recomputed if the share moves)
                bucket.lr_sum += share_log_lr(
                    (event.p_negative,), bucket.lr_share, cfg.surge_share_factor, cfg.classifier_prior
                )
            _keep_top(bucket.top, message, cfg.top_messages)
            episode = state.episode
            if episode is not None:
                episode.count += 1
                episode.negative += event.p_negative
                _keep_top(episode.top, message, cfg.top_messages)
                continue
            if self._clock < state.cooldown_until:
                continue
            scan = self._scan(state, self._now_idx)
            if scan.fires:
                alerts.append(self._fire(key, state, scan, event))
        return alerts

    def baseline(self, key: str) -> Baseline:
        state = self._keys.get(key)
        return (
            self._baseline(state)
            if state is not None
            else Baseline(self.config.prior_share, self._prior_rate)
        )

    def score(self, key: str) -> Scan:
        """The key's current surge scan (for plots and debugging)."""
        state = self._keys.get(key)
        if state is None or self._now_idx is None:
            return _NO_SCAN
        return self._scan(state, self._now_idx)

    def firing(self) -> dict[str, str]:
        """key -> id of the alert currently firing for it."""
        return {key: self._keys[key].episode.id for key in sorted(self._firing)}  # type: ignore[union-attr]

    def cooldown_until(self, key: str) -> float:
        state = self._keys.get(key)
        return state.cooldown_until if state is not None else -math.inf

    def restore_firing(
        self,
        key: str,
        alert_id_: str,
        window_start: float,
        fired_at: float,
        severity: Severity,
        baseline_share: float,
        score: float,
        count: int,
        negative: float,
    ) -> None:
        """Mark ``key`` as firing an alert that was already published (state rebuilt after a restart)."""
        state = self._state(key)
        baseline = self._baseline(state)
        state.episode = _Episode(
            id=alert_id_,
            window_start=window_start,
            fired_at=fired_at,
            severity=severity,
            baseline_share=baseline_share,
            baseline_rate=baseline.rate_per_s,
            peak_score=score,
            count=count,
            negative=negative,
            top=[],
        )
        self._firing.add(key)

    def restore_resolved(self, key: str, resolved_at: float) -> None:
        """The key's last published alert was resolved at ``resolved_at``: end any episode, cool down."""
        state = self._state(key)
        if state.episode is not None:
            state.episode = None
            self._firing.discard(key)
        state.cooldown_until = max(state.cooldown_until, resolved_at + self.config.cooldown_s)
        state.floor_idx = max(state.floor_idx, math.floor(resolved_at / self.config.bucket_s))

    def forget_episode(self, key: str) -> None:
        """Drop an episode that was never published (the published alerts are the truth)."""
        state = self._keys.get(key)
        if state is not None and state.episode is not None:
            state.episode = None
            self._firing.discard(key)

    def stories_held(self, key: str) -> int:
        """How many story ids the engine remembers for ``key`` (bounded; see ``dedupe_max_stories``)."""
        state = self._keys.get(key)
        return len(state.stories) if state is not None and state.stories is not None else 0

    @property
    def key_count(self) -> int:
        return len(self._keys)

    # --- internals -------------------------------------------------------------------------
    def _state(self, key: str) -> _KeyState:
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyState()
        return state

    def _repeat(self, key: str, story: str, event_time: float) -> bool:
        """True (and counted) when ``key`` already counted ``story`` within the dedupe window;
        otherwise remember it as counted at ``event_time``."""
        cfg = self.config
        state = self._state(key)
        stories = state.stories
        if stories is None:
            stories = state.stories = OrderedDict()
        seen = stories.get(story)
        if seen is not None and abs(event_time - seen) <= cfg.dedupe_window_s:
            self.duplicates += 1
            return True
        stories[story] = event_time
        stories.move_to_end(story)
        if len(stories) > cfg.dedupe_max_stories:
            stories.popitem(last=False)
        self._expire_stories(state)
        return False

    def _expire_stories(self, state: _KeyState) -> None:
        """Forget stories no on-time copy can match any more (arrival order: oldest first, roughly)."""
        stories = state.stories
        if not stories or self._clock is None:
            return
        horizon = self._clock - self.config.allowed_lateness_s - self.config.dedupe_window_s
        while stories and next(iter(stories.values())) < horizon:
            stories.popitem(last=False)

    def _baseline(self, state: _KeyState) -> Baseline:
        cfg = self.config
        share = (state.s_neg + cfg.prior_share * cfg.prior_messages) / (state.s_n + cfg.prior_messages)
        rate = (state.s_n + self._prior_rate * cfg.prior_exposure_s) / (state.s_exp + cfg.prior_exposure_s)
        return Baseline(min(max(share, 1e-3), 1.0 - 1e-3), rate)

    def _scan(self, state: _KeyState, now_idx: int) -> Scan:
        cfg = self.config
        baseline = self._baseline(state)
        lowest = max(now_idx - cfg.n_buckets + 1, state.floor_idx)
        clock = self._clock
        assert clock is not None
        # The newest bucket is partly elapsed: expect counts for the time that has passed, not a full bucket.
        elapsed = min(max(clock - now_idx * cfg.bucket_s, 1.0), cfg.bucket_s)
        surge_rate = cfg.surge_rate_per_min / 60.0
        n = 0
        k = 0.0
        marks = 0.0
        best_z = best_llr = fire_llr = -math.inf
        z_span = llr_span = (0, 0, 0.0)
        for span, idx in enumerate(range(now_idx, lowest - 1, -1), start=1):
            bucket = state.buckets.get(idx)
            if bucket is None:
                continue
            n += bucket.n
            k += bucket.neg
            if bucket.lr_share != baseline.share:
                bucket.lr_sum = share_log_lr(
                    bucket.ps, baseline.share, cfg.surge_share_factor, cfg.classifier_prior
                )
                bucket.lr_share = baseline.share
            marks += bucket.lr_sum
            if k < cfg.min_count or n < cfg.min_messages:
                continue
            if k < cfg.min_share_ratio * baseline.share * n:
                continue
            expected = baseline.rate_per_s * ((span - 1) * cfg.bucket_s + elapsed)
            score = surge_z(n, k, expected, baseline.share, cfg.volume_tolerance)
            if score > best_z:
                best_z, z_span = score, (span, n, k)
            # The sequential test measures time from the span's first message, not its bucket edge.
            llr = surge_llr(
                n,
                marks,
                max(clock - bucket.first, 1.0),
                baseline.rate_per_s,
                surge_rate,
                cfg.volume_tolerance,
            )
            if llr > best_llr:
                best_llr = llr
            # Only spans that lasted surge_min_span_s may fire (a short cluster must persist).
            if llr > fire_llr and clock - bucket.first >= cfg.surge_min_span_s:
                fire_llr, llr_span = llr, (span, n, k)
        if z_span[0] == 0:
            return _NO_SCAN
        by_z = best_z >= cfg.fire_score
        # A busy key runs more tests per hour and false alarms grow like tests x exp(-threshold)
        # (Lorden), so its threshold rises with log(rate): equal false alarms per key-hour.
        busy = max(0.0, math.log(baseline.rate_per_s * 3600.0 / cfg.surge_llr_ref_rate_per_hour))
        by_llr = fire_llr >= cfg.surge_llr + busy
        span, count, negative = llr_span if by_llr and not by_z else z_span
        score = max(best_z, math.sqrt(2.0 * max(best_llr, 0.0)))
        return Scan(score, span, count, negative, best_llr, by_z or by_llr)

    def _severity(self, score: float) -> Severity:
        cfg = self.config
        if score >= cfg.critical_score:
            return "critical"
        if score >= cfg.warning_score:
            return "warning"
        return "info"

    def _window_top(self, state: _KeyState, first_idx: int, last_idx: int) -> list[TopMessage]:
        top: list[TopMessage] = []
        for idx in range(first_idx, last_idx + 1):
            bucket = state.buckets.get(idx)
            if bucket is not None:
                top.extend(bucket.top)
        top.sort(key=_top_order)
        return top[: self.config.top_messages]

    def _fire(self, key: str, state: _KeyState, scan: Scan, event: SignalEvent) -> Alert:
        cfg = self.config
        assert self._now_idx is not None and self._clock is not None
        first_idx = self._now_idx - scan.buckets + 1
        window_start = first_idx * cfg.bucket_s
        baseline = self._baseline(state)
        severity = self._severity(scan.score)
        top = self._window_top(state, first_idx, self._now_idx)
        episode = _Episode(
            id=alert_id(key, window_start),
            window_start=window_start,
            fired_at=self._clock,
            severity=severity,
            baseline_share=baseline.share,
            baseline_rate=baseline.rate_per_s,
            peak_score=scan.score,
            count=scan.count,
            negative=scan.negative,
            top=list(top),
        )
        state.episode = episode
        self._firing.add(key)
        self.fired += 1
        return Alert(
            id=episode.id,
            status="firing",
            key=key,
            window_start=window_start,
            window_end=self._clock,
            count=scan.count,
            negative_count=scan.negative,
            baseline_share=baseline.share,
            baseline_rate_per_hour=baseline.rate_per_s * 3600.0,
            score=scan.score,
            peak_score=scan.score,
            severity=severity,
            top_messages=tuple(top),
            model=event.model,
            kb_version=event.kb_version,
            created_at=event.processed_time,
        )

    def _advance(self, event: SignalEvent) -> list[Alert]:
        """The clock entered a new bucket: resolve calm keys, fold final buckets into baselines."""
        cfg = self.config
        assert self._now_idx is not None and self._clock is not None
        now_idx = self._now_idx
        boundary = now_idx * cfg.bucket_s
        alerts: list[Alert] = []
        for key in sorted(self._firing):
            state = self._keys[key]
            episode = state.episode
            assert episode is not None
            if boundary - episode.fired_at < cfg.bucket_s:
                continue
            scan = self._scan(state, now_idx)
            if scan.score >= cfg.resolve_score:
                episode.peak_score = max(episode.peak_score, scan.score)
                continue
            alerts.append(self._resolve(key, state, episode, boundary, scan, event))
        watermark = self._clock - cfg.allowed_lateness_s
        oldest_in_window = now_idx - cfg.n_buckets + 1
        for key in sorted(self._active):
            state = self._keys[key]
            for idx in sorted(state.buckets):
                if idx >= oldest_in_window or (idx + 1) * cfg.bucket_s > watermark:
                    break
                self._fold(state, idx)
            if not state.buckets:
                self._active.discard(key)
        if now_idx % cfg.n_buckets == 0:
            self._evict(watermark)
        return alerts

    def _fold(self, state: _KeyState, idx: int) -> None:
        bucket = state.buckets.pop(idx)
        end = (idx + 1) * self.config.bucket_s
        if state.episode is not None:
            # Frozen while firing: the surge must not teach the baseline that it is normal.
            state.last_fold_end = end
            return
        span = self.config.bucket_s if state.last_fold_end is None else max(0.0, end - state.last_fold_end)
        decay = math.exp(-self._ln2_over_h * span)
        state.s_n = state.s_n * decay + bucket.n
        state.s_neg = state.s_neg * decay + bucket.neg
        state.s_exp = state.s_exp * decay + span
        state.last_fold_end = end

    def _resolve(
        self, key: str, state: _KeyState, episode: _Episode, boundary: float, scan: Scan, event: SignalEvent
    ) -> Alert:
        cfg = self.config
        state.episode = None
        self._firing.discard(key)
        # The episode's buckets are not folded either; the key starts a new era at the boundary.
        state.buckets.clear()
        self._active.discard(key)
        state.last_fold_end = boundary
        state.floor_idx = math.floor(boundary / cfg.bucket_s)
        state.cooldown_until = boundary + cfg.cooldown_s
        self.resolved += 1
        return Alert(
            id=episode.id,
            status="resolved",
            key=key,
            window_start=episode.window_start,
            window_end=boundary,
            count=episode.count,
            negative_count=episode.negative,
            baseline_share=episode.baseline_share,
            baseline_rate_per_hour=episode.baseline_rate * 3600.0,
            score=max(scan.score, 0.0),
            peak_score=episode.peak_score,
            severity=episode.severity,
            top_messages=tuple(episode.top),
            model=state.model or event.model,
            kb_version=state.kb_version or event.kb_version,
            created_at=event.processed_time,
        )

    def _evict(self, watermark: float) -> None:
        for state in self._keys.values():
            self._expire_stories(state)
        horizon = watermark - self.config.evict_after_s
        stale = [
            key
            for key, state in self._keys.items()
            if not state.buckets
            and not state.stories  # (a key may hold stories before its first bucket: same event)
            and state.episode is None
            and state.cooldown_until < watermark
            and (state.last_fold_end is None or state.last_fold_end < horizon)
        ]
        for key in stale:
            del self._keys[key]


def replay(events: Sequence[SignalEvent], config: AlertConfig | None = None) -> list[Alert]:
    """Run a fresh engine over ``events`` and return every alert (for evals and tests)."""
    engine = AlertEngine(config)
    alerts: list[Alert] = []
    for event in events:
        alerts.extend(engine.process(event))
    return alerts
