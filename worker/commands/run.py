"""`finsignal run`: the classify stage, the alert stage, or both (``--role``), plus the ops HTTP server.

SIGTERM/SIGINT set one stop event: each stage finishes its batch in hand, flushes, commits and returns;
the process exits 0 when they did so within ``shutdown_timeout_s``, else 1 (Kubernetes then kills it,
and the uncommitted batch is re-read by the next owner: duplicates, not loss).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from worker.cli import add_settings_flags, settings_from_args
from worker.config import Settings
from worker.health import Health, OpsServer
from worker.model_build.artifact import ArtifactError

log = logging.getLogger(__name__)


class Stages:
    """The stages ``settings.role`` asks for, sharing one Health and one ops server."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.health = Health()
        self.server = OpsServer(self.health, settings.metrics_host, settings.metrics_port)
        self.worker = None
        self.alert_stage = None
        self.errors: list[BaseException] = []
        if settings.role in ("all", "classify"):
            from worker.app import Worker

            self.worker = Worker(settings, self.health)
        if settings.role in ("all", "alert"):
            from worker.alerts.stage import AlertStage

            stage = AlertStage(settings)
            self.health.add_check("alert_stage", stage.ready.is_set)
            self.alert_stage = stage

    @property
    def metrics_url(self) -> str:
        return f"http://{self.server.host}:{self.server.port}"

    def ready(self) -> bool:
        return self.health.ready()

    def run(self, stop: threading.Event) -> None:
        """Run every stage until ``stop`` is set; a stage that crashes stops the others and re-raises."""
        self.server.start()
        targets: list[tuple[str, Callable[[threading.Event], None]]] = []
        if self.worker is not None:
            self.worker.start_model_and_kb()  # fail fast on a bad model before joining any group
            targets.append(("classify", self.worker.run))
        if self.alert_stage is not None:
            targets.append(("alert", self.alert_stage.run))
        threads = [
            threading.Thread(target=self._guard, args=(name, fn, stop), name=f"stage-{name}", daemon=True)
            for name, fn in targets
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.5)
        finally:
            self.server.stop()
        if self.errors:
            raise self.errors[0]

    def _guard(self, name: str, fn: Callable[[threading.Event], None], stop: threading.Event) -> None:
        try:
            fn(stop)
        except BaseException as exc:  # noqa: BLE001 - reported and re-raised by run()
            log.exception("%s stage failed; stopping the others", name)
            self.errors.append(exc)
            stop.set()


def run_stages(settings: Settings, stop: threading.Event) -> None:
    """Run the stages of ``settings.role`` in this process until ``stop`` is set (demo, tests, benches)."""
    Stages(settings).run(stop)


def _handle(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    stages = Stages(settings)
    if stages.worker is not None:
        try:
            stages.worker.start_model_and_kb()  # a bad model is a start-up error, not a crash later
        except ArtifactError as exc:
            print(f"finsignal run: {exc}", file=sys.stderr)
            return 2
    stop = threading.Event()
    signals_seen = 0

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            raise KeyboardInterrupt  # a second Ctrl-C: stop waiting
        log.info(
            "%s: finishing the batch in hand, flushing and committing (up to %.0f s)",
            signal.Signals(signum).name,
            settings.shutdown_timeout_s,
        )
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    errors: list[BaseException] = []

    def run_and_record() -> None:
        try:
            stages.run(stop)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    runner = threading.Thread(target=run_and_record, name="stages", daemon=True)
    runner.start()
    while runner.is_alive() and not stop.is_set():
        runner.join(0.5)
    runner.join(settings.shutdown_timeout_s + 5)
    if runner.is_alive():
        log.error(
            "stages did not stop within %.0f s; exiting (uncommitted records are re-read)",
            settings.shutdown_timeout_s,
        )
        return 1
    if errors:
        log.error("finsignal run failed: %s", errors[0])
        return 1
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "run",
        help="run the worker (classify and/or alert stage) with /metrics, /healthz, /readyz",
        description=(
            "Consume news events, classify them with the encoder and the Redis KB, publish signals, "
            "DLQ records and alerts. Every flag is also an environment variable FINSIGNAL_<NAME>."
        ),
    )
    add_settings_flags(parser)
    parser.set_defaults(handler=_handle)
