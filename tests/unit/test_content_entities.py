import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from worker.entities import DEFAULT_ENTITIES_PATH, STOPLIST, EntityTagger

GENERATOR = Path(__file__).resolve().parents[2] / "scripts" / "make_entities.py"


@pytest.fixture(scope="module")
def tagger() -> EntityTagger:
    return EntityTagger.from_file()


@pytest.fixture(scope="module")
def lexicon() -> list[dict]:
    data = json.loads(DEFAULT_ENTITIES_PATH.read_text(encoding="utf-8"))
    assert data["version"] == 1
    return data["entities"]


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_entities", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tickers(tagger: EntityTagger, text: str) -> list[str]:
    return [m["ticker"] for m in tagger.tag(text)]


def test_lexicon_loads_with_unique_tickers(lexicon: list[dict]) -> None:
    found = [e["ticker"] for e in lexicon]
    assert len(found) == len(set(found))
    assert len(found) >= 400
    assert {"AAPL", "MSFT", "SPY", "QQQ", "GME", "TSLA", "AMAT", "IBIT", "AZN", "DJT"} <= set(found)


def test_no_alias_names_two_companies(lexicon: list[dict]) -> None:
    # The tagger folds every alias into one case-insensitive alternation, so compare casefolded text.
    owner: dict[str, str] = {}
    clashes = []
    for entity in lexicon:
        for alias in entity["aliases"]:
            text = alias["alias"] if isinstance(alias, dict) else alias
            key = text.lstrip("$").casefold()
            if owner.setdefault(key, entity["ticker"]) != entity["ticker"]:
                clashes.append((text, owner[key], entity["ticker"]))
    assert clashes == []
    tickers_ = {e["ticker"].casefold(): e["ticker"] for e in lexicon}
    assert [(k, v) for k, v in owner.items() if k in tickers_ and tickers_[k] != v] == []


def test_json_is_what_the_generator_writes(lexicon: list[dict]) -> None:
    assert load_generator().build()["entities"] == lexicon  # rerun scripts/make_entities.py if this fails


def test_generator_rejects_an_alias_on_two_companies(monkeypatch: pytest.MonkeyPatch) -> None:
    module = load_generator()
    monkeypatch.setattr(module, "TABLE", "ABC|One|Widget\nBBB|Two|=widget\n")
    with pytest.raises(ValueError, match="'widget' of BBB already names ABC"):
        module.build()


def test_cashtag_and_names(tagger: EntityTagger) -> None:
    assert tickers(tagger, "$AAPL up as Apple and Microsoft rally") == ["AAPL", "MSFT"]
    assert tagger.tag("$aapl squeeze")[0]["match"] == "$aapl"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Alphabet and $META slide", ["GOOGL", "META"]),
        ("JPMorgan beats; Goldman lags", ["JPM", "GS"]),
        ("Target's sales miss as Walmart gains", ["TGT", "WMT"]),
        ("Applied Materials, Lam Research and KLAC fall on export curbs", ["AMAT", "LRCX", "KLAC"]),
        ("AstraZeneca and Novo Nordisk lift pharma; $HIMS jumps", ["AZN", "NVO", "HIMS"]),
        ("Philip Morris and Altria slip, PM earnings next", ["PM", "MO"]),
        ("Nasdaq falls 2% while Nasdaq Inc. rises", ["NDAQ"]),
        ("IBIT and SOXL see record inflows", ["IBIT", "SOXL"]),
        ("Agilent, $A and $ALL", ["A", "ALL"]),
    ],
)
def test_headlines(tagger: EntityTagger, text: str, expected: list[str]) -> None:
    assert tickers(tagger, text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Target practice starts at noon",
        "We are all in now, so let's move on",
        "IT spending rises at ALL firms ON Monday",
        "analysts raise their price target",
        "a meta analysis of the data",  # "Meta" is case-sensitive
        "Spies gather intel at the oracle; a caterpillar on adobe walls",
        "Travelers stranded as the Apollo mission shows a progressive trend in Times Square",
        "Nasdaq and the Dow fall; the startup raised 3M",
        "FED HOLDS RATES; ALL EYES ON CPI AND GDP NOW AT 8:30 ET",
        "LNG exports rise; USB-C rules, IP theft, ICE raids and USD/NOK at 9:30 a.m. ET",
        "Agency cuts the bonds to BB+; AA rating affirmed for the state",
    ],
)
def test_ordinary_sentences_tag_nothing(tagger: EntityTagger, text: str) -> None:
    assert tickers(tagger, text) == []


def test_stoplisted_tickers_match_only_as_cashtags(tagger: EntityTagger, lexicon: list[dict]) -> None:
    stoplisted = [e["ticker"] for e in lexicon if e["ticker"] in STOPLIST]
    assert {"NOW", "ON", "IT", "ALL", "PM"} <= set(stoplisted)
    for ticker in stoplisted:
        assert tickers(tagger, f"news {ticker} today") == []
        assert tickers(tagger, f"news ${ticker} today") == [ticker]


def test_acronym_tickers_are_left_out(lexicon: list[dict]) -> None:
    unlisted = load_generator().UNLISTED
    assert {"ET", "LNG", "ICE", "USB", "DOW", "NOK"} <= unlisted
    assert unlisted.isdisjoint(e["ticker"] for e in lexicon)


def test_bare_ticker_and_case_sensitive_alias(tagger: EntityTagger) -> None:
    assert tickers(tagger, "Target Corp misses; NVDA and BRK.B gain") == ["TGT", "NVDA", "BRK.B"]
    assert tickers(tagger, "nvda gains") == []  # bare tickers only when uppercase


def test_each_entity_once_in_order_of_mention(tagger: EntityTagger) -> None:
    assert tickers(tagger, "Tesla, TSLA, $TSLA and Ford") == ["TSLA", "F"]


def test_bad_file_is_a_clear_error(tmp_path) -> None:
    bad = tmp_path / "e.json"
    bad.write_text("[]")
    with pytest.raises(ValueError, match="entities"):
        EntityTagger.from_file(bad)


def test_a_match_is_the_text_as_written_and_touching_tokens_are_told_apart(tagger: EntityTagger) -> None:
    tags = tagger.tag("Philip\u00a0 Morris cut; $BRK.B and x$NVDA, .MSFT, $ Goldman")
    assert [(t["ticker"], t["match"]) for t in tags] == [
        ("PM", "Philip\u00a0 Morris"),  # a multi-word alias keeps the text's own spacing
        ("BRK.B", "$BRK.B"),
        ("NVDA", "$NVDA"),  # a cashtag right after a letter is still one
        ("GS", "Goldman"),  # "$" with a space after it is not a cashtag
    ]  # ".MSFT": a bare ticker right after "." is not one
