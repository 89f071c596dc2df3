"""Fixtures of the fault-injection suite (tests/reliability).

Default sizes keep each scenario within a minute or two on a shared 2-core box; ``--long`` (or
FINSIGNAL_LONG=1) runs the full sizes of issue 6. Workers are real `python -m worker run` processes;
tests that stop Redis or the broker start their own, so the session-wide ones stay up for others.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from relharness import WorkerProcess, worker_settings

RELIABILITY_DIR = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if RELIABILITY_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def long_mode(request: pytest.FixtureRequest) -> bool:
    option = False
    with contextlib.suppress(ValueError):  # option not registered (this conftest was not an initial one)
        option = bool(request.config.getoption("--long"))
    return option or os.environ.get("FINSIGNAL_LONG", "") not in ("", "0")


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """``spawn(name, settings)`` -> a started worker process; every one is stopped at teardown."""
    workers: list[WorkerProcess] = []

    def make(name: str, settings: dict[str, object], start: bool = True) -> WorkerProcess:
        worker = WorkerProcess(name, settings, tmp_path)
        workers.append(worker)
        return worker.start() if start else worker

    yield make
    for worker in workers:
        worker.stop()
    for worker in workers:  # shown by pytest when the test failed
        print(f"===== {worker.name} log tail =====\n{worker.tail(4000)}")


@pytest.fixture
def base_settings(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]
) -> Callable[..., dict[str, object]]:
    """Worker settings on the session broker and Redis with fresh topic/group/KB names."""
    names: dict[str, object] = worker_settings(kafka_bootstrap, redis_url, unique_name)

    def make(**overrides: object) -> dict[str, object]:
        return {**names, **overrides}

    return make
