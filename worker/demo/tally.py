"""What the demo has seen on the output topics: counts, the latest signals, alerts, latencies.

Pure bookkeeping (no Kafka), so the accounting rule can be tested on its own: a replayed line is
accounted for when it became exactly one signal (unique input id) or one DLQ record (unique source
partition/offset). Duplicates from at-least-once delivery are counted, but not twice.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DLQ_REASON_HEADER = "finsignal.error.reason"
DLQ_PARTITION_HEADER = "finsignal.source.partition"
DLQ_OFFSET_HEADER = "finsignal.source.offset"
RATE_WINDOW_S = 3.0  # the live msgs/s figure is measured over this many seconds of outputs


@dataclass(frozen=True)
class SignalRow:
    """One line of the live table."""

    event_time: str  # HH:MM:SS of published_at
    id: str
    key: str
    topic: str
    sentiment: str
    probability: float
    evidence: str


@dataclass(frozen=True)
class AlertRow:
    key: str
    status: str
    severity: str
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class Summary:
    lines_in: int
    signals: int
    dlq: dict[str, int]
    duplicates: int
    alerts: list[AlertRow]
    elapsed_s: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None

    @property
    def dlq_total(self) -> int:
        return sum(self.dlq.values())

    @property
    def accounted(self) -> int:
        return self.signals + self.dlq_total

    @property
    def complete(self) -> bool:
        return self.lines_in > 0 and self.accounted == self.lines_in

    @property
    def throughput(self) -> float:
        return self.accounted / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass
class Tally:
    rows: int = 15
    signal_ids: set[str] = field(default_factory=set)
    dlq_sources: set[tuple[str, str]] = field(default_factory=set)
    dlq: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    alerts: list[AlertRow] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    first_output_at: float | None = None
    last_output_at: float | None = None
    recent: deque[SignalRow] = field(init=False)
    _output_times: deque[float] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.recent = deque(maxlen=self.rows)

    # --- input ---------------------------------------------------------------------------------
    def add_signal(self, payload: Mapping[str, Any], now: float) -> None:
        signal_id = str(payload.get("id", ""))
        if signal_id in self.signal_ids:
            self.duplicates += 1
            return
        self.signal_ids.add(signal_id)
        self._output(now)
        timings = payload.get("timings")
        if isinstance(timings, Mapping) and isinstance(timings.get("end_to_end_ms"), int | float):
            self.latencies_ms.append(float(timings["end_to_end_ms"]))
        self.recent.append(signal_row(payload))

    def add_dlq(self, headers: Sequence[tuple[str, bytes | None]], key: str, now: float) -> None:
        """A DLQ record, by its Kafka headers; ``key`` identifies the record when headers lack a source."""
        decoded = {name: (value or b"").decode("utf-8", "replace") for name, value in headers}
        source = (decoded.get(DLQ_PARTITION_HEADER, key), decoded.get(DLQ_OFFSET_HEADER, key))
        if source in self.dlq_sources:
            self.duplicates += 1
            return
        self.dlq_sources.add(source)
        self.dlq[decoded.get(DLQ_REASON_HEADER) or "unknown"] += 1
        self._output(now)

    def add_alert(self, payload: Mapping[str, Any]) -> None:
        self.alerts.append(
            AlertRow(
                key=str(payload.get("key", "?")),
                status=str(payload.get("status", "?")),
                severity=str(payload.get("severity", "?")),
                payload=payload,
            )
        )

    def _output(self, now: float) -> None:
        if self.first_output_at is None:
            self.first_output_at = now
        self.last_output_at = now
        self._output_times.append(now)

    # --- figures -------------------------------------------------------------------------------
    @property
    def signals(self) -> int:
        return len(self.signal_ids)

    @property
    def dlq_total(self) -> int:
        return sum(self.dlq.values())

    @property
    def accounted(self) -> int:
        return self.signals + self.dlq_total

    def rate(self, now: float) -> float:
        """Outputs per second over the last RATE_WINDOW_S seconds."""
        while self._output_times and self._output_times[0] < now - RATE_WINDOW_S:
            self._output_times.popleft()
        return len(self._output_times) / RATE_WINDOW_S

    def summary(self, lines_in: int, started_at: float) -> Summary:
        end = self.last_output_at if self.last_output_at is not None else started_at
        return Summary(
            lines_in=lines_in,
            signals=self.signals,
            dlq=dict(sorted(self.dlq.items())),
            duplicates=self.duplicates,
            alerts=list(self.alerts),
            elapsed_s=max(0.0, end - started_at),
            latency_p50_ms=percentile(self.latencies_ms, 50),
            latency_p99_ms=percentile(self.latencies_ms, 99),
        )


def signal_row(payload: Mapping[str, Any]) -> SignalRow:
    topic = payload.get("topic")
    sentiment = payload.get("sentiment")
    published = str(payload.get("published_at", ""))
    return SignalRow(
        event_time=published[11:19] if len(published) >= 19 else published,
        id=str(payload.get("id", "")),
        key=str(payload.get("key", "")),
        topic=str(topic.get("label", "")) if isinstance(topic, Mapping) else "",
        sentiment=str(sentiment.get("label", "")) if isinstance(sentiment, Mapping) else "",
        probability=float(sentiment.get("probability", 0.0)) if isinstance(sentiment, Mapping) else 0.0,
        evidence=top_evidence(payload.get("evidence")),
    )


def top_evidence(evidence: object) -> str:
    """Text of the knowledge point with the highest attention ("" when there is none)."""
    if not isinstance(evidence, Sequence) or isinstance(evidence, str | bytes):
        return ""
    items = [e for e in evidence if isinstance(e, Mapping)]
    if not items:
        return ""
    best = max(items, key=lambda e: float(e.get("attention") or 0.0))
    return str(best.get("text", ""))


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (no interpolation: the figure is a latency one message really had)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
