"""`finsignal alerts tail|eval`: read the alerts topic; measure the engine on synthetic streams."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import orjson

from worker.cli import KAFKA_CONNECTION_SETTINGS, add_settings_flags, settings_from_args

TAIL_SETTINGS = [
    *KAFKA_CONNECTION_SETTINGS,
    "alerts_topic",
    "log_level",
]
ENGINE_SETTINGS = [
    "alert_window_s",
    "alert_bucket_s",
    "alert_baseline_halflife_s",
    "alert_allowed_lateness_s",
    "alert_min_count",
    "alert_min_messages",
    "alert_cooldown_s",
    "alert_fire_score",
    "alert_warning_score",
    "alert_critical_score",
    "alert_resolve_score",
    "alert_min_share_ratio",
    "alert_volume_tolerance",
    "alert_surge_llr",
    "alert_surge_llr_ref_rate_per_hour",
    "alert_surge_rate_per_min",
    "alert_surge_share_factor",
    "alert_surge_min_span_s",
    "alert_classifier_prior",
    "alert_prior_share",
    "alert_prior_messages",
    "alert_prior_rate_per_hour",
    "alert_prior_exposure_s",
    "alert_top_messages",
    "alert_dedupe_window_s",
    "alert_dedupe_max_stories",
]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    alerts = subparsers.add_parser(
        "alerts", help="surge alerts: follow the alerts topic, evaluate the engine"
    )
    sub = alerts.add_subparsers(dest="alerts_command", metavar="ALERTS_COMMAND", required=True)

    tail = sub.add_parser("tail", help="print alerts from the alerts topic, one line each")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest alert")
    tail.add_argument("--max", type=int, default=None, dest="max_alerts", help="stop after N alerts")
    tail.add_argument(
        "--idle-exit-s",
        type=float,
        default=None,
        help="stop when no alert arrived for this long (default: follow until Ctrl-C)",
    )
    tail.add_argument("--json", action="store_true", help="print the JSON payloads instead of lines")
    add_settings_flags(tail, only=TAIL_SETTINGS)
    tail.set_defaults(handler=_tail)

    ev = sub.add_parser("eval", help="replay synthetic streams through the engine and print figures")
    ev.add_argument("--trials", type=int, default=200, help="randomised burst trials (detection)")
    ev.add_argument("--hours", type=float, default=24.0, help="event-time hours of the steady stream")
    ev.add_argument("--seed", type=int, default=7)
    ev.add_argument(
        "--syndication",
        type=float,
        default=0.05,
        help="share of steady-stream messages repeated 1-3 times within 3 minutes",
    )
    ev.add_argument("--plot", type=Path, default=None, help="write a PNG of one trial's score over time")
    add_settings_flags(ev, only=ENGINE_SETTINGS)
    ev.set_defaults(handler=_eval)


def _tail(args: argparse.Namespace) -> int:
    from kafka import KafkaConsumer, TopicPartition

    from worker.alerts.payload import format_alert_line

    settings = settings_from_args(args)
    consumer = KafkaConsumer(group_id=None, enable_auto_commit=False, **settings.kafka_client_kwargs())
    shown = 0
    try:
        partitions = None
        deadline = time.monotonic() + 10.0
        while not partitions and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(settings.alerts_topic)
            if not partitions:
                time.sleep(0.2)
        if not partitions:
            print(
                f"finsignal: topic {settings.alerts_topic!r} not found on {settings.kafka_bootstrap}",
                file=sys.stderr,
            )
            return 1
        tps = [TopicPartition(settings.alerts_topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        if args.from_beginning:
            consumer.seek_to_beginning(*tps)
        else:
            consumer.seek_to_end(*tps)
        last = time.monotonic()
        while args.max_alerts is None or shown < args.max_alerts:
            batch = consumer.poll(timeout_ms=200)
            if not batch:
                if args.idle_exit_s is not None and time.monotonic() - last >= args.idle_exit_s:
                    break
                continue
            last = time.monotonic()
            for records in batch.values():
                for record in records:
                    try:
                        payload = orjson.loads(record.value)
                    except orjson.JSONDecodeError:
                        print(f"(unreadable record at {record.partition}@{record.offset})", flush=True)
                        continue
                    if args.json:
                        print(orjson.dumps(payload).decode(), flush=True)
                    else:
                        print(format_alert_line(payload), flush=True)
                    shown += 1
                    if args.max_alerts is not None and shown >= args.max_alerts:
                        break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close(autocommit=False)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from worker.alerts.engine import AlertConfig
    from worker.alerts.evaluate import run_eval

    config = AlertConfig.from_settings(settings_from_args(args))
    return run_eval(config, args.trials, args.hours, args.seed, args.plot, args.syndication)
