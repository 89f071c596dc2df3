"""Reading the output topics (signals, alerts, DLQ) from the beginning, outside any consumer group."""

from __future__ import annotations

import contextlib
import logging
import time

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from worker.config import Settings
from worker.demo.tally import Tally

log = logging.getLogger(__name__)


class OutputReader:
    """``group_id=None``: assigns every partition itself and commits nothing, so it cannot disturb
    the pipeline's consumer groups."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._consumer = KafkaConsumer(
            group_id=None,
            enable_auto_commit=False,
            max_partition_fetch_bytes=4 * 1024 * 1024,  # a DLQ record may carry a large original
            **settings.kafka_client_kwargs(),
        )
        topics = (settings.input_topic, settings.signals_topic, settings.alerts_topic, settings.dlq_topic)
        tps: list[TopicPartition] = []
        for topic in topics:
            partitions = self._partitions(topic)
            tps.extend(TopicPartition(topic, p) for p in sorted(partitions))
        self._consumer.assign(tps)
        self._consumer.seek_to_beginning(*tps)
        self.invalid = 0  # output records that are not JSON objects (should not happen)
        self.inputs = 0  # records read back from the input topic: the live "in" figure
        self._admin: KafkaAdminClient | None = None

    def _partitions(self, topic: str, timeout_s: float = 10.0) -> set[int]:
        deadline = time.monotonic() + timeout_s
        while True:
            partitions = self._consumer.partitions_for_topic(topic)
            if partitions:
                return set(partitions)
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {topic} has no partitions on {self.settings.kafka_bootstrap}")
            time.sleep(0.1)

    def poll(self, tally: Tally, timeout_ms: int = 100) -> int:
        """Fold new records into ``tally``; returns how many were read."""
        settings = self.settings
        batch = self._consumer.poll(timeout_ms=timeout_ms, max_records=500)
        now = time.monotonic()
        n = 0
        for tp, records in batch.items():
            for record in records:
                n += 1
                if tp.topic == settings.input_topic:
                    self.inputs += 1
                elif tp.topic == settings.dlq_topic:
                    key = f"{tp.partition}:{record.offset}"
                    tally.add_dlq(list(record.headers or []), key, now)
                else:
                    self._add_payload(tally, tp.topic, record.value, now)
        return n

    def _add_payload(self, tally: Tally, topic: str, value: bytes, now: float) -> None:
        try:
            payload = orjson.loads(value)
        except orjson.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict):
            self.invalid += 1
        elif topic == self.settings.signals_topic:
            tally.add_signal(payload, now)
        else:
            tally.add_alert(payload)

    def alert_stage_caught_up(self) -> bool:
        """True when the alert stage's group has committed every signal this reader has read.

        The stage commits only after its alerts are confirmed, so once every message is accounted for
        (the reader is at the true end of the signals topic), every alert the stream causes is out.
        Positions are the reader's, not end_offsets: the embedded broker may report those too low.
        """
        settings = self.settings
        if self._admin is None:
            self._admin = KafkaAdminClient(client_id="finsignal-demo", **settings.kafka_client_kwargs())
        group = settings.alert_group_id
        committed = self._admin.list_group_offsets({group: None}).get(group, {})
        for tp in self._consumer.assignment():
            if tp.topic != settings.signals_topic:
                continue
            done = committed.get(tp)
            if self._consumer.position(tp) > (done.offset if done is not None else 0):
                return False
        return True

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._consumer.close(autocommit=False)
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.close()
