"""Shared machinery of the fault-injection suite: real `python -m worker run` processes, a feeder that
records where each input landed, and a collector that reads the output topics back.

Nothing here trusts a topic's end offsets: the feeder keeps the (partition, offset) the broker acknowledged
for every input, and the collector reads outputs from the beginning until the expected ids are in.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import orjson
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from kb_sync.loader import load_default_kb
from kb_sync.store import KBStore
from worker.embedded import create_topics, free_port
from worker.schemas import DLQ_REASON, decode_headers

REPO_ROOT = Path(__file__).resolve().parents[2]

TEXTS = (
    "Acme Corp cuts full-year guidance, shares tumble",
    "Fed signals two more rate hikes this year as inflation stays sticky",
    "$TSLA deliveries beat estimates; stock jumps in premarket",
    "Oil prices slide as OPEC+ agrees to raise output",
    "Bank of Japan keeps rates unchanged; yen weakens against the dollar",
    "Regulators open a probe into the lender's accounting after a whistleblower complaint",
)


def event(event_id: str, text: str | None = None, **extra: object) -> dict[str, object]:
    value: dict[str, object] = {
        "id": event_id,
        "text": text or f"{TEXTS[zlib.crc32(event_id.encode()) % len(TEXTS)]} ({event_id})",
        "source": "reliability",
        "published_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    value.update(extra)
    return value


def wait_until(condition: Callable[[], bool], timeout_s: float, every_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every_s)
    return condition()


def _pdeathsig() -> Callable[[], None] | None:
    """SIGKILL the worker if the test process dies without cleaning up (Linux; main thread only)."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    return lambda: libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


class WorkerProcess:
    """One `python -m worker run` child with its own metrics port and log file."""

    def __init__(self, name: str, settings: dict[str, object], log_dir: Path) -> None:
        self.name = name
        self.metrics_port = free_port()
        self.settings = {**settings, "metrics_port": self.metrics_port}
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FINSIGNAL_")}
        env.update({f"FINSIGNAL_{k.upper()}": str(v) for k, v in self.settings.items() if v is not None})
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self) -> WorkerProcess:
        assert not self.running, f"{self.name} is already running"
        with open(self.log_path, "ab") as log_file:
            log_file.write(f"--- start {self.starts + 1} at {time.time():.3f}\n".encode())
            log_file.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "worker", "run"],
                cwd=REPO_ROOT,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=_pdeathsig(),
            )
        self.starts += 1
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.metrics_port}{path}"

    def readyz(self) -> int | None:
        """HTTP status of /readyz; None when the ops server does not answer."""
        try:
            with urllib.request.urlopen(self.url("/readyz"), timeout=2) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (OSError, urllib.error.URLError):
            return None

    def wait_ready(self, timeout_s: float = 90.0) -> float:
        """Seconds until /readyz answered 200; fails with the log tail if the process died or timed out."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            assert self.running, f"{self.name} exited ({self.proc and self.proc.returncode}):\n{self.tail()}"
            if self.readyz() == 200:
                return time.monotonic() - started
            time.sleep(0.2)
        raise AssertionError(f"{self.name} not ready after {timeout_s:.0f} s:\n{self.tail()}")

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(self.url("/metrics"), timeout=5) as response:
            text = response.read().decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def kill(self) -> None:
        """kill -9: no flush, no commit, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout_s: float = 30.0) -> tuple[int | None, float]:
        """SIGTERM; (exit code, seconds to exit). Exit code None: still running after ``timeout_s``."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None, time.monotonic() - started
        return code, time.monotonic() - started

    def stop(self) -> None:
        """Cleanup: SIGTERM, SIGKILL if it lingers."""
        if self.running:
            code, _ = self.terminate(20)
            if code is None:
                self.kill()

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]


@dataclass
class Feeder:
    """Sends events (optionally rate-limited) and records the broker-acknowledged place of each one."""

    bootstrap: str
    topic: str
    placed: dict[tuple[int, int], str] = field(default_factory=dict)  # (partition, offset) -> id
    errors: list[str] = field(default_factory=list)
    sent: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def send_now(self, items: Iterable[tuple[str, bytes]], partition: int | None = None) -> None:
        """Send (key, value) pairs and wait until every one is acknowledged."""
        futures = [(key, self._send(key, value, partition)) for key, value in items]
        self._producer.flush(60)
        for key, future in futures:
            future.get(timeout=30)  # raises: a test must not silently lose its own inputs
            assert key

    def _send(self, key: str, value: bytes, partition: int | None = None):  # type: ignore[no-untyped-def]
        future = self._producer.send(self.topic, key=key.encode(), value=value, partition=partition)

        def placed(meta) -> None:  # type: ignore[no-untyped-def]
            with self._lock:
                self.placed[(meta.partition, meta.offset)] = key

        future.add_callback(placed)
        future.add_errback(lambda exc: self.errors.append(f"{key}: {exc!r}"))
        self.sent += 1
        return future

    def stream(self, items: list[tuple[str, bytes]], rate_per_s: float) -> None:
        """Send ``items`` in the background at about ``rate_per_s``."""

        def run() -> None:
            started = time.monotonic()
            for i, (key, value) in enumerate(items):
                if self._stop.is_set():
                    return
                due = started + i / rate_per_s
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self._send(key, value)
            self._producer.flush(60)

        self._thread = threading.Thread(target=run, name="feeder", daemon=True)
        self._thread.start()

    def wait_done(self, timeout_s: float = 300.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)
            assert not self._thread.is_alive(), "feeder did not finish"
        self._producer.flush(60)
        assert wait_until(lambda: len(self.placed) + len(self.errors) >= self.sent, 30)
        assert not self.errors, f"inputs not acknowledged: {self.errors[:5]}"

    @property
    def streaming(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def end_offsets(self) -> dict[int, int]:
        """partition -> next offset after the last acknowledged input (from our own acks, not the broker)."""
        ends: dict[int, int] = defaultdict(int)
        with self._lock:
            for partition, offset in self.placed:
                ends[partition] = max(ends[partition], offset + 1)
        return dict(ends)

    def ids_below(self, committed: dict[int, int]) -> list[str]:
        with self._lock:
            return [key for (p, o), key in self.placed.items() if o < committed.get(p, 0)]

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._producer.close(timeout=10)


class Collector:
    """Reads the signals and DLQ topics from the beginning in the background.

    ``signals``: id -> how many signals carry it; ``dlq``: input key -> reasons seen (a list: duplicates
    after a crash show up as repeats).
    """

    def __init__(self, bootstrap: str, signals_topic: str, dlq_topic: str, partitions: int) -> None:
        self.signal_topic = signals_topic
        self.signals: Counter[str] = Counter()
        self.signal_payloads: dict[str, dict[str, object]] = {}
        self.dlq: dict[str, list[str]] = defaultdict(list)
        self.dlq_values: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=100
        )
        tps = [TopicPartition(t, p) for t in (signals_topic, dlq_topic) for p in range(partitions)]
        self._consumer.assign(tps)
        self._consumer.seek_to_beginning(*tps)
        self._thread = threading.Thread(target=self._run, name="collector", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                polled = self._consumer.poll(timeout_ms=200)
            except Exception:  # the broker may be down in fault scenarios; keep trying
                time.sleep(0.5)
                continue
            with self._lock:
                for tp, records in polled.items():
                    for record in records:
                        if tp.topic == self.signal_topic:
                            payload = orjson.loads(record.value)
                            self.signals[payload["id"]] += 1
                            self.signal_payloads[payload["id"]] = payload
                        else:
                            key = (record.key or b"").decode("utf-8", "replace")
                            self.dlq[key].append(decode_headers(record.headers).get(DLQ_REASON, "?"))
                            self.dlq_values[key] = record.value

    def outputs(self) -> Counter[str]:
        """id/key -> number of outputs (signals + DLQ records)."""
        with self._lock:
            counts = Counter(self.signals)
            for key, reasons in self.dlq.items():
                counts[key] += len(reasons)
            return counts

    def missing(self, ids: Iterable[str]) -> list[str]:
        outputs = self.outputs()
        return [i for i in ids if outputs[i] == 0]

    def wait_for(self, ids: Iterable[str], timeout_s: float) -> list[str]:
        """Wait until every id has an output; returns those still missing."""
        wanted = list(ids)
        wait_until(lambda: not self.missing(wanted), timeout_s, every_s=0.3)
        return self.missing(wanted)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


class Committed:
    """Reads a group's committed offsets (OffsetFetch only: it never joins the group)."""

    def __init__(self, bootstrap: str, group_id: str, topic: str, partitions: int) -> None:
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False
        )
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]

    def offsets(self) -> dict[int, int]:
        return {tp.partition: self._consumer.committed(tp) or 0 for tp in self._tps}

    def close(self) -> None:
        self._consumer.close(autocommit=False)


class ReadyProbe:
    """Samples /readyz (and the metrics named in ``watch``) every 0.25 s in the background."""

    def __init__(self, worker: WorkerProcess, watch: tuple[str, ...] = ()) -> None:
        self.samples: list[tuple[float, int | None]] = []  # (monotonic time, /readyz status or None)
        self.watch = watch
        self.gauges: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._worker = worker
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            code = self._worker.readyz()
            now = time.monotonic()
            self.samples.append((now, code))
            if self.watch and code is not None:
                with contextlib.suppress(OSError, urllib.error.URLError):
                    values = self._worker.metrics()
                    self.gauges.append((now, {name: values.get(name, float("nan")) for name in self.watch}))

    def between(self, start: float, end: float) -> list[int | None]:
        return [code for at, code in self.samples if start <= at <= end]

    def first(self, code: int, after: float) -> float | None:
        return next((at for at, c in self.samples if at >= after and c == code), None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ", re.M)


def log_times(text: str, needle: str) -> list[float]:
    """Epoch seconds of the log lines (default `finsignal` format) that contain ``needle``."""
    times = []
    for line in text.splitlines():
        if needle in line:
            match = _LOG_TIME.match(line)
            if match:
                stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
                times.append(stamp.timestamp() + int(match.group(2)) / 1000)
    return times


def worker_settings(
    bootstrap: str, redis_url: str, names: Callable[[str], str], **overrides: object
) -> dict[str, object]:
    """Settings for a classify-only worker process on fresh names, sized for a shared 2-core box."""
    settings: dict[str, object] = {
        "kafka_bootstrap": bootstrap,
        "redis_url": redis_url,
        "role": "classify",
        "input_topic": names("rel.raw"),
        "signals_topic": names("rel.signals"),
        "dlq_topic": names("rel.dlq"),
        "alerts_topic": names("rel.alerts"),
        "group_id": names("rel.classify"),
        "kb_namespace": names("rel.kb"),
        "intra_op_threads": 1,
        "session_timeout_ms": 6000,
        "max_poll_interval_ms": 20_000,
        "kb_poll_interval_s": 1.0,
    }
    settings.update(overrides)
    return settings


def ids_of(items: list[tuple[str, bytes]]) -> list[str]:
    return [key for key, _ in items]


def events(prefix: str, n: int, bad_every: int = 0) -> list[tuple[str, bytes]]:
    """``n`` (key, value) inputs; every ``bad_every``-th one lacks its text (a schema DLQ record)."""
    out = []
    for i in range(n):
        key = f"{prefix}-{i}"
        if bad_every and i % bad_every == bad_every - 1:
            out.append((key, orjson.dumps({"id": key, "source": "reliability"})))
        else:
            out.append((key, orjson.dumps(event(key))))
    return out


@contextlib.contextmanager
def cleanup(*closers: Callable[[], None]):  # type: ignore[no-untyped-def]
    try:
        yield
    finally:
        for close in closers:
            with contextlib.suppress(Exception):
                close()


def publish_default_kb(redis_url: str, namespace: str) -> int:
    """Publish the shipped default KB; returns its version."""
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        return KBStore(client, namespace).publish(load_default_kb(), author="reliability")
    finally:
        client.close()


def prepare_pipeline(settings: dict[str, object], partitions: int) -> int:
    """Create the worker's input, signals and DLQ topics and publish the default KB; returns its version."""
    topics = [str(settings[name]) for name in ("input_topic", "signals_topic", "dlq_topic")]
    create_topics(str(settings["kafka_bootstrap"]), topics, partitions)
    return publish_default_kb(str(settings["redis_url"]), str(settings["kb_namespace"]))


class Flow(NamedTuple):
    feeder: Feeder
    collector: Collector
    committed: Committed


@contextlib.contextmanager
def flow(settings: dict[str, object], partitions: int) -> Iterator[Flow]:
    """A feeder on the input topic, a collector on the output topics and a reader of the group's
    committed offsets, all closed on the way out."""
    bootstrap = str(settings["kafka_bootstrap"])
    feeder = Feeder(bootstrap, str(settings["input_topic"]))
    collector = Collector(bootstrap, str(settings["signals_topic"]), str(settings["dlq_topic"]), partitions)
    committed = Committed(bootstrap, str(settings["group_id"]), str(settings["input_topic"]), partitions)
    with cleanup(feeder.close, collector.close, committed.close):
        yield Flow(feeder, collector, committed)
