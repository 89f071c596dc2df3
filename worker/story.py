"""Story fingerprints: one short, stable id for the copies of one story (the ``finsignal.story`` header).

Syndicated and re-posted copies of a story differ in case, links, @handles, "RT"/"via" markers,
punctuation, spacing, a trailing source credit (" - Reuters", "| Bloomberg"), trailing hashtags and
where they are cut off. ``story_id`` removes all of that and hashes the *set* of the first
``STORY_TOKENS`` content words (stopwords dropped), so the copies above get one id while a story that
differs in any of its first content words (another company, another number, another verb) gets another.
Word order within those words does not matter. A credit in front ("Reuters: Acme falls") is a word
like any other, so that copy gets its own id.
Text after them does not matter either: a long story with a different ending keeps its id (the alert
stage compares ids only per key and within ``alert_dedupe_window_s``).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

STORY_TOKENS = 10  # content words hashed: enough to tell stories apart, few enough to ignore endings

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_HANDLE = re.compile(r"(?<![\w@])@\w+")
_TRAILING_TAGS = re.compile(r"(?:\s*#\w+)+\s*$")
_CREDIT = re.compile(r"\s+[-|\u2013\u2014]\s+[\w .&']{1,30}$")  # " - Reuters", " | Yahoo Finance"
_MARKER = re.compile(r"(?<!\w)(?:rt|via)(?!\w)", re.IGNORECASE)
_WORD = re.compile(r"[^\W_]+")
_STOPWORDS = frozenset(
    (  # noqa: SIM905 (one line of words reads better than a column of 34 strings)
        "a an the of to in on at for and or but by with from as is are was were be been it its this "
        "that these those after over into than then so"
    ).split()
)


def story_tokens(text: str) -> list[str]:
    """The normalised content words that identify the story, in text order, first occurrences only."""
    text = unicodedata.normalize("NFKC", text)
    folded = text.casefold()
    # Each pattern runs only when the text holds what it needs (a substring test is ~50x cheaper than
    # a regex pass; most headlines have no link, handle, hashtag, credit or marker).
    if "://" in text or "www." in folded:
        text = _URL.sub(" ", text)
    if "@" in text:
        text = _HANDLE.sub(" ", text)
    text = text.rstrip()
    if "#" in text:
        text = _TRAILING_TAGS.sub("", text)
    if "-" in text or "|" in text or "\u2013" in text or "\u2014" in text:
        text = _CREDIT.sub("", text)
    if "rt" in folded or "via" in folded:
        text = _MARKER.sub(" ", text)
    words: dict[str, None] = {}
    for word in _WORD.findall(text.casefold()):
        if word not in _STOPWORDS:
            words.setdefault(word)
            if len(words) == STORY_TOKENS:
                break
    return list(words)


def story_id(text: str) -> str | None:
    """16 hex digits (64 bits of BLAKE2b) of the story's sorted content words; None when the text has
    none (only links or handles: no story to compare)."""
    words = story_tokens(text)
    if not words:
        return None
    return hashlib.blake2b(" ".join(sorted(words)).encode(), digest_size=8).hexdigest()
