"""Scenario 4, Redis faults: the KB's Redis stopped mid-stream, on a Redis of this test's own.

Holds: the worker keeps classifying with the KB it has (0 dropped), /readyz stays 200 throughout,
finsignal_kb_stale is 1 and a log line says so while Redis is away; when Redis is back the watcher
reconnects with backoff and serves the version an expert published meanwhile (its pub/sub notice was
sent while the worker was away, so only the pointer poll after reconnecting can find it).

The bundled redis-server runs with persistence off; this test gives its Redis an RDB file of its own
(as a production Redis with persistence has), so that data survive the stop. "Published meanwhile" is done
on that file: while the worker's Redis is down, a second redis-server loads the file, the version is
published there (notice and all) and saved, and the worker's Redis starts again from it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from relharness import (
    ReadyProbe,
    WorkerProcess,
    cleanup,
    events,
    flow,
    ids_of,
    prepare_pipeline,
    wait_until,
)

from kb_sync.model import KBEntry
from kb_sync.store import KBStore
from worker.embedded import EmbeddedRedis, bundled_redis_server, free_port

PARTITIONS = 3


class PersistentRedis(EmbeddedRedis):
    """The bundled redis-server with an RDB file in ``data_dir`` (loaded at start, written by SAVE)."""

    def __init__(self, port: int, data_dir: Path) -> None:
        super().__init__(port, binary=str(bundled_redis_server()))
        self.data_dir = data_dir

    def _command(self) -> list[str]:
        command = super()._command()
        command[command.index("--dir") + 1] = str(self.data_dir)
        return [*command, "--dbfilename", "kb.rdb"]

    def save_and_stop(self) -> None:
        client = redis.Redis.from_url(self.url, socket_timeout=5)
        client.save()
        client.close()
        self.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[PersistentRedis]:
    server = PersistentRedis(free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.mark.slow
def test_redis_down_keeps_classifying_stays_ready_flags_stale_and_picks_up_the_new_version(
    own_redis: PersistentRedis,
    base_settings: Callable[..., dict[str, object]],
    spawn: Callable[..., WorkerProcess],
    tmp_path: Path,
    long_mode: bool,
) -> None:
    outage_s = 30.0 if long_mode else 10.0
    rate = 40.0
    s = base_settings(redis_url=own_redis.url)
    namespace = str(s["kb_namespace"])
    v1 = prepare_pipeline(s, PARTITIONS)  # the KB goes to this test's own Redis (s["redis_url"])
    worker = spawn("redis", s)
    worker.wait_ready()
    assert worker.metrics()["finsignal_kb_version"] == v1

    inputs = events("kb", int(rate * (outage_s + 20)))
    probe = ReadyProbe(worker, watch=("finsignal_kb_stale", "finsignal_kb_version"))
    with flow(s, PARTITIONS) as (feeder, collector, _), cleanup(probe.close):
        feeder.stream(inputs, rate)
        time.sleep(5)
        down_at = time.monotonic()
        own_redis.save_and_stop()

        # An expert publishes v2 while the worker's Redis is away (see the module docstring).
        time.sleep(1.0)
        editor = PersistentRedis(free_port(), tmp_path)
        editor.start()
        client = redis.Redis.from_url(editor.url, socket_timeout=5)
        entry = KBEntry(
            id="rel:outage",
            kind="term",
            text="liquidity crunch",
            group="credit",
            author="expert",
            sentiment="negative",
            weight=2.0,
        )
        v2 = KBStore(client, namespace).apply_delta([entry], [], author="expert")
        client.save()
        client.close()
        editor.stop()
        assert v2 > v1

        time.sleep(max(0.0, outage_s - (time.monotonic() - down_at)))
        up_at = time.monotonic()
        own_redis.start()
        picked_up = wait_until(
            lambda: any(g["finsignal_kb_version"] == v2 for at, g in probe.gauges if at >= up_at), 30
        )
        picked_up_s = next(
            (at - up_at for at, g in probe.gauges if at >= up_at and g["finsignal_kb_version"] == v2), None
        )
        feeder.wait_done()
        missing = collector.wait_for(ids_of(inputs), 120)
        time.sleep(0.5)

    during = probe.between(down_at + 0.5, up_at)
    stale_during = [g["finsignal_kb_stale"] for at, g in probe.gauges if down_at + 6 <= at <= up_at]
    stale_after = [
        g["finsignal_kb_stale"] for at, g in probe.gauges if picked_up_s and at > up_at + picked_up_s + 1
    ]
    stale_from = next(
        (at - down_at for at, g in probe.gauges if at >= down_at and g["finsignal_kb_stale"] == 1), None
    )
    versions = {}
    for payload in collector.signal_payloads.values():
        versions[payload["kb_version"]] = versions.get(payload["kb_version"], 0) + 1
    log = worker.log()
    print(
        f"FIGURES redis: {len(inputs)} events at {rate:.0f}/s, Redis down {outage_s:.0f} s; lost "
        f"{len(missing)}; /readyz during outage {during.count(200)}/{len(during)} samples 200; kb_stale=1 "
        f"{stale_from:.1f} s after the stop; v{v2} (published during the outage) served "
        f"{picked_up_s} s after Redis came back; signals per KB version {versions}"
    )
    assert not missing, f"{len(missing)} events dropped, e.g. {missing[:5]}"
    assert during and all(code == 200 for code in during), f"readiness dropped during the outage: {during}"
    assert stale_during and all(v == 1 for v in stale_during), "finsignal_kb_stale not 1 during the outage"
    assert "KB watcher: Redis unreachable" in log
    assert picked_up, f"v{v2} not picked up after Redis came back:\n{worker.tail()}"
    assert stale_after and all(v == 0 for v in stale_after), "finsignal_kb_stale not back to 0"
    assert versions.get(v1, 0) > 0 and versions.get(v2, 0) > 0, versions
    assert worker.starts == 1 and worker.running
