"""Entity tagger: finds tickers and company names in a message (runs on every message: one token pass)."""

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


# Words and single punctuation marks; aliases and texts are cut the same way, so an alias matches a run
# of whole tokens (word boundaries for free) and one dict lookup per candidate length replaces a regex
# alternation over every alias (690 companies: ~5x faster).
_TOKEN = re.compile(r"[^\W_]+|\S")
_SPACED_TOKEN = re.compile(r"(\s*)([^\W_]+|\S)")  # the same tokens, each with the whitespace before it
_BARE_TICKER = re.compile(r"[A-Z]{2,5}\Z")
_CASHTAG = re.compile(r"[A-Za-z][A-Za-z.]{0,5}\Z")


def _alias_key(text: str) -> tuple[str, ...]:
    return tuple(_TOKEN.findall(text))


class EntityTagger:
    """Matches $CASHTAGS, bare uppercase tickers (not stoplisted) and aliases on token boundaries."""

    def __init__(self, entities: list[dict[str, object]]) -> None:
        self._by_ticker: dict[str, _Entity] = {}
        self._folded: dict[tuple[str, ...], _Entity] = {}  # case-insensitive alias tokens -> entity
        self._exact: dict[tuple[str, ...], _Entity] = {}  # case-sensitive alias tokens -> entity
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
                    continue  # cashtags are matched generically
                key = _alias_key(text)
                if not key:
                    continue
                if case_sensitive:
                    self._exact.setdefault(key, entity)
                else:
                    self._folded.setdefault(tuple(t.casefold() for t in key), entity)
        # Only tokens that can start an alias are looked at further (most tokens start none), and only
        # for the lengths of the aliases they start, longest first ("the": 3 tokens, "the home depot").
        widths: dict[str, set[int]] = {}
        for key in [*self._folded, *self._exact]:
            widths.setdefault(key[0].casefold(), set()).add(len(key))
        self._widths = {start: tuple(sorted(w, reverse=True)) for start, w in widths.items()}

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
        pairs = _SPACED_TOKEN.findall(text)
        if not pairs:
            return []
        # One C-level pass gives each token with the whitespace before it; "" there means the token
        # touches the one before ($AAPL, BRK.B). Character offsets are never needed.
        gaps, tokens = zip(*pairs, strict=True)
        folded = [t.casefold() for t in tokens]
        found: dict[str, EntityMatch] = {}
        widths = self._widths
        i, n = 0, len(tokens)
        while i < n:
            token = tokens[i]
            # Most tokens can start nothing: not "$", no alias starts with them, not 2-5 capitals. Skip
            # those without the call (half the tagger's time on the bench texts).
            if token != "$" and folded[i] not in widths and not (1 < len(token) < 6 and token.isupper()):
                i += 1
                continue
            entity, width = self._match_at(gaps, tokens, folded, i)
            if entity is not None and entity.ticker not in found:
                match = (
                    token
                    if width == 1
                    else token + "".join(gaps[j] + tokens[j] for j in range(i + 1, i + width))
                )
                found[entity.ticker] = {"ticker": entity.ticker, "name": entity.name, "match": match}
            i += width
        return list(found.values())

    def _match_at(
        self, gaps: tuple[str, ...], tokens: tuple[str, ...], folded: list[str], i: int
    ) -> tuple[_Entity | None, int]:
        """(entity or None, tokens consumed) at token i: cashtag, else longest alias, else bare ticker."""
        token, n = tokens[i], len(tokens)
        if token == "$" and i + 1 < n and not gaps[i + 1]:
            # $BRK.B: the cashtag may continue with ".X" right after it.
            width = 4 if _dot_letter(gaps, tokens, i + 2) else 2
            symbol = "".join(tokens[i + 1 : i + width])
            if _CASHTAG.match(symbol):
                return self._by_ticker.get(symbol.upper()), width
        # The token right before, when nothing separates them ("" at the start of the text).
        touching = tokens[i - 1] if i > 0 and not gaps[i] else ""
        # An alias never starts right after a "$" (that is a cashtag).
        if touching != "$":
            for width in self._widths.get(folded[i], ()):
                if width > n - i:
                    continue
                entity = self._exact.get(tokens[i : i + width]) or self._folded.get(
                    tuple(folded[i : i + width])
                )
                if entity is not None:
                    return entity, width
        if _BARE_TICKER.match(token) and token not in STOPLIST and touching not in ("$", "."):
            width, symbol = 1, token
            letter = _dot_letter(gaps, tokens, i + 1)
            if letter.isupper():
                width, symbol = 3, f"{token}.{letter}"  # BRK.B
            entity = self._by_ticker.get(symbol)
            if entity is not None:
                return entity, width
        return None, 1


def _dot_letter(gaps: tuple[str, ...], tokens: tuple[str, ...], j: int) -> str:
    """The one-character token after a "." at ``j`` when both touch what is before them (the ".B" of
    BRK.B), else ""."""
    if (
        j + 1 < len(tokens)
        and tokens[j] == "."
        and not gaps[j]
        and not gaps[j + 1]
        and len(tokens[j + 1]) == 1
    ):
        return tokens[j + 1]
    return ""
