"""Shared handling of kafka-python producers by the classify and alert stages."""

from __future__ import annotations

import logging

from kafka import KafkaProducer

log = logging.getLogger(__name__)


def discard_producer(producer: KafkaProducer | None) -> None:
    """Close a producer without waiting: its unconfirmed sends are abandoned (the caller retries them on a
    fresh producer; one in a fatal state, e.g. after a broker restart, refuses every later send)."""
    if producer is None:
        return
    try:
        producer.close(timeout=0)
    except Exception:  # a producer in a fatal state may fail to close cleanly; it is dropped either way
        log.debug("closing the failed producer raised", exc_info=True)
