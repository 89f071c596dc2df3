"""Writes bench/data/texts.jsonl: ~3,000 synthetic headlines and chat lines (fixed seed, templates)."""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 20261129
COUNT = 3000
NAMES = [
    "Apple",
    "Microsoft",
    "Nvidia",
    "Tesla",
    "Amazon",
    "JPMorgan",
    "Exxon",
    "Pfizer",
    "Boeing",
    "Target",
    "$AAPL",
    "$TSLA",
    "$NVDA",
    "$GME",
    "$SPY",
    "AMD",
    "Intel",
    "Netflix",
    "Walmart",
    "Goldman Sachs",
]
SUBJECTS = ["shares", "the stock", "quarterly profit", "revenue", "the bond", "the dividend", "guidance"]
VERBS = ["jump", "slide", "beat estimates", "miss forecasts", "hold steady", "surge", "tumble", "edge higher"]
REASONS = [
    "after the earnings report",
    "on rate-cut hopes",
    "as oil prices fall",
    "after an analyst downgrade",
    "on a new product launch",
    "amid a regulatory probe",
    "after the CEO resigns",
    "on strong demand",
    "as the Fed holds rates",
    "after a takeover offer",
]
FILLERS = [
    "Analysts said the move reflects",
    "Traders pointed to",
    "The company said in a statement that",
    "Investors are weighing",
    "Market watchers flagged",
]
TAILS = [
    "concerns over margins",
    "higher input costs",
    "a stronger dollar",
    "slowing consumer spending",
    "robust cloud growth",
    "a tighter credit market",
    "supply chain delays",
    "record order backlogs",
]
CHAT = ["to the moon", "buying the dip", "bagholding again lol", "calls printing", "rip puts", "hodl", "gg"]


def make(rng: random.Random) -> str:
    roll = rng.random()
    name = rng.choice(NAMES)
    if roll < 0.08:  # short chat line
        return f"{name} {rng.choice(CHAT)}"
    head = f"{name} {rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(REASONS)}"
    if roll < 0.75:  # headline, 8-30 words
        return head
    parts = [head + "."]
    for _ in range(rng.randint(1, 5 if roll > 0.95 else 2)):  # a tail of long tweets and leads
        parts.append(
            f"{rng.choice(FILLERS)} {rng.choice(TAILS)} and {rng.choice(TAILS)} {rng.choice(REASONS)}."
        )
    return " ".join(parts)


def main() -> None:
    rng = random.Random(SEED)
    out = Path(__file__).resolve().parent / "data" / "texts.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"id": f"bench-{i:05d}", "text": make(rng)}) for i in range(COUNT)]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {COUNT} texts to {out}")


if __name__ == "__main__":
    main()
