"""The advice `kb publish` prints for KB-only topics with few exemplars."""

from __future__ import annotations

from pathlib import Path

from kb_sync.advice import ADVISED_NEW_TOPIC_EXEMPLARS, advice_lines, thin_new_topics
from kb_sync.loader import DEFAULT_KB_PATH, load_kb_file
from kb_sync.model import KBEntry
from worker.config import Settings


def exemplar(i: int, topic: str, kind: str = "exemplar") -> KBEntry:
    return KBEntry(id=f"p{i}", kind=kind, text=f"text {i}", group="crypto", author="t", topic=topic)


def test_only_kb_only_topics_with_few_exemplars_are_flagged() -> None:
    entries = [exemplar(i, "Stablecoin Depeg") for i in range(3)]
    entries += [exemplar(10, "Stablecoin Depeg", kind="term")]  # terms are not exemplars
    entries += [exemplar(100 + i, "Tokenised Funds") for i in range(ADVISED_NEW_TOPIC_EXEMPLARS)]
    entries += [exemplar(200, "Earnings")]  # a head topic: never flagged
    assert thin_new_topics(entries, {"Earnings"}) == {"Stablecoin Depeg": 3}


def test_advice_reads_the_shipped_models_topics(tmp_path: Path) -> None:
    model_dir = Settings().model_dir
    starter = load_kb_file(DEFAULT_KB_PATH).entries
    assert advice_lines(starter, model_dir) == []  # the starter KB covers the head's own topics
    lines = advice_lines([*starter, exemplar(1, "Stablecoin Depeg")], model_dir)
    assert len(lines) == 1 and "'Stablecoin Depeg'" in lines[0] and "1 exemplar;" in lines[0]
    assert advice_lines([exemplar(1, "Stablecoin Depeg")], tmp_path) == []  # no model there: no advice
