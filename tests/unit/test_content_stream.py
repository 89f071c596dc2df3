import json
from pathlib import Path

from worker.entities import EntityTagger
from worker.schemas import first_error

STREAM = Path(__file__).resolve().parents[2] / "worker" / "data" / "sample_stream.jsonl"
BAD_LINES = {51, 121, 181, 241, 301, 331, 361}  # documented in worker/data/README.md
MAX_MESSAGE_BYTES = 64 * 1024


def problem(raw: bytes) -> str | None:
    if len(raw) > MAX_MESSAGE_BYTES:
        return "oversize"
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return str(exc)
    return first_error("news_event", obj)


def test_exactly_the_documented_lines_are_bad() -> None:
    lines = STREAM.read_bytes().split(b"\n")
    assert lines[-1] == b""
    bad = {number for number, raw in enumerate(lines[:-1], 1) if problem(raw) is not None}
    assert bad == BAD_LINES


def good_events() -> list[dict]:
    lines = STREAM.read_bytes().split(b"\n")[:-1]
    return [json.loads(raw) for n, raw in enumerate(lines, 1) if n not in BAD_LINES]


def test_stream_has_a_negative_burst_for_one_ticker_after_a_calm_period() -> None:
    events = good_events()
    assert 300 <= len(events) <= 500
    acme = [e for e in events if "ACME" in e.get("tickers", [])]
    burst = [e for e in acme if e["id"].startswith("demo-acme-burst")]
    assert len(burst) >= 25
    assert max(e["published_at"] for e in burst) < "2026-03-02T14:40:00Z"  # within ~10 minutes
    assert min(e["published_at"] for e in acme) < min(e["published_at"] for e in burst)


def test_only_a_couple_of_events_are_out_of_order() -> None:
    times = [e["published_at"] for e in good_events()]
    assert 1 <= sum(a > b for a, b in zip(times, times[1:], strict=False)) <= 3


def test_burst_company_is_tagged_by_cashtag() -> None:
    tagger = EntityTagger([{"ticker": "ACME", "name": "Acme Robotics", "aliases": ["Acme Robotics"]}])
    assert [m["ticker"] for m in tagger.tag("$ACME down 30%")] == ["ACME"]
