"""Knowledge-base entries and versioned snapshots (schema: schemas/kb_entry.v1.json)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import orjson

from worker.schemas import validate

SENTIMENTS: tuple[str, ...] = ("negative", "neutral", "positive")
ENTRY_KINDS: tuple[str, ...] = ("exemplar", "term", "phrase")
STANDARD_GROUPS: tuple[str, ...] = (
    "equities",
    "rates",
    "fx",
    "commodities",
    "credit",
    "crypto",
    "macro",
    "regulation",
    "corporate",
)
# Fields that change what a point means to the model (its embedding or its label vector); author and
# note do not, so editing them keeps the content hash (and any cached embedding) valid.
_CONTENT_FIELDS: tuple[str, ...] = ("kind", "text", "topic", "sentiment", "weight", "group", "entities")


@dataclass(frozen=True)
class KBEntry:
    id: str
    kind: str
    text: str
    group: str
    author: str
    topic: str | None = None
    sentiment: str | None = None
    weight: float = 1.0
    entities: tuple[str, ...] = ()
    note: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, check: bool = True) -> KBEntry:
        """Build from a kb_entry.v1 object; ``check`` validates it first (raises SchemaError)."""
        if check:
            validate("kb_entry", data)
        return cls(
            id=data["id"],
            kind=data["kind"],
            text=data["text"],
            group=data["group"],
            author=data["author"],
            topic=data.get("topic"),
            sentiment=data.get("sentiment"),
            weight=float(data.get("weight", 1.0)),
            entities=tuple(data.get("entities") or ()),
            note=data.get("note"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The kb_entry.v1 object (optional fields only when set)."""
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "text": self.text,
            "topic": self.topic,
            "sentiment": self.sentiment,
            "weight": self.weight,
            "group": self.group,
            "author": self.author,
        }
        if self.entities:
            out["entities"] = list(self.entities)
        if self.note is not None:
            out["note"] = self.note
        return out

    @cached_property
    def content_hash(self) -> str:
        """sha256 of the canonical JSON of the fields that affect embedding and labels."""
        content = {name: getattr(self, name) for name in _CONTENT_FIELDS}
        content["entities"] = list(self.entities)
        return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class KBSnapshot:
    """One published KB version, as the watcher hands it to the worker."""

    version: int
    entries: tuple[KBEntry, ...]
    published_at: str  # RFC 3339, UTC
    author: str
    message: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __len__(self) -> int:
        return len(self.entries)

    def by_id(self) -> dict[str, KBEntry]:
        return {entry.id: entry for entry in self.entries}

    @property
    def topics(self) -> tuple[str, ...]:
        """Topic labels used by the KB, sorted (includes topics the classifier has never seen)."""
        return tuple(sorted({e.topic for e in self.entries if e.topic}))

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(sorted({e.group for e in self.entries}))
