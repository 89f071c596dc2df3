"""Story fingerprints: the copies of one story share an id, different stories do not."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.story import STORY_TOKENS, story_id, story_tokens

ORIGINAL = "Acme shares plunge 12% after fraud probe"


@pytest.mark.parametrize(
    "copy",
    [
        "Acme shares plunge 12% after fraud probe https://t.co/AbC123",
        "RT @newsbot: ACME shares plunge 12% after fraud probe",
        "acme   SHARES plunge 12%... after fraud-probe!",
        "Acme shares plunge 12% after fraud probe - Reuters",
        "Acme shares plunge 12% after fraud probe | Yahoo Finance",
        "Acme shares plunge 12% after fraud probe #stocks #news",
        "Acme shares plunge 12% after fraud probe (via @wsj) www.example.com/a?b=c",
        "Fraud probe: Acme shares plunge 12%",  # same words, another order
    ],
)
def test_copies_of_one_story_share_an_id(copy: str) -> None:
    assert story_id(copy) == story_id(ORIGINAL)


@pytest.mark.parametrize(
    "other",
    [
        "Globex shares plunge 12% after fraud probe",  # another company
        "Acme shares plunge 15% after fraud probe",  # another number
        "Acme shares jump 12% after fraud probe",  # another verb
        "Acme shares plunge 12%",  # a shorter story
        "Reuters: Acme shares plunge 12% after fraud probe",  # a credit in front is a word
    ],
)
def test_different_stories_get_different_ids(other: str) -> None:
    assert story_id(other) != story_id(ORIGINAL)


def test_text_after_the_first_content_words_does_not_matter() -> None:
    head = "Acme recalls forty thousand vehicles over faulty brake sensors in Europe and Asia"
    assert len(story_tokens(head)) == STORY_TOKENS
    assert story_id(head + ", the company said") == story_id(head + " amid a wider probe")


def test_the_id_is_stable_and_short() -> None:
    # Pinned: ids are compared across restarts and worker versions, so a change here is a
    # deliberate format change (stories in flight would count twice once).
    assert story_id(ORIGINAL) == "8c94806152e78c87"
    assert re.fullmatch(r"[0-9a-f]{16}", story_id("Anything at all") or "")


@pytest.mark.parametrize("text", ["", "   ", "https://t.co/x @someone", "RT @a via @b #tag", "the of a"])
def test_no_content_words_no_story(text: str) -> None:
    assert story_id(text) is None


words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=3, max_size=8).filter(
    lambda w: w not in {"via"}
)


@given(
    st.lists(words, min_size=1, max_size=14),
    st.sampled_from(["https://t.co/x1", "@desk", "RT", "www.news.example/a"]),
    st.sampled_from([str.upper, str.title, str.lower]),
    st.sampled_from([" ", "  ", "\t", ", ", "; ", " ... "]),  # " - " at the end reads as a credit
)
def test_noise_never_changes_the_id(content: list[str], noise: str, case: object, sep: str) -> None:
    text = " ".join(content)
    noisy = f"{noise} " + sep.join(case(w) for w in content) + f" {noise}"  # type: ignore[operator]
    assert story_id(noisy) == story_id(text)


def _story_tokens_every_pass(text: str) -> list[str]:
    """story_tokens without its substring guards: every cleanup regex on every text."""
    import unicodedata

    from worker import story

    text = unicodedata.normalize("NFKC", text)
    for pattern, repl in ((story._URL, " "), (story._HANDLE, " ")):
        text = pattern.sub(repl, text)
    text = story._TRAILING_TAGS.sub("", text.rstrip())
    text = story._CREDIT.sub("", text)
    text = story._MARKER.sub(" ", text)
    words: dict[str, None] = {}
    for word in story._WORD.findall(text.casefold()):
        if word not in story._STOPWORDS:
            words.setdefault(word)
            if len(words) == STORY_TOKENS:
                break
    return list(words)


_PIECES = st.sampled_from(
    ["Acme", "RT", "via", "@desk", "https://x.co/a", "WWW.acme.com", "#oil", " - Reuters", " | Bloomberg",
     "\u2013 AP", "shares", "fall", "12%", "ﬁrst", "Ｆｅｄ", "  ", "rtx", "Via", "—", "-", "|"]
)  # fmt: skip


@given(st.lists(_PIECES, max_size=12).map(" ".join))
def test_substring_guards_never_change_the_words(text: str) -> None:
    assert story_tokens(text) == _story_tokens_every_pass(text)
