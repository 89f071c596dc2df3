"""Advice printed after a publish: KB-only topics with too few exemplars for the model to find them.

Measured on a build that never saw four topics (docs/INTERNALS.md, "A topic the encoder never saw"):
20 exemplars gave recall 0.24-0.94 on held-back messages, 100 gave a mean of 0.73.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from kb_sync.model import KBEntry
from worker.model_build.artifact import ArtifactError, load_manifest

ADVISED_NEW_TOPIC_EXEMPLARS = 50


def model_topics(model_dir: Path) -> set[str] | None:
    """The topics the model's head was trained on (manifest ``labels.topic``); None if unreadable."""
    try:
        labels = load_manifest(model_dir)["labels"]["topic"]
    except (ArtifactError, KeyError, TypeError):
        return None
    return {str(label) for label in labels}


def thin_new_topics(entries: Iterable[KBEntry], head_topics: set[str]) -> dict[str, int]:
    """KB-only topics (not in ``head_topics``) with fewer exemplars than advised, and their counts."""
    counts = Counter(
        e.topic for e in entries if e.kind == "exemplar" and e.topic and e.topic not in head_topics
    )
    return {topic: n for topic, n in sorted(counts.items()) if n < ADVISED_NEW_TOPIC_EXEMPLARS}


def advice_lines(entries: Iterable[KBEntry], model_dir: Path) -> list[str]:
    head_topics = model_topics(model_dir)
    if head_topics is None:
        return []
    return [
        f"note: topic {topic!r} is not one the model was trained on and has {n} exemplar"
        f"{'s' if n != 1 else ''}; for such a topic publish {ADVISED_NEW_TOPIC_EXEMPLARS}-100 (20 found "
        f"0.24-0.94 of a never-seen topic's messages in tests, docs/INTERNALS.md) and check it with "
        f"`finsignal kb audit --data LABELLED.jsonl`"
        for topic, n in thin_new_topics(entries, head_topics).items()
    ]
