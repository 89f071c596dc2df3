"""Soak test of issue 6 (point 8): a real `python -m worker run` at 70% of its measured max throughput.

    python -m bench.soak --minutes 30            # full size (default)
    python -m bench.soak --minutes 10 --out bench/results/soak

Steps: start an embedded Tansu + Redis (or use --bootstrap / --redis-url), publish the default KB, start one
classify worker process, calibrate its max throughput on a backlog, then feed events at ``--fraction`` of it
for ``--minutes`` while sampling the worker's RSS (/proc/<pid>/status VmRSS) and the consumer lag (inputs
acknowledged by the broker minus the group's committed offsets: our own count, not the broker's end offsets).
Writes <out>.json (config, samples, summary) and <out>.png (RSS and lag over time).

Verdicts: RSS growth after warm-up <= 5% (mean of the first minute after warm-up vs the last minute) and
lag bounded (its maximum in the second half is not above twice its maximum in the first half plus one
second of input).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

REPO_ROOT = Path(__file__).resolve().parent.parent
TEXTS_PATH = REPO_ROOT / "bench" / "data" / "texts.jsonl"
PARTITIONS = 3


def _texts() -> list[str]:
    with open(TEXTS_PATH, "rb") as texts:
        return [orjson.loads(line)["text"] for line in texts if line.strip()]


def _event(i: int, texts: list[str]) -> bytes:
    return orjson.dumps(
        {
            "id": f"soak-{i}",
            "text": texts[i % len(texts)],
            "source": "soak",
            "published_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
    )


def _pdeathsig() -> None:
    ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # the worker dies with us


def _cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process (None when it is not ours to read)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU share (1.0 = one core) of a process between two calls."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self._last = (time.monotonic(), _cpu_seconds(pid))

    def share(self) -> float | None:
        now, used = time.monotonic(), _cpu_seconds(self.pid)
        last_t, last_used = self._last
        self._last = (now, used)
        if used is None or last_used is None or now <= last_t:
            return None
        return round((used - last_used) / (now - last_t), 3)


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Feed:
    """Producer with an acknowledged-count (lag = acked - committed)."""

    def __init__(self, bootstrap: str, topic: str, linger_ms: int) -> None:
        from kafka import KafkaProducer

        self.topic = topic
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=linger_ms)
        self.sent = 0
        self.acked = 0
        self.failed = 0
        self._lock = threading.Lock()

    def send(self, value: bytes, key: bytes) -> None:
        future = self.producer.send(self.topic, value=value, key=key)
        future.add_callback(self._ok)
        future.add_errback(self._err)
        self.sent += 1

    def _ok(self, _meta: Any) -> None:
        with self._lock:
            self.acked += 1

    def _err(self, _exc: BaseException) -> None:
        with self._lock:
            self.failed += 1


class Committed:
    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        self.tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]

    def total(self) -> int:
        return sum(self.consumer.committed(tp) or 0 for tp in self.tps)


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"soak: the worker exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.3)
    raise SystemExit(f"soak: the worker was not ready within {timeout_s:.0f} s")


def _summary(samples: list[dict[str, Any]], warmup_s: float, rate: float) -> dict[str, Any]:
    after = [s for s in samples if s["t"] >= warmup_s]
    if len(after) < 4:
        return {"error": "too few samples after warm-up; run longer"}
    window = max(60.0, (after[-1]["t"] - after[0]["t"]) / 10)
    first = [s["rss_mb"] for s in after if s["t"] < after[0]["t"] + window]
    last = [s["rss_mb"] for s in after if s["t"] > after[-1]["t"] - window]
    rss_first, rss_last = sum(first) / len(first), sum(last) / len(last)
    lags = sorted(s["lag"] for s in after)
    mid = (after[0]["t"] + after[-1]["t"]) / 2
    lag_first_half = max(s["lag"] for s in after if s["t"] <= mid)
    lag_second_half = max(s["lag"] for s in after if s["t"] > mid)
    growth = 100 * (rss_last - rss_first) / rss_first
    bounded = lag_second_half <= 2 * lag_first_half + rate
    return {
        "warmup_s": warmup_s,
        "rss_after_warmup_mb": round(rss_first, 1),
        "rss_end_mb": round(rss_last, 1),
        "rss_max_mb": round(max(s["rss_mb"] for s in samples), 1),
        "rss_growth_pct": round(growth, 2),
        "lag_mean": round(sum(lags) / len(lags), 1),
        "lag_p99": lags[min(len(lags) - 1, int(0.99 * len(lags)))],
        "lag_max": lags[-1],
        "lag_max_first_half": lag_first_half,
        "lag_max_second_half": lag_second_half,
        "rss_growth_ok": growth <= 5.0,
        "lag_bounded": bounded,
    }


def _plot(result: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("soak: matplotlib is not installed (dev extra); no PNG written", file=sys.stderr)
        return False
    samples = result["samples"]
    minutes = [s["t"] / 60 for s in samples]
    fig, (ax_rss, ax_lag, ax_cpu) = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    ax_rss.plot(minutes, [s["rss_mb"] for s in samples], color="tab:blue")
    ax_rss.axvline(
        result["summary"].get("warmup_s", 0) / 60, color="grey", linestyle=":", label="warm-up end"
    )
    ax_rss.set_ylabel("worker RSS (MB)")
    ax_rss.legend(loc="lower right")
    ax_lag.plot(minutes, [s["lag"] for s in samples], color="tab:red")
    ax_lag.set_ylabel("lag (messages)")
    for name, color in (("worker_cpu", "tab:blue"), ("broker_cpu", "tab:orange")):
        points = [(m, s.get(name)) for m, s in zip(minutes, samples, strict=True)]
        points = [(m, v) for m, v in points if v is not None]
        if points:
            ax_cpu.plot([m for m, _ in points], [v for _, v in points], color=color, label=name[:-4])
    ax_cpu.set_ylabel("CPU (cores)")
    ax_cpu.legend(loc="upper left")
    ax_cpu.set_xlabel("minutes")
    config = result["config"]
    fig.suptitle(
        f"finsignal soak: {config['rate']:.0f} msg/s ({config['fraction']:.0%} of measured max "
        f"{config['max_throughput']:.0f} msg/s), {config['minutes']:.0f} min"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def run(args: argparse.Namespace) -> dict[str, Any]:
    import redis

    from kb_sync.loader import load_default_kb
    from kb_sync.store import KBStore
    from worker.embedded import create_topics, free_port, start_redis, start_tansu

    services: list[Any] = []
    bootstrap = args.bootstrap
    broker_pid = None
    if not bootstrap:
        broker = start_tansu()
        services.append(broker)
        bootstrap = broker.bootstrap
        broker_pid = broker._proc.pid if broker._proc is not None else None
    redis_url = args.redis_url
    if not redis_url:
        server = start_redis(prefer_env=False)
        services.append(server)
        redis_url = server.url
    tag = uuid.uuid4().hex[:8]
    topics = {k: f"soak.{k}.{tag}" for k in ("raw", "signals", "dlq", "alerts")}
    group, namespace = f"soak.classify.{tag}", f"soak.kb.{tag}"
    create_topics(bootstrap, topics.values(), partitions=PARTITIONS)
    client = redis.Redis.from_url(redis_url)
    KBStore(client, namespace).publish(load_default_kb(), author="soak")
    client.close()

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINSIGNAL_")}
    env.update(
        {
            "FINSIGNAL_KAFKA_BOOTSTRAP": bootstrap,
            "FINSIGNAL_REDIS_URL": redis_url,
            "FINSIGNAL_ROLE": "classify",
            "FINSIGNAL_INPUT_TOPIC": topics["raw"],
            "FINSIGNAL_SIGNALS_TOPIC": topics["signals"],
            "FINSIGNAL_DLQ_TOPIC": topics["dlq"],
            "FINSIGNAL_ALERTS_TOPIC": topics["alerts"],
            "FINSIGNAL_GROUP_ID": group,
            "FINSIGNAL_KB_NAMESPACE": namespace,
            "FINSIGNAL_METRICS_PORT": str(port),
            "FINSIGNAL_INTRA_OP_THREADS": str(args.threads),
            "FINSIGNAL_LOG_LEVEL": "WARNING",
        }
    )
    log_path = Path(tempfile.gettempdir()) / f"finsignal-soak-{tag}.log"  # kept for a look after a failure
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "run"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=_pdeathsig,
        )
    feed = Feed(bootstrap, topics["raw"], args.feed_linger_ms)
    committed = Committed(bootstrap, group, topics["raw"])
    texts = _texts()
    try:
        _wait_ready(port, proc)
        # Calibrate: a backlog drained as fast as the worker can.
        start = time.monotonic()
        for i in range(args.calibrate):
            feed.send(_event(i, texts), f"soak-{i}".encode())
        feed.producer.flush(60)
        while committed.total() < args.calibrate:
            if time.monotonic() - start > 600:
                raise SystemExit("soak: calibration backlog not drained within 10 min")
            time.sleep(0.2)
        max_rate = args.calibrate / (time.monotonic() - start)
        rate = args.fraction * max_rate
        print(f"soak: max throughput {max_rate:.0f} msg/s; feeding {rate:.0f} msg/s for {args.minutes} min")

        stop = threading.Event()
        samples: list[dict[str, Any]] = []
        base = args.calibrate

        def produce() -> None:
            t0 = time.monotonic()
            i = 0
            while not stop.is_set():
                due = t0 + i / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(min(delay, 0.5))
                    continue
                feed.send(_event(base + i, texts), f"soak-{base + i}".encode())
                i += 1

        producer_thread = threading.Thread(target=produce, name="soak-feed", daemon=True)
        worker_cpu, broker_cpu = CpuMeter(proc.pid), CpuMeter(broker_pid)
        t0 = time.monotonic()
        producer_thread.start()
        duration = args.minutes * 60
        while time.monotonic() - t0 < duration:
            if proc.poll() is not None:
                raise SystemExit(f"soak: the worker died with {proc.returncode}; see {log_path}")
            done = committed.total()
            sample: dict[str, Any] = {
                "t": round(time.monotonic() - t0, 2),
                "rss_mb": round(_rss_bytes(proc.pid) / 1e6, 2),
                "acked": feed.acked,
                "committed": done,
                "lag": max(0, feed.acked - done),
                "worker_cpu": worker_cpu.share(),
                "broker_cpu": broker_cpu.share(),
            }
            samples.append(sample)
            if len(samples) % max(1, int(60 / args.sample_s)) == 0:
                print(
                    f"soak: {sample['t'] / 60:5.1f} min  RSS {sample['rss_mb']:.1f} MB  lag {sample['lag']}"
                    f"  CPU worker {sample['worker_cpu']} broker {sample['broker_cpu']}"
                )
            time.sleep(max(0.0, t0 + len(samples) * args.sample_s - time.monotonic()))
        stop.set()
        producer_thread.join(5)
        warmup_s = args.warmup_minutes * 60 if args.warmup_minutes is not None else min(300.0, duration * 0.2)
        result = {
            "config": {
                "minutes": args.minutes,
                "fraction": args.fraction,
                "max_throughput": round(max_rate, 1),
                "rate": round(rate, 1),
                "calibrate_messages": args.calibrate,
                "feed_linger_ms": args.feed_linger_ms,
                "intra_op_threads": args.threads,
                "sample_s": args.sample_s,
                "partitions": PARTITIONS,
                "send_failures": feed.failed,
                "host_cpus": os.cpu_count(),
                "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
            "summary": _summary(samples, warmup_s, rate),
            "samples": samples,
        }
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        feed.producer.close(timeout=10)
        committed.consumer.close(autocommit=False)
        for service in services:
            service.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="soak duration (default 30)")
    parser.add_argument("--fraction", type=float, default=0.7, help="share of the measured max (default 0.7)")
    parser.add_argument("--calibrate", type=int, default=3000, help="backlog size for the max-rate run")
    parser.add_argument("--warmup-minutes", type=float, default=None, help="default: 20%% of the run, <= 5")
    parser.add_argument("--sample-s", type=float, default=5.0, help="sampling period (default 5 s)")
    parser.add_argument("--threads", type=int, default=1, help="worker ONNX intra-op threads (default 1)")
    parser.add_argument(
        "--feed-linger-ms",
        type=int,
        default=100,
        help="the feeding producer's linger (default 100 ms, a batching upstream producer; the memory-only"
        " Tansu slows down with the number of stored batches, and 1-record batches at soak rates stall it)",
    )
    parser.add_argument("--bootstrap", default="", help="use this Kafka instead of an embedded Tansu")
    parser.add_argument("--redis-url", default="", help="use this Redis instead of a bundled one")
    parser.add_argument("--out", default=str(REPO_ROOT / "bench" / "results" / "soak"), help="output stem")
    args = parser.parse_args(argv)
    result = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    plotted = _plot(result, out.with_suffix(".png"))
    summary = result["summary"]
    print(json.dumps({"config": result["config"], "summary": summary}, indent=1))
    print(f"soak: wrote {out.with_suffix('.json')}" + (f" and {out.with_suffix('.png')}" if plotted else ""))
    return 0 if summary.get("rss_growth_ok") and summary.get("lag_bounded") else 1


if __name__ == "__main__":
    sys.exit(main())
