"""`finsignal replay FILE.jsonl`: send a JSON-lines file to a topic, bad lines included.

Each non-empty line goes out as the file's raw bytes (no re-encoding), so a demo or a test can feed
deliberately malformed messages; the key is the event's id when the line parses as an object with a
string id. ``replay_file`` is the in-process entry point for the demo and the benchmarks.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from worker.cli import KAFKA_CONNECTION_SETTINGS, add_settings_flags, settings_from_args
from worker.config import Settings
from worker.decode import DecodeFailure, decode_event

REPLAY_SETTINGS = [
    *KAFKA_CONNECTION_SETTINGS,
    "input_topic",
    "producer_linger_ms",
    "producer_compression",
    "max_message_bytes",
    "log_level",
]
_PRUNE_EVERY = 10_000  # sends between sweeps of finished futures (bounded memory on long replays)
_MAX_BLOCK_MS = 15_000  # a send waits this long for topic metadata before the replay gives up
_BOOTSTRAP_TIMEOUT_MS = 10_000  # an unreachable broker is reported after this long


class ReplayError(RuntimeError):
    """The replay could not run (unreadable file, missing topic); the message says what to fix."""


class BrokerUnavailable(ReplayError):
    """No broker answered at the bootstrap address."""


@dataclass(frozen=True, slots=True)
class ReplayStats:
    topic: str
    sent: int  # records handed to the producer (all loops)
    bad_lines: int  # of those, lines that the worker will refuse (worker.decode), passed through on purpose
    failed: int  # sends the broker did not confirm
    seconds: float
    first_error: str | None = None

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (
            f"replayed {self.sent} records ({self.bad_lines} bad lines passed through) to {self.topic} "
            f"in {self.seconds:.2f} s ({self.rate:,.0f} msgs/s)"
        )


class RateLimiter:
    """Token bucket on an absolute schedule: message n is due at start + n/rate, so sleep overshoot
    does not accumulate. After a stall, at most ``burst_s`` worth of messages are sent at once."""

    def __init__(self, rate: float, burst_s: float = 1.0) -> None:
        self.rate = rate
        self.burst = max(1.0, rate * burst_s)
        self._start = time.monotonic()
        self._n = 0

    def wait(self) -> None:
        if self.rate <= 0:
            return
        due = self._start + self._n / self.rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        elif (now - due) * self.rate > self.burst:  # far behind: restart the schedule, keep a burst
            self._start = now - self.burst / self.rate
            self._n = 0
        self._n += 1


def read_lines(path: Path) -> list[bytes]:
    """The file's non-empty lines as raw bytes (line terminator removed, CRLF too)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ReplayError(f"file not found: {path}") from None
    except OSError as exc:
        raise ReplayError(f"cannot read {path}: {exc.strerror}") from None
    return [line for line in data.splitlines() if line]


def key_of(line: bytes, key_field: str) -> bytes | None:
    """The event's ``key_field`` as the record key, when the line is an object with a string there."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    value = obj.get(key_field) if isinstance(obj, dict) else None
    return value.encode() if isinstance(value, str) else None


def replay_file(
    settings: Settings,
    path: Path | str,
    topic: str | None = None,
    rate: float = 0.0,
    loop: int = 1,
    progress: bool = True,
    key_field: str = "id",
) -> ReplayStats:
    """Send every non-empty line of ``path`` to ``topic`` (default settings.input_topic), ``loop`` times.

    ``rate`` is messages per second (0: as fast as possible). Every send is confirmed after the final
    flush; failures are counted, not raised. Raises ReplayError for an unreadable file or a topic
    that never shows up, and kafka.errors.NoBrokersAvailable when the broker cannot be reached.
    """
    from kafka import KafkaProducer
    from kafka import errors as kafka_errors
    from kafka.errors import KafkaError, KafkaTimeoutError
    from tqdm import tqdm

    # kafka-python 3 reports an unreachable bootstrap as KafkaTimeoutError from the constructor;
    # 2.x raised NoBrokersAvailable.
    no_broker = tuple(
        cls for cls in (getattr(kafka_errors, "NoBrokersAvailable", None), KafkaTimeoutError) if cls
    )

    if rate < 0 or loop < 1:
        raise ReplayError(f"--rate must be >= 0 (got {rate}) and --loop >= 1 (got {loop})")
    topic = topic or settings.input_topic
    lines = read_lines(Path(path))
    keys = [key_of(line, key_field) for line in lines]
    bad_per_loop = sum(
        isinstance(decode_event(line, settings.max_message_bytes), DecodeFailure) for line in lines
    )
    try:
        producer = KafkaProducer(
            **settings.kafka_client_kwargs(),
            client_id="finsignal-replay",
            acks="all",
            linger_ms=settings.producer_linger_ms,
            compression_type=None if settings.producer_compression == "none" else "gzip",
            # a line over the broker's limit fails on its own; the 1 MB default would refuse it here
            max_request_size=max(1 << 20, max((len(line) for line in lines), default=0) + 1024),
            max_block_ms=_MAX_BLOCK_MS,
            bootstrap_timeout_ms=_BOOTSTRAP_TIMEOUT_MS,
        )
    except no_broker as exc:
        raise BrokerUnavailable(
            f"no Kafka broker reachable at {settings.kafka_bootstrap} ({exc}); set --kafka-bootstrap "
            "or FINSIGNAL_KAFKA_BOOTSTRAP to a running broker (host:port)"
        ) from None
    pending: list[Any] = []
    failed = 0
    first_error: str | None = None
    sent = 0
    limiter = RateLimiter(rate)
    bar = tqdm(
        total=len(lines) * loop,
        unit="msg",
        desc=f"replay -> {topic}",
        file=sys.stderr,
        disable=None if progress else True,  # None: off when stderr is not a terminal
    )
    start = time.monotonic()
    try:
        for _ in range(loop):
            for line, key in zip(lines, keys, strict=True):
                limiter.wait()
                try:
                    pending.append(producer.send(topic, value=line, key=key))
                except KafkaTimeoutError as exc:
                    raise ReplayError(
                        f"topic {topic!r} is not available on {settings.kafka_bootstrap} after "
                        f"{_MAX_BLOCK_MS / 1000:.0f} s ({exc}); create it or pass --topic"
                    ) from None
                except KafkaError as exc:  # refused client-side (e.g. too large): count, go on
                    failed += 1
                    first_error = first_error or f"{type(exc).__name__}: {exc}"
                sent += 1
                bar.update(1)
                if len(pending) >= _PRUNE_EVERY:
                    pending, more, error = _sweep(pending, final=False)
                    failed += more
                    first_error = first_error or error
        producer.flush()
        pending, more, error = _sweep(pending, final=True)
        failed += more
        first_error = first_error or error
    finally:
        bar.close()
        producer.close(timeout=5)
    return ReplayStats(topic, sent, bad_per_loop * loop, failed, time.monotonic() - start, first_error)


def _sweep(pending: list[Any], final: bool) -> tuple[list[Any], int, str | None]:
    """Drop finished futures; count failed ones. ``final``: every future must be finished (after flush)."""
    still: list[Any] = []
    failed = 0
    first_error: str | None = None
    for future in pending:
        if not future.is_done:
            if not final:
                still.append(future)
                continue
            try:  # flush() returned, so this only happens if the producer broke down
                future.get(timeout=5)
            except Exception as exc:  # any failure is a failed send
                failed += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"
            continue
        if future.failed():
            failed += 1
            first_error = first_error or f"{type(future.exception).__name__}: {future.exception}"
    return still, failed, first_error


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="send a JSON-lines file to a topic (raw bytes, bad lines included)",
        description="Send each non-empty line of FILE as one record (the line's raw bytes) to the input "
        "topic; malformed lines are sent too, so the worker's DLQ path can be demonstrated.",
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="JSON-lines file, one event per line")
    parser.add_argument("--topic", default=None, help="target topic (default: the input_topic setting)")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="messages per second; 0 = as fast as possible"
    )
    parser.add_argument("--loop", type=int, default=1, help="send the file this many times")
    parser.add_argument(
        "--key-field", default="id", help="event field used as the record key when it is a string"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_settings_flags(parser, only=REPLAY_SETTINGS)
    parser.set_defaults(handler=_replay)


def _replay(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    try:
        stats = replay_file(
            settings,
            args.file,
            topic=args.topic,
            rate=args.rate,
            loop=args.loop,
            progress=not args.no_progress,
            key_field=args.key_field,
        )
    except ReplayError as exc:
        print(f"finsignal replay: {exc}", file=sys.stderr)
        return 2
    print(stats.summary())
    if stats.failed:
        print(
            f"finsignal replay: {stats.failed} of {stats.sent} sends to {stats.topic} failed "
            f"(first error: {stats.first_error})",
            file=sys.stderr,
        )
        return 1
    return 0
