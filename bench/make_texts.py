"""Writes bench/data/texts.jsonl: 3,000 synthetic financial texts with a realistic length spread.

Written for the project (templates + a fixed seed; no shared or scraped data). Each text gets a kind
and a target length in tokens of the shipped tokenizer, then clauses are added until it reaches the
target and words trimmed back to it, so the spread is what real feeds look like rather than what the
templates happen to produce:

    headline 8-20 tokens, tweet 10-40, news lede 30-60, long story 90-180 (exercises truncation).

Run: ``python bench/make_texts.py`` (prints the token-length percentiles; same seed, same file).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

SEED = 20261129
COUNT = 3000
OUT = Path(__file__).resolve().parent / "data" / "texts.jsonl"
TOKENIZER = Path(__file__).resolve().parent.parent / "models" / "finsignal-encoder" / "tokenizer.json"

# kind -> (share of the set, min tokens, max tokens)
KINDS: dict[str, tuple[float, int, int]] = {
    "headline": (0.36, 8, 20),
    "tweet": (0.36, 10, 40),
    "lede": (0.22, 30, 60),
    "long": (0.06, 90, 180),
}

# fmt: off
COMPANIES = [
    "Apple", "Microsoft", "Nvidia", "Tesla", "Amazon", "Alphabet", "Meta", "JPMorgan", "Goldman Sachs",
    "Morgan Stanley", "Bank of America", "Citigroup", "Wells Fargo", "Exxon Mobil", "Chevron", "Shell", "BP",
    "Pfizer", "Moderna", "Eli Lilly", "Boeing", "Airbus", "Target", "Walmart", "Costco", "Netflix", "Disney",
    "Intel", "AMD", "Broadcom", "Oracle", "Salesforce", "Adobe", "Ford", "General Motors", "Toyota",
    "Volkswagen", "Siemens", "SAP", "ASML", "TSMC", "Samsung", "Alibaba", "Tencent", "Nike", "Starbucks",
    "McDonald's", "Visa", "Mastercard", "PayPal", "Coinbase", "BlackRock", "Berkshire Hathaway",
    "UnitedHealth", "Caterpillar", "Deere", "Rio Tinto", "Glencore", "Barclays", "HSBC", "UBS", "Nestle",
]
TICKERS = [
    "$AAPL", "$MSFT", "$NVDA", "$TSLA", "$AMZN", "$GOOGL", "$META", "$JPM", "$GS", "$XOM", "$PFE", "$BA",
    "$TGT", "$WMT", "$NFLX", "$INTC", "$AMD", "$GME", "$AMC", "$SPY", "$QQQ", "$TLT", "$GLD", "$BTC",
    "$COIN", "$PLTR", "$SOFI", "$F", "$DIS", "$NKE",
]
MACRO_SUBJECTS = [
    "the Fed", "the ECB", "the Bank of England", "the Bank of Japan", "Treasury yields", "the 10-year yield",
    "the dollar", "the euro", "the yen", "oil", "Brent crude", "gold", "copper", "bitcoin", "the S&P 500",
    "the Nasdaq", "European stocks", "emerging markets", "high-yield spreads", "US inflation", "payrolls",
    "China's factory output", "German bund yields", "natural gas",
]
MOVES = [
    "jumps {p}%", "slides {p}%", "falls {p}%", "rises {p}%", "surges {p}%", "tumbles {p}%", "edges higher",
    "edges lower", "holds steady", "hits a record high", "hits a 52-week low", "rebounds", "extends losses",
    "beats estimates", "misses forecasts", "cuts guidance", "raises guidance", "is downgraded to sell",
    "is upgraded to buy", "announces a buyback", "suspends its dividend", "raises its dividend",
    "agrees to a takeover", "files for an IPO", "faces an antitrust probe", "names a new CEO",
    "lays off {n} staff", "recalls {n} vehicles", "wins a ${n} million contract", "misses a coupon payment",
]
MACRO_MOVES = [
    "holds rates steady", "cuts rates by 25 basis points", "hikes by 50 basis points", "signals patience",
    "climbs to a two-month high", "drops to a three-year low", "comes in hotter than expected",
    "cools more than forecast", "rallies on rate-cut hopes", "slips as traders price in another hike",
    "is little changed", "swings after the data",
]
REASONS = [
    "after the earnings report", "on rate-cut hopes", "as oil prices fall", "after an analyst downgrade",
    "on a new product launch", "amid a regulatory probe", "after the CEO resigned", "on strong demand",
    "as the Fed holds rates", "after a takeover offer", "on weak China demand", "as bond yields climb",
    "after a short-seller report", "on supply chain disruptions", "after a cyberattack",
    "as inflation data surprised", "on a strong jobs report", "amid recession fears", "on an activist stake",
    "after a credit rating cut", "as OPEC+ extends output cuts", "after a surprise profit warning",
]
CHAT_OPENERS = [
    "lol", "ngl", "wow", "ok so", "honestly", "not gonna lie", "bruh", "told you", "welp", "huge",
    "anyone else seeing", "can't believe", "finally", "so",
]
CHAT_TAILS = [
    "to the moon", "buying the dip", "bagholding again", "calls printing", "rip puts", "hodl",
    "diamond hands", "this is fine", "loading up more", "taking profits here", "stop loss hit",
    "shorts getting squeezed", "not financial advice", "who's still holding", "volume is insane",
    "chart looks ugly", "bull flag forming", "dead cat bounce imo", "priced in", "see you at the open",
]
LEDE_OPENERS = [
    "{c} said on {d} that", "In a filing on {d}, {c} said", "Analysts at {b} said", "Traders said",
    "According to people familiar with the matter,", "Executives told investors on a call that",
    "The company said in a statement that", "Market watchers noted that", "Data released on {d} showed that",
    "Speaking at a conference, the chief financial officer said",
]
LEDE_CLAUSES = [
    "quarterly revenue rose {p}% to ${n} billion, ahead of the consensus estimate",
    "operating margins narrowed because of higher input costs and a stronger dollar",
    "it expects full-year earnings per share at the low end of its previous range",
    "demand for data-centre chips remains strong while consumer spending is slowing",
    "the board approved a ${n} billion share repurchase programme",
    "regulators are reviewing the proposed merger and a decision is expected next quarter",
    "the central bank is prepared to keep policy restrictive for longer if inflation stays sticky",
    "credit spreads widened for a third straight session as investors sought safety",
    "inventories fell more than expected, pushing front-month futures higher",
    "the outlook was cut because of weaker orders in Europe and China",
    "the company will close {n} stores and take a one-time charge",
    "the strike at its largest plant has cost about ${n} million so far",
    "free cash flow improved sharply thanks to lower capital spending",
    "the yield curve steepened as long-dated bonds sold off",
    "net interest income is expected to peak this year as deposit costs rise",
    "shipments were delayed by port congestion and a shortage of containers",
]
BANKS = [
    "Morgan Stanley", "Goldman Sachs", "JPMorgan", "Barclays", "UBS", "Jefferies", "Bernstein", "Citi",
]
DAYS = [
    "Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
]
# fmt: on


def _fill(rng: random.Random, template: str) -> str:
    return template.format(
        p=rng.choice([0.4, 1.2, 2, 3.5, 4, 5, 7, 9, 12, 18, 25]),
        n=rng.choice([12, 40, 150, 300, 750, 1200, 2500, 10000]),
        c=rng.choice(COMPANIES),
        b=rng.choice(BANKS),
        d=rng.choice(DAYS),
    )


def headline(rng: random.Random) -> str:
    if rng.random() < 0.3:
        subject = rng.choice(MACRO_SUBJECTS)
        return f"{subject[0].upper()}{subject[1:]} {rng.choice(MACRO_MOVES)} {rng.choice(REASONS)}"
    name = rng.choice(COMPANIES) if rng.random() < 0.8 else rng.choice(TICKERS)
    return f"{name} {_fill(rng, rng.choice(MOVES))} {rng.choice(REASONS)}"


def tweet_clause(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.4:
        return f"{rng.choice(CHAT_OPENERS)} {rng.choice(TICKERS)} {rng.choice(CHAT_TAILS)}"
    if roll < 0.7:
        return f"{rng.choice(TICKERS)} {_fill(rng, rng.choice(MOVES))} {rng.choice(REASONS)}"
    return f"{rng.choice(CHAT_TAILS)}, {rng.choice(MACRO_SUBJECTS)} {rng.choice(MACRO_MOVES)}"


def lede_clause(rng: random.Random) -> str:
    return f"{_fill(rng, rng.choice(LEDE_OPENERS))} {_fill(rng, rng.choice(LEDE_CLAUSES))}."


def make(rng: random.Random, kind: str, target: int, tokenizer: Tokenizer) -> str:
    """A text of ``kind`` grown clause by clause to about ``target`` tokens."""
    if kind == "headline":
        parts, joiner, more = [headline(rng)], "; ", lambda: headline(rng)
    elif kind == "tweet":
        parts, joiner, more = [tweet_clause(rng)], " ", lambda: tweet_clause(rng)
    else:
        parts, joiner, more = [headline(rng) + ".", lede_clause(rng)], " ", lambda: lede_clause(rng)
    text = joiner.join(parts)
    while _n_tokens(tokenizer, text) < target:
        parts.append(more())
        text = joiner.join(parts)
    words = text.split()
    while len(words) > 3 and _n_tokens(tokenizer, " ".join(words)) > target:
        words.pop()
    text = " ".join(words).rstrip(",;")
    if kind == "tweet" and rng.random() < 0.25:
        text = text.lower()
    return text


def _n_tokens(tokenizer: Tokenizer, text: str) -> int:
    return len(tokenizer.encode(text).ids)


def load_tokenizer(path: Path = TOKENIZER) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()  # measure the full text; the worker truncates at its own cap
    tokenizer.no_padding()
    return tokenizer


def token_lengths(texts: list[str], tokenizer: Tokenizer) -> np.ndarray:
    return np.array([len(e.ids) for e in tokenizer.encode_batch(texts)], dtype=np.int64)


def generate(count: int = COUNT, seed: int = SEED) -> list[dict[str, str]]:
    rng = random.Random(seed)
    tokenizer = load_tokenizer()
    kinds = list(KINDS)
    weights = [KINDS[k][0] for k in kinds]
    rows = []
    for i in range(count):
        kind = rng.choices(kinds, weights)[0]
        _, low, high = KINDS[kind]
        target = rng.randint(low, high)
        rows.append({"id": f"bench-{i:05d}", "kind": kind, "text": make(rng, kind, target, tokenizer)})
    return rows


def main() -> int:
    rows = generate()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    lengths = token_lengths([r["text"] for r in rows], load_tokenizer())
    pct = np.percentile(lengths, [5, 25, 50, 75, 95, 99]).round(1)
    print(f"wrote {len(rows)} texts to {OUT}")
    print(
        "tokens (shipped tokenizer, with [CLS]/[SEP]): "
        + " ".join(f"p{q} {v}" for q, v in zip((5, 25, 50, 75, 95, 99), pct, strict=True))
        + f" max {lengths.max()} mean {lengths.mean():.1f}"
    )
    for kind in KINDS:
        sub = lengths[[r["kind"] == kind for r in rows]]
        print(
            f"  {kind:8s} n={len(sub):4d} min {sub.min():3d} "
            f"median {int(np.median(sub)):3d} max {sub.max():3d}"
        )
    print(
        f"  > 64 tokens (truncated by the shipped model): {(lengths > 64).sum()}; "
        f"> 128: {(lengths > 128).sum()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
