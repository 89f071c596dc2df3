"""Row 5: finsignal end to end through a real broker (embedded Tansu + Redis, default KB published).

A replay loop produces news events into the input topic (each record's CreateTime is set at send), the
classify stage runs, and a collector consumes the signals topic. Throughput is messages / (last signal
- first produce): at full speed the collector waits until the worker group has committed every event and
then reads the signals, and the last signal is the latest signal CreateTime (a collector decoding ~2,000
signals a second in Python took a share of the worker's 2 cores: runs alternated on AMD EPYC, mean 1,387
-> 1,515 msg/s over 4 pairs); paced, it reads along and the last signal is the last one it saw.
Per-message latency is the signal record's timestamp (set by the worker's producer when it sends the
signal) minus the input record's timestamp; the time the collector saw the signal is kept too.
``run_stage`` times one run: at full speed, or paced at a fixed rate.

Row 5 runs one worker process (``spawn``, ``worker.app.Worker`` as `finsignal run` does) with the
configured inference threads; the scaling run starts 1 and then 2 worker processes, each with one
inference thread, on a 2-partition topic.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from bench.common import Row, percentiles
from worker.config import Settings, load_settings

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0


@dataclass
class Stack:
    bootstrap: str
    redis_url: str


@contextlib.contextmanager
def stack() -> Iterator[Stack]:
    """Embedded Tansu + Redis with the default KB published (one namespace per run)."""
    from worker.embedded import start_redis, start_tansu

    with start_tansu() as broker, start_redis() as redis_server:
        yield Stack(broker.bootstrap, redis_server.url)


@contextlib.contextmanager
def _services(given: Stack | None) -> Iterator[Stack]:
    if given is not None:
        yield given
        return
    with stack() as st:
        yield st


def run_settings(base: Settings, st: Stack, partitions: int, **overrides: Any) -> Settings:
    """Fresh topics, group and KB namespace on ``st``; topics created and the default KB published."""
    from kb_sync.loader import load_default_kb
    from kb_sync.store import KBStore, redis_client
    from worker.embedded import create_topics

    tag = uuid.uuid4().hex[:8]
    fields = base.model_dump()
    fields.update(
        kafka_bootstrap=st.bootstrap,
        redis_url=st.redis_url,
        input_topic=f"bench.raw.{tag}",
        signals_topic=f"bench.signals.{tag}",
        dlq_topic=f"bench.dlq.{tag}",
        alerts_topic=f"bench.alerts.{tag}",
        group_id=f"bench-classify-{tag}",
        kb_namespace=f"bench:kb:{tag}",
        role="classify",
        metrics_port=0,
        auto_offset_reset="earliest",
    )
    fields.update(overrides)
    settings = load_settings(**{k: v for k, v in fields.items() if v is not None})
    create_topics(st.bootstrap, [settings.input_topic], partitions=partitions)
    create_topics(st.bootstrap, [settings.signals_topic, settings.dlq_topic], partitions=partitions)
    client = redis_client(settings)
    try:
        KBStore(client, settings.kb_namespace).publish(
            load_default_kb(), author="bench", message="default KB"
        )
    finally:
        client.close()
    return settings


class Collector(threading.Thread):
    """Reads the signals topic from the start: id -> (signal record timestamp ms, seen at epoch s)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(name="bench-collector", daemon=True)
        from kafka import KafkaConsumer

        self.consumer = KafkaConsumer(
            settings.signals_topic,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=20,
            **settings.kafka_client_kwargs(),
        )
        self.seen: dict[str, tuple[int, float]] = {}
        self.changed = threading.Condition()
        self.stop = threading.Event()
        self._paused = threading.Event()  # set: no polling (its CPU stays off the cores while set)
        self._polling = threading.Lock()  # held for one poll and its bookkeeping

    def pause(self) -> None:
        """Stop reading; returns once no poll is in progress, so nothing is seen until ``resume``."""
        self._paused.set()
        with self._polling:
            pass

    def resume(self) -> None:
        self._paused.clear()

    def run(self) -> None:
        while not self.stop.is_set():
            if self._paused.is_set():
                self.stop.wait(0.05)
                continue
            with self._polling:
                if not self._paused.is_set():
                    self._poll_once()
        self.consumer.close()

    def _poll_once(self) -> None:
        polled = self.consumer.poll(timeout_ms=50, max_records=5000)
        if not polled:
            return
        now = time.time()
        with self.changed:
            for records in polled.values():
                for record in records:
                    self.seen.setdefault(_signal_id(record.value), (record.timestamp, now))
            self.changed.notify_all()

    def wait_for(self, ids: list[str], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        done = 0  # ids[:done] are all seen; seen ids stay seen
        with self.changed:
            while True:
                # O(n) over the whole wait: rescanning every id after each poll cost the bench's own
                # cores (the ones the worker runs on) O(n^2) lookups.
                while done < len(ids) and ids[done] in self.seen:
                    done += 1
                if done == len(ids):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(min(left, 0.5))


def _signal_id(value: bytes) -> str:
    return str(orjson.loads(value).get("id", ""))


class Replayer:
    """Produces news events; remembers each id's CreateTime (ms)."""

    def __init__(self, settings: Settings) -> None:
        from kafka import KafkaProducer

        self.topic = settings.input_topic
        self.producer = KafkaProducer(
            acks=1,  # the replay stands in for an upstream producer; the worker's own outputs use acks=all
            enable_idempotence=False,
            linger_ms=5,
            batch_size=256 * 1024,
            max_in_flight_requests_per_connection=5,
            **settings.kafka_client_kwargs(),
        )
        self.sent_ms: dict[str, int] = {}

    def send(self, event_id: str, text: str) -> None:
        now = time.time()
        payload = {
            "id": event_id,
            "text": text,
            "source": "bench",
            "published_at": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
        }
        ms = int(now * 1000)
        self.sent_ms[event_id] = ms
        self.producer.send(self.topic, key=event_id.encode(), value=orjson.dumps(payload), timestamp_ms=ms)

    def send_all(self, ids: list[str], texts: list[str]) -> None:
        """One event per id, as fast as possible, the texts taken in turn."""
        for i, event_id in enumerate(ids):
            self.send(event_id, texts[i % len(texts)])

    def close(self) -> None:
        self.producer.flush()
        self.producer.close()


@contextlib.contextmanager
def collecting(settings: Settings) -> Iterator[Collector]:
    """A collector reading the signals topic while the block runs."""
    collector = Collector(settings)
    collector.start()
    try:
        yield collector
    finally:
        collector.stop.set()
        collector.join(timeout=5)


@contextlib.contextmanager
def replay_and_collect(settings: Settings) -> Iterator[tuple[Replayer, Collector]]:
    """A replay producer on the input topic and a running collector on the signals topic."""
    with collecting(settings) as collector:
        replayer = Replayer(settings)
        try:
            yield replayer, collector
        finally:
            replayer.close()


@dataclass
class StageRun:
    messages: int
    seconds: float  # first produce -> last signal seen
    latency_ms: list[float] = field(default_factory=list)  # signal CreateTime - input CreateTime
    seen_latency_ms: list[float] = field(default_factory=list)  # collector saw it - input CreateTime
    complete: bool = True
    send_seconds: float = 0.0  # first produce -> last produce flushed (the replay's own limit)

    @property
    def send_rate(self) -> float:
        return self.messages / self.send_seconds if self.send_seconds > 0 else 0.0

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


def run_stage(
    replayer: Replayer,
    collector: Collector,
    texts: list[str],
    n: int,
    label: str,
    rate_per_s: float | None = None,
    timeout_s: float = 300.0,
    read_after: Settings | None = None,
) -> StageRun:
    """Send ``n`` events (as fast as possible, or paced at ``rate_per_s``) and wait for every signal.

    ``read_after`` (the run's settings): the collector is paused while the worker works, the run ends
    when the worker group has committed every event this replayer has sent to the topic, and the signals
    are read afterwards; the run is then timed to the last signal's CreateTime. A collector reading
    along takes a share of the same cores from the worker (Python record decoding of every signal)."""
    ids = [f"{label}-{i:06d}" for i in range(n)]
    if read_after is not None:
        collector.pause()
    start = time.time()
    if rate_per_s is None:
        replayer.send_all(ids, texts)
    else:
        tick = 0.005  # send in small groups every 5 ms: smooth enough, cheap in Python
        for i, event_id in enumerate(ids):
            due = start + i / rate_per_s
            delay = due - time.time()
            if delay > tick:
                time.sleep(delay)
            replayer.send(event_id, texts[i % len(texts)])
    replayer.producer.flush()
    sent = time.time()
    drained = True
    if read_after is not None:
        drained = _wait_committed(read_after, len(replayer.sent_ms), timeout_s)
        collector.resume()
    # After a commit wait that timed out, read what is there instead of waiting the whole timeout again.
    complete = collector.wait_for(ids, timeout_s if drained else 5.0)
    seen = collector.seen
    if not complete:
        missing = sum(1 for i in ids if i not in seen)
        log.warning("%s: %d of %d signals missing after %.0f s", label, missing, n, timeout_s)
    done = [i for i in ids if i in seen]
    if read_after is not None:
        last = max((seen[i][0] for i in done), default=time.time() * 1000) / 1000
    else:
        last = max((seen[i][1] for i in done), default=time.time())
    first = min(replayer.sent_ms[i] for i in ids) / 1000
    return StageRun(
        messages=len(done),
        seconds=last - first,
        latency_ms=[float(seen[i][0] - replayer.sent_ms[i]) for i in done],
        seen_latency_ms=[(seen[i][1] * 1000 - replayer.sent_ms[i]) for i in done],
        complete=complete,
        send_seconds=sent - first,
    )


def warm(replayer: Replayer, collector: Collector, texts: list[str], n: int, label: str) -> None:
    run = run_stage(replayer, collector, texts, n, label, timeout_s=READY_TIMEOUT_S)
    if not run.complete:
        raise RuntimeError(
            f"warm-up: only {run.messages} of {n} signals came back within {READY_TIMEOUT_S} s"
        )


def e2e_rows(
    base: Settings,
    texts: list[str],
    n: int,
    rounds: int,
    paced_n: int,
    batch_seconds: float | None,
    mean_tokens: float,
    services: Stack | None = None,
    alone_n: int | None = None,
) -> tuple[list[Row], dict[str, Any]]:
    """Row 5 at full speed (best of ``rounds`` runs of ``n`` events), then row 5p paced at 50% of that
    rate, then row 5w (``alone_n`` events, default ``2 n``: the worker alone on a backlog). The worker
    runs in a process of its own, as `finsignal run` does in production (the replay producer and the
    signal collector would otherwise share its interpreter lock).

    ``services``: a running broker + Redis to use (tests); else embedded ones are started for the run.
    """
    with _services(services) as st:
        settings = run_settings(base, st, partitions=1)
        with worker_processes(settings, 1), replay_and_collect(settings) as (replayer, collector):
            warm(replayer, collector, texts, 4 * settings.max_batch_size, "warm")
            runs = [
                run_stage(replayer, collector, texts, n, f"full{r}", read_after=settings)
                for r in range(max(1, rounds))
            ]
            full = max(runs, key=lambda run: run.msgs_per_s)
            rate = 0.5 * full.msgs_per_s
            paced = run_stage(replayer, collector, texts, paced_n, "paced", rate_per_s=rate)
        alone = worker_alone_row(base, st, texts, alone_n or 2 * n, mean_tokens)
    lat_full, lat_paced = percentiles(full.latency_ms), percentiles(paced.latency_ms)
    threads = settings.intra_op_threads or "all"
    rows = [
        Row(
            "5",
            "finsignal end to end (Tansu, 1 worker)",
            full.messages,
            full.seconds,
            settings.max_batch_size,
            mean_tokens,
            f"best of {len(runs)} runs of {n}, first produce -> last signal (CreateTime; signals read "
            "after the worker committed them); worker process, "
            f"ORT threads {threads}; p50/p99 latency {lat_full.get('p50')}/{lat_full.get('p99')} ms "
            "(backlog included)",
            {
                "latency_ms": lat_full,
                "complete": all(r.complete for r in runs),
                "rounds_msgs_per_s": [round(r.msgs_per_s, 2) for r in runs],
            },
        ),
        Row(
            "5p",
            f"  same, paced at 50% of max ({rate:.0f} msg/s)",
            paced.messages,
            paced.seconds,
            settings.max_batch_size,
            mean_tokens,
            f"p50/p99 latency {lat_paced.get('p50')}/{lat_paced.get('p99')} ms; one full batch "
            + (f"{batch_seconds * 1000:.0f} ms (row 4)" if batch_seconds else "not timed"),
            {
                "latency_ms": lat_paced,
                "seen_latency_ms": percentiles(paced.seen_latency_ms),
                "rate_per_s": rate,
                "complete": paced.complete,
            },
        ),
        alone,
    ]
    facts = {
        "latency_full_ms": full.latency_ms,
        "latency_paced_ms": paced.latency_ms,
        "paced_rate_per_s": rate,
        "p99_over_batch": (lat_paced.get("p99", 0.0) / 1000) / batch_seconds if batch_seconds else None,
    }
    return rows, facts


# --- scaling: 1, 2, ... worker processes, one inference thread each -----------------------------------


def _process_main(fields: dict[str, Any], ready: Any, stop: Any) -> None:
    logging.basicConfig(
        level="WARNING", format="%(asctime)s %(processName)s %(levelname)s %(name)s: %(message)s"
    )
    # Partition assignments and revocations (a few lines per rebalance): an incomplete run can then be
    # traced to a member that held partitions and stopped (the 2-process GPU run, BENCHMARKS.md).
    logging.getLogger("worker.app").setLevel(logging.INFO)
    from worker.app import Worker

    settings = load_settings(**fields)
    worker = Worker(settings)
    done = threading.Event()
    thread = threading.Thread(target=worker.run, args=(done,), daemon=True)
    thread.start()
    if worker.ready.wait(READY_TIMEOUT_S):
        ready.set()
    stop.wait()
    done.set()
    thread.join(timeout=settings.shutdown_timeout_s + 5)


@contextlib.contextmanager
def worker_processes(settings: Settings, procs: int) -> Iterator[None]:
    """``procs`` classify workers in processes of their own (``spawn``), ready and in the group."""
    ctx = multiprocessing.get_context("spawn")
    fields = {k: v for k, v in settings.model_dump().items() if v is not None}
    stop = ctx.Event()
    readies = [ctx.Event() for _ in range(procs)]
    workers = [ctx.Process(target=_process_main, args=(fields, r, stop), daemon=True) for r in readies]
    for p in workers:
        p.start()
    try:
        for r in readies:
            if not r.wait(READY_TIMEOUT_S):
                raise RuntimeError(f"a worker process was not ready within {READY_TIMEOUT_S} s")
        if procs > 1:
            time.sleep(2.0)  # let the group settle after the last member joined
        yield
    finally:
        stop.set()
        for p in workers:
            p.join(timeout=settings.shutdown_timeout_s + 10)
            if p.is_alive():
                p.terminate()


def scaling_rows(
    base: Settings,
    texts: list[str],
    n: int,
    mean_tokens: float,
    services: Stack | None = None,
    procs: tuple[int, ...] = (1, 2),
) -> tuple[list[Row], dict[str, Any]]:
    """Rows 5x<N>: N worker processes (one inference thread each) on an N-partition topic, for each N in
    ``procs``, timed as row 5 at full speed (signals read once the group has committed every event);
    ``scaling_ratio`` is 2 processes over 1 when both ran."""
    results: dict[int, StageRun] = {}
    partitions = max(procs)
    with _services(services) as st:
        for count in procs:
            settings = run_settings(base, st, partitions=partitions, intra_op_threads=1)
            with worker_processes(settings, count), replay_and_collect(settings) as (replayer, collector):
                warm(replayer, collector, texts, 8 * settings.max_batch_size, f"warm{count}")
                results[count] = run_stage(
                    replayer, collector, texts, n, f"scale{count}", read_after=settings
                )
            log.info("scaling: %d process(es): %.0f msg/s", count, results[count].msgs_per_s)
    base_rate = results[procs[0]].msgs_per_s
    rows = []
    for count, run in results.items():
        ratio = run.msgs_per_s / base_rate if base_rate else 0.0
        rows.append(
            Row(
                f"5x{count}",
                f"scaling: {count} worker process{'es' if count > 1 else ''}, 1 inference thread each",
                run.messages,
                run.seconds,
                base.max_batch_size,
                mean_tokens,
                f"{partitions}-partition topic; end to end, signals read after; "
                f"{ratio:.2f}x {procs[0]} process"
                f"{'es' if procs[0] > 1 else ''}; replay sent {run.send_rate:.0f} msg/s",
                {"latency_ms": percentiles(run.latency_ms), "replay_msgs_per_s": round(run.send_rate, 1)},
            )
        )
    one, two = results.get(1), results.get(2)
    two_over_one = two.msgs_per_s / one.msgs_per_s if one and two and one.msgs_per_s else None
    return rows, {"scaling_ratio": two_over_one}


def _middle_rate(stamps_ms: list[int]) -> dict[str, Any]:
    """Rate of the signals between the 10th and 90th percentile of their CreateTimes (ms): a worker's
    start-up and its last partial batches left out."""
    stamps = sorted(stamps_ms)
    lo, hi = len(stamps) // 10, (len(stamps) * 9) // 10
    middle_s = (stamps[hi] - stamps[lo]) / 1000 if stamps else 0.0
    return {
        "messages": len(stamps),
        "middle": hi - lo,
        "middle_s": middle_s,
        "msgs_per_s": (hi - lo) / middle_s if middle_s > 0 else 0.0,
        "span_s": (stamps[-1] - stamps[0]) / 1000 if stamps else 0.0,
    }


def _wait_committed(settings: Settings, n: int, timeout_s: float) -> bool:
    """Wait until the worker group's committed offsets over the input topic's partitions add up to ``n``
    (the topic's only producer sent ``n`` events; OffsetFetch every 0.25 s: nearly no CPU, unlike
    reading the signals while the worker runs)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        group_id=settings.group_id, enable_auto_commit=False, **settings.kafka_client_kwargs()
    )
    deadline = time.monotonic() + timeout_s
    try:
        numbers = consumer.partitions_for_topic(settings.input_topic) or {0}
        partitions = [TopicPartition(settings.input_topic, p) for p in sorted(numbers)]
        while time.monotonic() < deadline:
            if sum(consumer.committed(tp) or 0 for tp in partitions) >= n:
                return True
            time.sleep(0.25)
        return False
    finally:
        consumer.close()


def worker_alone_row(
    base: Settings, st: Stack, texts: list[str], n: int, mean_tokens: float, timeout_s: float = 300.0
) -> Row:
    """Row 5w: row 5's worker process drains ``n`` events produced before it starts, with no replay
    producer or signal collector running beside it; the signals are read afterwards and timed by their
    own CreateTimes (10th-90th percentile). Row 5 over row 4 charges the load generator's CPU to the
    pipeline too; this row does not, so 5w / 4 is what the worker's own Kafka, JSON, fusion and commits
    cost on the same cores (the broker still runs beside it)."""
    settings = run_settings(base, st, partitions=1)
    ids = [f"alone-{i:06d}" for i in range(n)]
    replayer = Replayer(settings)
    try:
        replayer.send_all(ids, texts)
    finally:
        replayer.close()
    with worker_processes(settings, 1):
        drained = _wait_committed(settings, n, timeout_s)
    with collecting(settings) as collector:
        complete = drained and collector.wait_for(ids, timeout_s=60.0)
    rate = _middle_rate([collector.seen[i][0] for i in ids if i in collector.seen])
    return Row(
        "5w",
        "  same worker alone on a backlog (no replay, no collector)",
        rate["middle"],
        rate["middle_s"],
        settings.max_batch_size,
        mean_tokens,
        f"{n} events produced first, signals read after; their CreateTimes, 10th-90th percentile; "
        f"all {rate['messages']} in {rate['span_s']:.1f} s",
        {"complete": complete},
    )


# --- drain: N worker processes empty a backlog (the workers' own rate, free of the replay's) ----------


def drain_rows(
    base: Settings,
    texts: list[str],
    n: int,
    mean_tokens: float,
    procs: tuple[int, ...] = (1, 2),
    services: Stack | None = None,
    timeout_s: float = 120.0,
) -> tuple[list[Row], dict[str, Any]]:
    """Rows 5d<N>: ``n`` events are produced first, then N worker processes start and drain them.

    One Python replay producer and one collector cap what rows 5/5x can show (~20-40k msg/s); here the
    rate comes from the signals' own CreateTimes, set by the workers' producers: 80% of the signals over
    the time between the 10th and 90th percentile stamps (start-up and the last partial batches left out).
    """
    results: dict[int, dict[str, Any]] = {}
    partitions = max(procs)
    with _services(services) as st:
        for count in procs:
            settings = run_settings(base, st, partitions=partitions, intra_op_threads=1)
            ids = [f"drain{count}-{i:07d}" for i in range(n)]
            with replay_and_collect(settings) as (replayer, collector):
                replayer.send_all(ids, texts)
                replayer.producer.flush()
                collector.pause()  # read the signals after the drain: the collector's decoding off its cores
                with worker_processes(settings, count):
                    drained = _wait_committed(settings, n, timeout_s)
                collector.resume()
                complete = drained and collector.wait_for(ids, timeout_s=60.0)
            stamps = [collector.seen[i][0] for i in ids if i in collector.seen]
            results[count] = {**_middle_rate(stamps), "complete": complete}
            log.info("drain: %d process(es): %s", count, results[count])
    base_rate = results[procs[0]]["msgs_per_s"]
    rows = [
        Row(
            f"5d{count}",
            f"drain a backlog: {count} worker process{'es' if count > 1 else ''}",
            r["middle"],
            r["middle_s"],
            base.max_batch_size,
            mean_tokens,
            f"{n} events produced first; signals' CreateTimes, 10th-90th percentile; "
            f"{r['msgs_per_s'] / base_rate if base_rate else 0:.2f}x {procs[0]} process"
            f"{'es' if procs[0] > 1 else ''}; all {r['messages']} in {r['span_s']:.1f} s",
            {"complete": r["complete"]},
        )
        for count, r in results.items()
    ]
    return rows, {"drain_msgs_per_s": {str(c): round(r["msgs_per_s"], 1) for c, r in results.items()}}
