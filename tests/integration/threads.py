"""Run a stage (anything with ``run(stop)``) on a thread for the length of a ``with`` block."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar


class Runnable(Protocol):
    def run(self, stop: threading.Event) -> None: ...


StageT = TypeVar("StageT", bound=Runnable)


@contextmanager
def run_in_thread(stage: StageT, name: str = "stage", join_s: float = 30) -> Iterator[StageT]:
    """Start ``stage.run`` on a daemon thread; on exit stop it, and fail the test if it did not stop
    or raised (the exception is surfaced in the test thread)."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            stage.run(stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    try:
        yield stage
    finally:
        stop.set()
        thread.join(join_s)
        assert not thread.is_alive(), f"{name} did not stop"
        assert not errors, errors
