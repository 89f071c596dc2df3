"""Shared fixtures: one real Kafka-protocol broker (Tansu) and one real Redis for the whole session.

Tansu and Redis are shared by every test, so each test names its own topics, groups and KB namespace
through ``unique_name`` (or ``settings_factory``, which does it for you).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from worker.config import Settings, load_settings
from worker.embedded import start_redis, start_tansu

INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_addoption(parser: pytest.Parser) -> None:
    # In the root conftest so that `pytest tests --long` works, not only `pytest tests/reliability`.
    parser.addoption(
        "--long",
        action="store_true",
        default=False,
        help="reliability suite: run the full sizes of issue 6 (also FINSIGNAL_LONG=1)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Everything under tests/integration talks to real services: mark it so `-m "not integration"` works.
    for item in items:
        if INTEGRATION_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """ "127.0.0.1:PORT" of a memory-only Tansu broker started for this test session."""
    with start_tansu() as broker:
        yield broker.bootstrap


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """REDIS_URL when set and reachable, else a bundled redis-server started for this session."""
    with start_redis() as server:
        yield server.url


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``unique_name("topic")`` -> "topic.test_x.1a2b3c4d5e": fresh Kafka/Redis names per call."""
    test = re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)[:40]

    def make(prefix: str = "t") -> str:
        return f"{prefix}.{test}.{uuid.uuid4().hex[:10]}"

    return make


@pytest.fixture
def settings_factory(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]
) -> Callable[..., Settings]:
    """``settings_factory(**overrides)`` -> Settings on the session broker and Redis.

    Topic, group and KB namespace names are fresh for each test but the same for every call within
    one test, so two workers built in one test share topics and their consumer group.
    """
    names: dict[str, object] = {
        "kafka_bootstrap": kafka_bootstrap,
        "redis_url": redis_url,
        "kb_namespace": unique_name("kb"),
        "input_topic": unique_name("news.raw"),
        "signals_topic": unique_name("news.signals"),
        "alerts_topic": unique_name("news.alerts"),
        "dlq_topic": unique_name("news.dlq"),
        "group_id": unique_name("classify"),
        "alert_group_id": unique_name("alert"),
        "metrics_port": 0,
        "max_poll_interval_ms": 15_000,
        "session_timeout_ms": 10_000,
    }

    def make(**overrides: object) -> Settings:
        return load_settings(**{**names, **overrides})

    return make
