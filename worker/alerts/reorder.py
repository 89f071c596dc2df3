"""Event-time order across partitions: per-source watermarks and a bounded reorder buffer (pure).

A signals partition is not in event-time order by itself: the classify stage reads several input
partitions at different paces and re-keys the results, so one signals partition interleaves input
partitions hours apart. What *is* in order is each input partition's share of each signals partition
(the classify stage produces an input partition's signals in offset order, and Kafka keeps order
within a partition). So a watermark is kept per **stream** = (signals partition, source), where the
source is the input partition named by the record's headers, or ``None`` for a record without them
(an older worker's signals): that stream is the signals partition itself, as before.
A stream's watermark is the newest event time seen on it; the stage watermark is the minimum over the
*active* streams, never moving back. A stream is inactive (idle) when it had no record for ``idle_s``
of processing time and the caller says its signals partition is caught up to its end (a source has no
end offset of its own; the signals partition's end is where we know nothing more of it is waiting).
When every stream is idle, nothing is outstanding and everything buffered is released.

Which streams exist before they speak: ``track`` opens one placeholder stream per assigned signals
partition (as before: an empty partition holds the others back until it proves idle). The first
source seen retires the placeholders that never had a record, and every source seen, or announced with
``expect`` (the caller knows the source topic's partitions), is expected on every tracked signals
partition, since the classify stage may send its signals to any of them.

Events wait here until the stage watermark passes them and come out in event-time order (arrival
order among equal times). No lateness allowance is applied: the engine judges truly late data.
The buffer is bounded in size (``max_records``) and in processing time (``max_wait_s``); over either
bound the oldest events are released early and counted in ``forced``.

Offsets stay per signals partition: ``commit_offsets`` gives, per partition, the next offset to
commit: the lowest offset still held here, or one past the newest record seen when none is held. A
record is done once released (or when it carried no event: an unreadable signal is counted where it
is read, and never held).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from worker.alerts.engine import SignalEvent

P = TypeVar("P", bound=Hashable)  # a signals partition
S = TypeVar("S", bound=Hashable)  # a source (input partition)


@dataclass(eq=False)
class _Entry:
    event_time: float
    seq: int
    offset: int
    arrived: float
    event: SignalEvent
    released: bool = False

    def __lt__(self, other: _Entry) -> bool:
        return (self.event_time, self.seq) < (other.event_time, other.seq)


@dataclass
class _Partition:
    first_offset: int | None = None  # the first record seen: committing it would be no progress
    next_offset: int | None = None  # one past the newest record seen
    held: deque[_Entry] = field(default_factory=deque)  # buffered entries in offset order


@dataclass
class _Stream:
    last_record_at: float  # processing time of the newest record (or of when it was expected)
    watermark: float = -math.inf  # newest event time seen on the stream
    heard: bool = False  # had a record (a placeholder that never had one is retired by sources)


class ReorderBuffer(Generic[P, S]):
    """``add`` records as polled, ``release`` after each poll, commit ``commit_offsets`` once the
    released events' alerts are confirmed."""

    def __init__(self, idle_s: float, max_records: int, max_wait_s: float) -> None:
        if idle_s < 0 or max_records < 1 or max_wait_s <= 0:
            raise ValueError(
                "alert_partition_idle_s must be >= 0, alert_reorder_max_records >= 1 and "
                "alert_reorder_max_wait_s > 0"
            )
        self.idle_s = idle_s
        self.max_records = max_records
        self.max_wait_s = max_wait_s
        self._partitions: dict[P, _Partition] = {}
        self._streams: dict[tuple[P, S | None], _Stream] = {}
        self._sources: set[S] = set()
        self._heap: list[_Entry] = []
        self._arrivals: deque[_Entry] = deque()  # arrival order, for the max_wait_s bound
        self._size = 0
        self._seq = 0
        self._watermark = -math.inf
        self.forced = 0  # events released before the watermark passed them (buffer over a bound)
        self.released = 0

    # --- input ------------------------------------------------------------------------------
    def track(self, partitions: Iterable[P], now: float) -> None:
        """Signals partitions assigned now: each starts with an active stream (it may hold data of
        any source) until it proves idle, and every source already known is expected on it."""
        for partition in partitions:
            if partition in self._partitions:
                continue
            self._partitions[partition] = _Partition()
            if not self._sources:
                self._streams.setdefault((partition, None), _Stream(last_record_at=now))
            for source in self._sources:
                self._streams.setdefault((partition, source), _Stream(last_record_at=now))

    def expect(self, sources: Iterable[S], now: float) -> None:
        """Sources that may send to any tracked partition (e.g. all partitions of the input topic):
        each is an active stream on every partition until it proves idle there."""
        new = [source for source in sources if source not in self._sources]
        if not new:
            return
        self._sources.update(new)
        # Placeholders that never had a record stand for "some source": the sources now do.
        for key in [k for k, s in self._streams.items() if k[1] is None and not s.heard]:
            del self._streams[key]
        for partition in self._partitions:
            for source in new:
                self._streams.setdefault((partition, source), _Stream(last_record_at=now))

    def knows(self, source: S) -> bool:
        return source in self._sources

    def add(
        self, partition: P, offset: int, event: SignalEvent | None, now: float, source: S | None = None
    ) -> None:
        """A polled record; ``event`` None for one that carries no usable signal (done at once);
        ``source`` None when the record does not say where it came from (its partition is the source)."""
        state = self._partitions.get(partition)
        if state is None:
            self.track([partition], now)
            state = self._partitions[partition]
        if source is not None:
            self.expect([source], now)
        stream = self._streams.get((partition, source))
        if stream is None:
            stream = self._streams[(partition, source)] = _Stream(last_record_at=now)
        stream.last_record_at = now
        stream.heard = True
        if state.first_offset is None:
            state.first_offset = offset
        state.next_offset = max(state.next_offset or 0, offset + 1)
        if event is None:
            return
        stream.watermark = max(stream.watermark, event.event_time)
        entry = _Entry(event.event_time, self._seq, offset, now, event)
        self._seq += 1
        heapq.heappush(self._heap, entry)
        self._arrivals.append(entry)
        state.held.append(entry)
        self._size += 1

    # --- output -----------------------------------------------------------------------------
    def watermark(self, now: float, caught_up: Callable[[P], bool]) -> float:
        """The stage watermark: min over active streams, never moving back. +inf while every
        stream is idle (everything held is final); the newest time seen is kept for later."""
        ends: dict[P, bool] = {}

        def at_end(partition: P) -> bool:
            if partition not in ends:
                ends[partition] = caught_up(partition)
            return ends[partition]

        active = [
            stream.watermark
            for (partition, _), stream in self._streams.items()
            if not (now - stream.last_record_at >= self.idle_s and at_end(partition))
        ]
        if not active:  # nothing outstanding anywhere: all that was seen is final
            self._watermark = max([self._watermark, *(s.watermark for s in self._streams.values())])
            return math.inf
        self._watermark = max(self._watermark, min(active))
        return self._watermark

    def release(self, now: float, caught_up: Callable[[P], bool]) -> list[SignalEvent]:
        """Events the stage watermark has passed (and any forced out by a bound), in event-time order."""
        limit = self.watermark(now, caught_up)
        # A record held too long forces the watermark up to its event time (older ones go with it).
        forced_limit = -math.inf
        while self._arrivals and (
            self._arrivals[0].released or now - self._arrivals[0].arrived >= self.max_wait_s
        ):
            head = self._arrivals.popleft()
            if not head.released:
                forced_limit = max(forced_limit, head.event_time)
        out: list[SignalEvent] = []
        heap = self._heap
        while heap and (
            heap[0].event_time <= limit or heap[0].event_time <= forced_limit or self._size > self.max_records
        ):
            entry = heapq.heappop(heap)
            if entry.event_time > limit:
                self.forced += 1
            entry.released = True
            self._size -= 1
            out.append(entry.event)
        self.released += len(out)
        return out

    def drain(self) -> list[SignalEvent]:
        """Everything held, in event-time order (the end of a replay: nothing more is coming)."""
        out = [heapq.heappop(self._heap) for _ in range(len(self._heap))]
        for entry in out:
            entry.released = True
        self._size = 0
        self._arrivals.clear()
        self.released += len(out)
        return [entry.event for entry in out]

    def commit_offsets(self) -> dict[P, int]:
        """Per partition with progress: the next offset, all records before it released."""
        offsets: dict[P, int] = {}
        for partition, state in self._partitions.items():
            held = state.held
            while held and held[0].released:
                held.popleft()
            offset = held[0].offset if held else state.next_offset
            if offset is not None and state.first_offset is not None and offset > state.first_offset:
                offsets[partition] = offset
        return offsets

    def __len__(self) -> int:
        return self._size

    @property
    def current_watermark(self) -> float:
        """The stage watermark as of the last ``release`` (-inf before any)."""
        return self._watermark

    @property
    def stream_count(self) -> int:
        """Watermark streams kept: (signals partition, source) pairs, placeholders included."""
        return len(self._streams)
