"""`finsignal demo` end to end (its own Tansu, the session's Redis through REDIS_URL), plus its bookkeeping.

Expected figures come from the sample stream itself and its README (bad lines are the ids starting
with ``bad-``, listed in worker/data/README.md), not from the demo's code.
"""

from __future__ import annotations

import re

import pytest
import redis

from worker.cli import main
from worker.config import REPO_ROOT
from worker.demo.tally import Tally, percentile, top_evidence
from worker.embedded import kafka_api_versions_ok

DATA = REPO_ROOT / "worker" / "data"
ID_RE = re.compile(rb'"id"\s*:\s*"([^"]+)"')


def stream_figures() -> tuple[int, int]:
    """(lines, bad lines) of the sample stream, checked against the README's table of bad lines."""
    lines = [line for line in (DATA / "sample_stream.jsonl").read_bytes().splitlines() if line]
    ids = [match.group(1).decode() if (match := ID_RE.search(line)) else "" for line in lines]
    bad = [i for i in ids if i.startswith("bad-")]
    documented = re.findall(r"^\|\s*\d+\s*\|\s*(bad-[\w-]+)\s*\|", (DATA / "README.md").read_text(), re.M)
    assert sorted(bad) == sorted(documented) and bad, "stream and README disagree on the bad lines"
    return len(lines), len(bad)


def figure(output: str, label: str) -> int:
    match = re.search(rf"^\s*{label}\s+(\d+)", output, re.M)
    assert match, f"no '{label}' line in the demo output:\n{output}"
    return int(match.group(1))


def run_demo(capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, str]:
    code = main(["demo", "--no-live", "--rate", "0", *flags])
    return code, capsys.readouterr().out


def test_demo_accounts_for_every_message_and_alerts_on_acme(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    # One partition end to end; the three-partition test below checks the per-input-partition watermarks.
    monkeypatch.setenv("REDIS_URL", redis_url)
    lines, bad = stream_figures()

    code, out = run_demo(capsys, "--partitions", "1")

    assert code == 0, out
    assert figure(out, "messages in") == lines
    assert figure(out, "signals out") == lines - bad
    assert figure(out, "DLQ records") == bad
    assert re.search(r"^\s*alerts firing\s+[1-9]\d*: .*entity:ACME \(", out, re.M), out
    assert "every message accounted for" in out
    # An external Redis gets a fresh namespace that is gone afterwards.
    namespace = re.search(r"KB namespace (finsignal:demo:\w+)", out)
    assert namespace, out
    client = redis.Redis.from_url(redis_url)
    try:
        assert list(client.scan_iter(match=f"{namespace.group(1)}:*")) == []
    finally:
        client.close()


def test_demo_on_three_partitions_accounts_for_every_message(capsys: pytest.CaptureFixture[str]) -> None:
    lines, bad = stream_figures()

    code, out = run_demo(capsys, "--partitions", "3")

    assert code == 0, out
    assert figure(out, "signals out") == lines - bad
    assert figure(out, "DLQ records") == bad
    # Signals partitions mix input partitions hours apart; one watermark per input partition keeps
    # the ACME burst in order, so it fires here too.
    assert re.search(r"^\s*alerts firing\s+[1-9]\d*: .*entity:ACME \(", out, re.M), out
    p50, p99 = re.search(r"end-to-end\s+p50 ([\d.]+) ms, p99 ([\d.]+) ms", out).groups()  # type: ignore[union-attr]
    assert 0 < float(p50) <= float(p99)


def test_demo_gives_up_at_the_timeout_and_stops_what_it_started(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--no-live", "--timeout", "0.5"])  # too short for the model and KB to load

    captured = capsys.readouterr()
    assert code == 1
    assert "not ready" in captured.err and "--timeout" in captured.err
    broker = re.search(r"broker 127\.0\.0\.1:(\d+)", captured.out)
    assert broker, captured.out
    assert not kafka_api_versions_ok("127.0.0.1", int(broker.group(1)))


def test_demo_refuses_bad_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--rate", "-1"]) == 2
    assert "--rate -1.0 is out of range" in capsys.readouterr().err


# --- bookkeeping (no services) ------------------------------------------------------------------
def signal(signal_id: str, e2e_ms: float) -> dict[str, object]:
    return {
        "id": signal_id,
        "key": "entity:ACME",
        "published_at": "2026-03-02T14:30:05Z",
        "topic": {"label": "Markets"},
        "sentiment": {"label": "negative", "probability": 0.9},
        "evidence": [{"text": "weak", "attention": 0.2}, {"text": "strong", "attention": 0.7}],
        "timings": {"end_to_end_ms": e2e_ms},
    }


def test_tally_counts_each_message_once() -> None:
    tally = Tally(rows=2)
    for i, e2e in enumerate([30.0, 10.0, 20.0]):
        tally.add_signal(signal(f"s{i}", e2e), now=float(i))
    tally.add_signal(signal("s1", 99.0), now=3.0)  # redelivered: not a new message
    dlq = [("finsignal.error.reason", b"schema"), ("finsignal.source.partition", b"0")]
    tally.add_dlq([*dlq, ("finsignal.source.offset", b"7")], key="0:0", now=4.0)
    tally.add_dlq([*dlq, ("finsignal.source.offset", b"7")], key="0:1", now=4.5)  # same source again
    tally.add_dlq([("finsignal.source.offset", b"8")], key="0:2", now=5.0)  # no reason header

    summary = tally.summary(lines_in=5, started_at=0.0)

    assert (summary.signals, summary.dlq, summary.duplicates) == (3, {"schema": 1, "unknown": 1}, 2)
    assert summary.complete and summary.throughput == pytest.approx(5 / 5.0)
    assert (summary.latency_p50_ms, summary.latency_p99_ms) == (20.0, 30.0)
    assert [row.id for row in tally.recent] == ["s1", "s2"]
    assert tally.recent[0].evidence == "strong" and tally.recent[0].event_time == "14:30:05"
    assert not tally.summary(lines_in=6, started_at=0.0).complete


def test_percentile_and_evidence_edge_cases() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 99) == 5.0
    assert percentile([float(v) for v in range(1, 101)], 99) == 99.0
    assert top_evidence(None) == "" and top_evidence("text") == "" and top_evidence([]) == ""
