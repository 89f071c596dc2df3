"""`finsignal replay` on a real Kafka-protocol broker (Tansu): bytes, keys, rate, CLI, errors."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from worker.cli import main
from worker.commands import replay
from worker.commands.replay import replay_file
from worker.config import REPO_ROOT, Settings
from worker.decode import DecodeFailure, decode_event
from worker.embedded import create_topics, free_port

SAMPLE = REPO_ROOT / "worker" / "data" / "sample_stream.jsonl"


def consume_all(
    settings: Settings, topic: str, count: int, timeout_s: float = 20.0
) -> list[tuple[bytes, bytes]]:
    """(key, value) of the first ``count`` records of the topic's single partition, in offset order.

    Polls until ``count`` records arrived (not end_offsets: Tansu's latest offset is wrong after
    multi-record batches); reads a little longer to catch duplicates.
    """
    consumer = KafkaConsumer(group_id=None, enable_auto_commit=False, **settings.kafka_client_kwargs())
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        out: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + timeout_s
        extra_until: float | None = None
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                out.extend((r.key, r.value) for r in records)
            if len(out) >= count:
                extra_until = extra_until or time.monotonic() + 0.5
                if time.monotonic() >= extra_until:
                    break
        return out
    finally:
        consumer.close(autocommit=False)


def topic_for(settings_factory: Callable[..., Settings]) -> tuple[Settings, str]:
    settings = settings_factory()
    create_topics(settings.kafka_bootstrap, [settings.input_topic])
    return settings, settings.input_topic


def test_replay_sends_the_sample_stream_byte_for_byte(settings_factory: Callable[..., Settings]) -> None:
    settings, topic = topic_for(settings_factory)
    lines = [line for line in SAMPLE.read_bytes().split(b"\n") if line]
    expected_bad = sum(isinstance(decode_event(x, settings.max_message_bytes), DecodeFailure) for x in lines)

    stats = replay_file(settings, SAMPLE, topic=topic, rate=0, progress=False)

    assert (stats.sent, stats.failed, stats.bad_lines) == (len(lines), 0, expected_bad)
    assert expected_bad > 0  # the bad lines went out too
    received = consume_all(settings, topic, len(lines))
    assert len(received) == len(lines)
    assert [value for _, value in received] == lines
    for (key, _), line in zip(received, lines, strict=True):
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            assert key is None  # unparseable lines (bad JSON, bad UTF-8) go out without a key
            continue
        assert key == obj["id"].encode()


def test_replay_loop_and_key_field(settings_factory: Callable[..., Settings], tmp_path: Path) -> None:
    settings, topic = topic_for(settings_factory)
    path = tmp_path / "two.jsonl"
    path.write_bytes(b'{"id": "a", "source": "s1"}\n\n{"id": 7, "source": "s2"}\r\nnot json\n')
    stats = replay_file(settings, path, topic=topic, loop=3, progress=False, key_field="source")
    assert (stats.sent, stats.bad_lines, stats.failed) == (9, 9, 0)
    received = consume_all(settings, topic, 9)
    assert (
        received
        == [
            (b"s1", b'{"id": "a", "source": "s1"}'),
            (b"s2", b'{"id": 7, "source": "s2"}'),
            (None, b"not json"),
        ]
        * 3
    )


def test_replay_rate_limits_sends(settings_factory: Callable[..., Settings], tmp_path: Path) -> None:
    settings, topic = topic_for(settings_factory)
    path = tmp_path / "forty.jsonl"
    path.write_bytes(b"".join(b'{"id": "r%d"}\n' % i for i in range(40)))
    start = time.monotonic()
    stats = replay_file(settings, path, topic=topic, rate=100, progress=False)
    elapsed = time.monotonic() - start
    # 40 messages at 100/s: the last one is due 0.39 s after the first
    assert stats.sent == 40 and stats.failed == 0
    assert elapsed >= 0.35
    assert stats.seconds >= 0.35
    assert stats.rate <= 100 * 1.15


def test_cli_replay_prints_the_summary(
    settings_factory: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    settings, topic = topic_for(settings_factory)
    lines = [line for line in SAMPLE.read_bytes().split(b"\n") if line]
    bad = sum(isinstance(decode_event(x, settings.max_message_bytes), DecodeFailure) for x in lines)
    code = main(
        [
            "replay",
            str(SAMPLE),
            "--kafka-bootstrap",
            settings.kafka_bootstrap,
            "--input-topic",
            topic,
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert f"replayed {len(lines)} records ({bad} bad lines passed through) to {topic} in " in out
    assert "msgs/s)" in out
    assert len(consume_all(settings, topic, len(lines))) == len(lines)


def test_cli_replay_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.jsonl"
    assert main(["replay", str(missing), "--no-progress"]) == 2
    assert str(missing) in capsys.readouterr().err


def test_cli_replay_unreachable_broker_exits_2_and_names_the_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay, "_BOOTSTRAP_TIMEOUT_MS", 2000)  # fail fast; the default is 10 s

    path = tmp_path / "one.jsonl"
    path.write_bytes(b'{"id": "x"}\n')
    bootstrap = f"127.0.0.1:{free_port()}"
    assert main(["replay", str(path), "--kafka-bootstrap", bootstrap, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert bootstrap in err and "--kafka-bootstrap" in err and "FINSIGNAL_KAFKA_BOOTSTRAP" in err
