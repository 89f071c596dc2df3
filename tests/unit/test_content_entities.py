import json

import pytest

from worker.entities import DEFAULT_ENTITIES_PATH, EntityTagger


@pytest.fixture(scope="module")
def tagger() -> EntityTagger:
    return EntityTagger.from_file()


def tickers(tagger: EntityTagger, text: str) -> list[str]:
    return [m["ticker"] for m in tagger.tag(text)]


def test_lexicon_loads_with_unique_tickers() -> None:
    data = json.loads(DEFAULT_ENTITIES_PATH.read_text(encoding="utf-8"))
    assert data["version"] == 1
    found = [e["ticker"] for e in data["entities"]]
    assert len(found) == len(set(found))
    assert {"AAPL", "MSFT", "SPY", "QQQ", "GME"} <= set(found)


def test_cashtag_and_names(tagger: EntityTagger) -> None:
    assert tickers(tagger, "$AAPL up as Apple and Microsoft rally") == ["AAPL", "MSFT"]
    assert tagger.tag("$aapl squeeze")[0]["match"] == "$aapl"


def test_common_words_not_tagged(tagger: EntityTagger) -> None:
    assert tickers(tagger, "IT spending rises at ALL firms ON Monday") == []
    assert tickers(tagger, "analysts raise their price target") == []
    assert tickers(tagger, "a meta analysis of the data") == []  # "Meta" is case-sensitive


def test_bare_ticker_and_case_sensitive_alias(tagger: EntityTagger) -> None:
    assert tickers(tagger, "Target misses; NVDA and BRK.B gain") == ["TGT", "NVDA", "BRK.B"]
    assert tickers(tagger, "nvda gains") == []  # bare tickers only when uppercase


def test_each_entity_once_in_order_of_mention(tagger: EntityTagger) -> None:
    assert tickers(tagger, "Tesla, TSLA, $TSLA and Ford") == ["TSLA", "F"]


def test_bad_file_is_a_clear_error(tmp_path) -> None:
    bad = tmp_path / "e.json"
    bad.write_text("[]")
    with pytest.raises(ValueError, match="entities"):
        EntityTagger.from_file(bad)
