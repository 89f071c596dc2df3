import json
from collections import Counter
from pathlib import Path

from kb_sync.loader import load_default_kb
from worker.schemas import validate

KB_PATH = Path(__file__).resolve().parents[2] / "kb_sync" / "data" / "default_kb.jsonl"
TOPICS = {
    "Analyst Update", "Fed | Central Banks", "Company | Product News", "Treasuries | Corporate Debt",
    "Dividend", "Earnings", "Energy | Oil", "Financials", "Currencies", "General News | Opinion",
    "Gold | Metals | Materials", "IPO", "Legal | Regulation", "M&A | Investments", "Macro", "Markets",
    "Politics", "Personnel Change", "Stock Commentary", "Stock Movement",
}  # fmt: skip
GROUPS = {"equities", "rates", "fx", "commodities", "credit", "crypto", "macro", "regulation", "corporate"}


def kb_lines() -> list[dict]:
    return [json.loads(line) for line in KB_PATH.read_text(encoding="utf-8").splitlines()]


def test_every_point_validates_and_ids_are_unique() -> None:
    points = kb_lines()
    for point in points:
        validate("kb_entry", point)
    assert len({p["id"] for p in points}) == len(points)


def test_covers_every_topic_sentiment_and_group_only_standard_ones() -> None:
    points = kb_lines()
    topics = Counter(p["topic"] for p in points if p["topic"])
    assert set(topics) == TOPICS
    assert min(topics.values()) >= 10
    sentiments = Counter(p["sentiment"] for p in points if p["sentiment"])
    assert set(sentiments) == {"negative", "neutral", "positive"}
    assert min(sentiments.values()) >= 40
    assert {p["group"] for p in points} <= GROUPS


def test_loader_accepts_the_default_kb() -> None:
    assert len(load_default_kb()) == len(kb_lines())
