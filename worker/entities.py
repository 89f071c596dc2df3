"""Entity tagger: finds tickers and company names in a message (runs on every message, so one regex pass)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

DEFAULT_ENTITIES_PATH = Path(__file__).resolve().parents[1] / "kb_sync" / "data" / "entities.json"

# Uppercase words that are also tickers but far more often mean something else in headlines.
_STOPWORDS = (
    "A I AI IT ALL ON ONE ARE BE CAN DD EV FOR GO HAS IS NOW OR SO TV UK US USA CEO CFO CPI GDP ETF IPO "
    "EPS FED ECB BOE BOJ IMF OPEC SEC FDA DOJ FTC EU AM PM NEW BIG OUT"
)
STOPLIST = frozenset(_STOPWORDS.split())


class EntityMatch(TypedDict):
    ticker: str
    name: str
    match: str


@dataclass(frozen=True)
class _Entity:
    ticker: str
    name: str


class EntityTagger:
    """Matches $CASHTAGS, bare uppercase tickers (not stoplisted) and aliases on word boundaries."""

    def __init__(self, entities: list[dict[str, object]]) -> None:
        self._by_ticker: dict[str, _Entity] = {}
        self._folded: dict[str, _Entity] = {}  # case-insensitive alias -> entity
        self._exact: dict[str, _Entity] = {}  # case-sensitive alias -> entity
        for raw in entities:
            ticker, name = str(raw["ticker"]), str(raw["name"])
            entity = _Entity(ticker, name)
            self._by_ticker[ticker] = entity
            for alias in raw.get("aliases", []) or []:  # type: ignore[attr-defined]
                if isinstance(alias, dict):
                    text, case_sensitive = str(alias["alias"]), bool(alias.get("case_sensitive"))
                else:
                    text, case_sensitive = str(alias), False
                if text.startswith("$"):
                    continue  # cashtags are matched generically below
                if case_sensitive:
                    self._exact.setdefault(text, entity)
                else:
                    self._folded.setdefault(text.casefold(), entity)
        names = sorted({*self._folded, *(a.casefold() for a in self._exact)}, key=len, reverse=True)
        alias_alt = "|".join(re.escape(n) for n in names) or r"(?!)"
        # One pass: cashtag | alias (case-insensitive, re-checked for case-sensitive ones) | bare ticker.
        self._pattern = re.compile(
            r"\$(?P<cash>[A-Za-z][A-Za-z.]{0,5})\b"
            rf"|(?<![\w$])(?P<alias>{alias_alt})(?![\w])"
            r"|(?<![\w$.])(?P<bare>[A-Z]{2,5}(?:\.[A-Z])?)(?![\w])",
            re.IGNORECASE,
        )
        self._bare_ok = re.compile(r"[A-Z]{2,5}(?:\.[A-Z])?\Z")

    @classmethod
    def from_file(cls, path: str | Path = DEFAULT_ENTITIES_PATH) -> EntityTagger:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("entities"), list):
            raise ValueError(f"{path}: expected {{'version': 1, 'entities': [...]}}")
        return cls(data["entities"])

    def name_of(self, ticker: str) -> str:
        """Company name of a known ticker, "" when the lexicon does not know it."""
        entity = self._by_ticker.get(ticker)
        return entity.name if entity is not None else ""

    def tag(self, text: str) -> list[EntityMatch]:
        """Entities in order of first mention, each once."""
        found: dict[str, EntityMatch] = {}
        for m in self._pattern.finditer(text):
            entity: _Entity | None
            if (cash := m.group("cash")) is not None:
                entity = self._by_ticker.get(cash.upper())
            elif (alias := m.group("alias")) is not None:
                entity = self._exact.get(alias) or self._folded.get(alias.casefold())
            else:
                bare = m.group("bare")
                entity = None
                if self._bare_ok.match(bare) and bare not in STOPLIST:
                    entity = self._by_ticker.get(bare)
            if entity is not None and entity.ticker not in found:
                found[entity.ticker] = {"ticker": entity.ticker, "name": entity.name, "match": m.group(0)}
        return list(found.values())
