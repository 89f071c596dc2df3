"""`finsignal demo`: the whole pipeline on an embedded broker and Redis, with a live view and a summary.

1. start Tansu and Redis (REDIS_URL when reachable: a fresh KB namespace, deleted at the end), create
   the four topics; 2. publish the default KB; 3. run the classify and alert stages in a thread and
   wait for /readyz; 4. replay the sample stream (bad lines included) at ``--rate``; 5. read signals,
   alerts and DLQ records from the beginning until every replayed message became a signal or a DLQ
   record and the alert stage has committed every signal, or ``--timeout``; 6. print a summary.
Everything started here is stopped on the way out (also on Ctrl-C and errors). Exit code 0 only when
every message is accounted for.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from kafka.errors import KafkaError
from redis import RedisError
from rich.console import Console
from rich.live import Live

from kb_sync.store import KBStoreError
from worker.alerts.payload import format_alert_line
from worker.cli import add_settings_flags, settings_from_args
from worker.commands.replay import ReplayError, read_lines, replay_file
from worker.commands.run import run_stages
from worker.config import Settings
from worker.demo.outputs import OutputReader
from worker.demo.services import DemoServices, create_demo_topics, demo_services, publish_default_kb
from worker.demo.tally import Tally
from worker.demo.view import live_screen, progress_line, summary_lines
from worker.embedded import EmbeddedServiceError, free_port

log = logging.getLogger(__name__)

SAMPLE_STREAM = Path(__file__).resolve().parent.parent / "data" / "sample_stream.jsonl"
DEMO_SETTINGS = ["model_dir", "provider", "max_batch_size", "max_batch_delay_ms", "log_level"]
_PROGRESS_EVERY_S = 2.0  # non-TTY progress line interval
_REDRAW_EVERY_S = 0.25
_SETTLE_S = 20.0  # after the last message is accounted for: time the alert stage gets to catch up


class DemoError(RuntimeError):
    """The demo cannot go on; the message says what failed."""


@dataclass(frozen=True)
class DemoOptions:
    rate: float
    timeout_s: float
    partitions: int
    live: bool
    stream: Path = SAMPLE_STREAM


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "demo",
        help="run the pipeline on an embedded broker and Redis over a sample stream, with a live view",
        description=(
            "Start an embedded Kafka-protocol broker (Tansu) and Redis (REDIS_URL when reachable), "
            "publish the default KB, run the worker in-process, replay worker/data/sample_stream.jsonl "
            "and show signals, alerts and DLQ records live, then a summary. Stops on its own and "
            "leaves nothing running; exits 0 only when every message became a signal or a DLQ record."
        ),
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=50.0,
        help="messages per second replayed (0: as fast as possible; default %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds from start-up to giving up on unaccounted messages (exit code 1; default %(default)s)",
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=3,
        help="partitions of the input and signals topics (default %(default)s)",
    )
    parser.add_argument(
        "--no-live",
        action="store_true",
        help="plain progress lines instead of the live view (implied off a TTY)",
    )
    add_settings_flags(parser, only=DEMO_SETTINGS)
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    for flag, value, ok in (
        ("--rate", args.rate, args.rate >= 0),
        ("--timeout", args.timeout, args.timeout > 0),
        ("--partitions", args.partitions, args.partitions >= 1),
    ):
        if not ok:
            print(
                f"finsignal demo: {flag} {value} is out of range (rate >= 0, timeout > 0, partitions >= 1)",
                file=sys.stderr,
            )
            return 2
    settings = settings_from_args(args)
    console = Console(highlight=False)
    options = DemoOptions(
        rate=args.rate,
        timeout_s=args.timeout,
        partitions=args.partitions,
        live=not args.no_live and console.is_terminal,
    )
    # The demo prints its own progress; library INFO lines would scroll the view away.
    with _log_level(None if args.log_level else logging.WARNING), _sigterm_as_interrupt():
        try:
            return run_demo(settings, options, console)
        except (EmbeddedServiceError, KBStoreError, RedisError, KafkaError) as exc:
            # Set-up failed (a service did not start, the KB or a topic was refused): say which.
            print(f"finsignal demo: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1


def run_demo(base: Settings, options: DemoOptions, console: Console) -> int:
    say = _printer(console)
    try:
        lines_expected = len(read_lines(options.stream))
    except ReplayError as exc:
        print(f"finsignal demo: {exc}", file=sys.stderr)
        return 1
    say("demo: starting the embedded broker and Redis")
    with demo_services(base.kb_namespace) as services:
        settings = demo_settings(base, services)
        say(
            f"demo: broker {settings.kafka_bootstrap}, Redis {services.redis_note}, "
            f"KB namespace {settings.kb_namespace}"
        )
        create_demo_topics(settings, options.partitions)
        version, points = publish_default_kb(settings)
        say(f"demo: published the default KB as version {version} ({points} points)")
        return _run_pipeline(settings, options, console, lines_expected)


def demo_settings(base: Settings, services: DemoServices) -> Settings:
    """The user's settings pointed at the demo's own services (both stages in this process)."""
    return base.model_copy(
        update={
            "kafka_bootstrap": services.broker.bootstrap,
            "redis_url": services.redis.url,
            "kb_namespace": services.kb_namespace,
            "metrics_host": "127.0.0.1",
            "metrics_port": free_port(),
            "role": "all",
            "group_instance_id": None,
        }
    )


def _run_pipeline(settings: Settings, options: DemoOptions, console: Console, lines_expected: int) -> int:
    say = _printer(console)
    deadline = time.monotonic() + options.timeout_s
    stop = threading.Event()
    pipeline = _Task("pipeline", lambda: run_stages(settings, stop))
    pipeline.start()
    reader: OutputReader | None = None
    follow: _Follow | None = None
    interrupted = False
    try:
        waited = _wait_ready(settings, pipeline, deadline, console, options.live)
        say(f"demo: worker ready in {waited:.1f} s; replaying {options.stream.name} at {_rate(options.rate)}")
        reader = OutputReader(settings)
        replay = _Task(
            "replay",
            lambda: replay_file(
                settings, options.stream, settings.input_topic, options.rate, loop=1, progress=False
            ),
        )
        follow = _Follow(options, console, reader, pipeline, replay, lines_expected)
        replay.start()
        try:
            follow.run(deadline)
        except KeyboardInterrupt:
            interrupted = True
    except DemoError as exc:
        print(f"finsignal demo: {exc}", file=sys.stderr)
        return 1
    finally:
        stop.set()
        pipeline.join(settings.shutdown_timeout_s + 10)
        # An interrupted replay thread may still be sending; its clients' errors once the broker is
        # gone are expected noise (the thread is a daemon and ends with the process).
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
        if pipeline.is_alive():
            log.warning("demo: the worker did not stop within %.0f s", settings.shutdown_timeout_s + 10)
        if reader is not None:
            reader.close()
    assert follow is not None and reader is not None  # set before anything that can return here
    summary = follow.tally.summary(follow.lines_in or reader.inputs, follow.started)
    source = f"{options.stream.name} at {_rate(options.rate)}"
    if follow.bad_lines is not None:
        source += f"; {follow.lines_in - follow.bad_lines} valid + {follow.bad_lines} bad lines"
    for line in summary_lines(summary, source):
        say(line)
    if interrupted:
        say("  interrupted (Ctrl-C)")
        return 130
    return 0 if summary.complete else 1


class _Follow:
    """Reads the outputs until every message is accounted for and the alert stage has caught up (or
    the deadline), showing them live or as progress lines."""

    def __init__(
        self,
        options: DemoOptions,
        console: Console,
        reader: OutputReader,
        pipeline: _Task,
        replay: _Task,
        lines_expected: int,
    ) -> None:
        self.options = options
        self.console = console
        self.say = _printer(console)
        self.reader = reader
        self.pipeline = pipeline
        self.replay = replay
        self.lines_expected = lines_expected
        self.tally = Tally()
        self.started = time.monotonic()
        self.lines_in = 0  # confirmed sends of the replay, known once it is done
        self.bad_lines: int | None = None
        self._accounted_at: float | None = None
        self._alerts_settled = False
        self._settle_until = 0.0
        self._shown_alerts = 0

    def run(self, deadline: float) -> None:
        live_ctx: contextlib.AbstractContextManager[Any] = (
            Live(console=self.console, auto_refresh=False, vertical_overflow="crop")
            if self.options.live
            else contextlib.nullcontext()
        )
        with live_ctx as live:
            next_show = 0.0
            while not self._step():
                now = time.monotonic()
                if now >= deadline:
                    self.say(f"demo: timed out after {self.options.timeout_s:.0f} s (--timeout)")
                    break
                if now >= next_show:
                    self._show(live, now)
                    next_show = now + (_REDRAW_EVERY_S if live is not None else _PROGRESS_EVERY_S)
                if live is None:
                    self._print_new_alerts()
            if live is None:
                self._print_new_alerts()
            else:
                self._show(live, time.monotonic())

    def _step(self) -> bool:
        """Read once; True when done."""
        self.reader.poll(self.tally, timeout_ms=100)
        now = time.monotonic()
        if self.pipeline.done:
            raise DemoError(f"the worker stopped: {self.pipeline.error or 'it returned early'}")
        if self.replay.error is not None:
            raise DemoError(f"the replay failed: {self.replay.error}")
        if self.replay.done and self.bad_lines is None:
            stats = self.replay.result
            self.lines_in = stats.sent - stats.failed
            self.bad_lines = stats.bad_lines
            self.say(f"demo: {stats.summary()}")
            if stats.failed:
                self.say(f"demo: {stats.failed} sends were not confirmed: {stats.first_error}")
        if self.bad_lines is None or self.tally.accounted < self.lines_in:
            return False
        if self._accounted_at is None:
            self._accounted_at = now
        if not self._alerts_settled:
            self._alerts_settled = _caught_up(self.reader) or now - self._accounted_at > _SETTLE_S
            self._settle_until = now + 1.0  # one more read of the alerts topic after the commit
            return False
        return now >= self._settle_until

    def _phase(self) -> str:
        if not self.replay.done:
            return "replaying"
        if self._accounted_at is None:
            return "waiting for the last outputs"
        return "all accounted for; alert stage finishing"

    def _show(self, live: Live | None, now: float) -> None:
        total = self.lines_in or self.lines_expected
        if live is None:
            self.say(progress_line(self.tally, sent=self.reader.inputs, lines_in=total, now=now))
            return
        screen = live_screen(
            self.tally, sent=self.reader.inputs, lines_in=total, now=now, phase=self._phase()
        )
        live.update(screen, refresh=True)

    def _print_new_alerts(self) -> None:
        for alert in self.tally.alerts[self._shown_alerts :]:
            self.say(f"alert: {format_alert_line(alert.payload)}")
        self._shown_alerts = len(self.tally.alerts)


def _caught_up(reader: OutputReader) -> bool:
    try:
        return reader.alert_stage_caught_up()
    except Exception as exc:  # noqa: BLE001 - a broker without the admin API: fall back to the grace time
        log.debug("demo: cannot read the alert stage's offsets: %s", exc)
        return False


def _wait_ready(settings: Settings, pipeline: _Task, deadline: float, console: Console, live: bool) -> float:
    """Poll /readyz until the worker is ready (model and KB loaded, consumers assigned)."""
    url = f"http://{settings.metrics_host}:{settings.metrics_port}/readyz"
    started = time.monotonic()
    what = "waiting for the worker (loading the model, embedding the KB, joining the groups)"
    status_ctx: contextlib.AbstractContextManager[Any] = (
        console.status(what) if live else contextlib.nullcontext()
    )
    if not live:
        _printer(console)(f"demo: {what}")
    with status_ctx:
        while not _ready(url):
            if pipeline.error is not None or pipeline.done:
                raise DemoError(
                    f"the worker stopped before it was ready: {pipeline.error or 'no error given'}"
                )
            if time.monotonic() >= deadline:
                raise DemoError(f"the worker was not ready at {url} within --timeout")
            time.sleep(0.25)
    return time.monotonic() - started


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _rate(rate: float) -> str:
    return "full speed" if rate == 0 else f"{rate:g} msgs/s"


def _printer(console: Console) -> Callable[[str], None]:
    def say(text: str) -> None:
        console.print(text, soft_wrap=True, markup=False)

    return say


class _Task(threading.Thread):
    """A daemon thread that keeps its exception for the main thread to report."""

    def __init__(self, name: str, target: Callable[[], object]) -> None:
        super().__init__(name=f"demo-{name}", daemon=True)
        self._target_fn = target
        self.error: BaseException | None = None
        self.result: Any = None
        self.done = False

    def run(self) -> None:
        try:
            self.result = self._target_fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.error = exc
        finally:
            self.done = True


@contextlib.contextmanager
def _log_level(level: int | None) -> Iterator[None]:
    """Set the root log level for the demo's duration (None: leave it); put it and kafka's back after."""
    root, kafka = logging.getLogger(), logging.getLogger("kafka")
    before = root.level, kafka.level
    if level is not None:
        root.setLevel(level)
    try:
        yield
    finally:
        root.setLevel(before[0])
        kafka.setLevel(before[1])


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM cleans up like Ctrl-C (main thread only; elsewhere signals cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
