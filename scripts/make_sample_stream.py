"""Writes worker/data/sample_stream.jsonl: the demo stream (python scripts/make_sample_stream.py).

Calm traffic built from the default KB's exemplar sentences with a company name, a negative burst for
one ticker (ACME) mid-stream, two events out of order, and the bad lines listed in worker/data/README.md.
"""

from __future__ import annotations

import json
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scripts.make_default_kb import build  # noqa: E402

START = datetime(2026, 3, 2, 13, 30, tzinfo=UTC)
BURST = [
    "Acme Robotics shares plunge after the company slashes its full-year outlook.",
    "Acme Robotics CEO resigns abruptly amid an accounting review.",
    "Analyst downgrades Acme Robotics to sell, cuts price target to $12.",
    "Acme Robotics suspends its dividend to preserve cash.",
    "SEC opens an investigation into Acme Robotics revenue recognition.",
    "Acme Robotics bonds fall to 60 cents on the dollar as default fears grow.",
    "Acme Robotics halted after falling 25% in minutes.",
    "Rating agency cuts Acme Robotics to junk.",
    "Acme Robotics recalls 80,000 warehouse robots over a battery fire risk.",
    "$ACME down 30%, worst day ever, bagholders everywhere",
]


def ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def main() -> None:
    rng = random.Random(7)
    exemplars = [p for p in build() if p["kind"] == "exemplar"]
    events: list[dict[str, object]] = []
    for i in range(330):  # calm traffic over two hours
        t = START + timedelta(seconds=i * 22)
        text = str(rng.choice(exemplars)["text"])
        events.append(
            {
                "id": f"demo-{i:04d}",
                "text": text,
                "source": rng.choice(["newswire", "chat"]),
                "published_at": ts(t),
                "lang": "en",
            }
        )
    for j, text in enumerate(
        ["Acme Robotics opens a new plant in Ohio.", "Acme Robotics wins a large order."]
    ):
        events.append(
            {
                "id": f"demo-acme-calm-{j}",
                "text": text,
                "source": "newswire",
                "published_at": ts(START + timedelta(minutes=20 + 10 * j)),
                "tickers": ["ACME"],
            }
        )
    burst_start = START + timedelta(minutes=60)
    for k in range(32):  # 32 negative items in 8 minutes
        events.append(
            {
                "id": f"demo-acme-burst-{k:02d}",
                "text": BURST[k % len(BURST)],
                "source": "newswire",
                "published_at": ts(burst_start + timedelta(seconds=15 * k)),
                "tickers": ["ACME"],
            }
        )
    events.sort(key=lambda e: str(e["published_at"]))
    # two events deliberately out of order by a minute
    for n in (100, 250):
        t = datetime.strptime(str(events[n]["published_at"]), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        events[n]["published_at"] = ts(t - timedelta(minutes=1))
    lines = [json.dumps(e).encode() for e in events]
    bad = [
        b'{"id": "bad-json", "text": "unterminated',
        json.dumps({"id": "bad-missing-text", "source": "newswire", "published_at": ts(START)}).encode(),
        json.dumps(
            {"id": "bad-text-number", "text": 42, "source": "chat", "published_at": ts(START)}
        ).encode(),
        json.dumps(
            {"id": "bad-empty-text", "text": "", "source": "chat", "published_at": ts(START)}
        ).encode(),
        b'{"id": "bad-utf8", "text": "caf\xe9 \xff broken", "source": "chat", '
        b'"published_at": "2026-03-02T14:00:00Z"}',
        json.dumps(
            {"id": "bad-oversize", "text": "Markets " * 9000, "source": "newswire", "published_at": ts(START)}
        ).encode(),
        json.dumps(
            {
                "id": "bad-date-type",
                "text": "Stocks edge higher.",
                "source": "newswire",
                "published_at": 1772458200,
            }
        ).encode(),
    ]
    for offset, line in zip((50, 120, 180, 240, 300, 330, 360), bad, strict=True):
        lines.insert(offset, line)
    out = Path(__file__).resolve().parents[1] / "worker" / "data" / "sample_stream.jsonl"
    out.write_bytes(b"\n".join(lines) + b"\n")
    print(f"wrote {len(lines)} lines ({len(bad)} bad) to {out}")


if __name__ == "__main__":
    main()
