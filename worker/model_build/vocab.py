"""Vocabulary pruning: keep the WordPiece tokens a domain corpus uses, remap tokenizer.json ids.

Kept: special tokens, every token the corpus tokenizes to, and every single-character piece
(``x`` and ``##x``) so unseen words still split into known pieces instead of becoming [UNK].
Greedy longest-match WordPiece gives the same pieces for every corpus text after pruning, because
each piece it chose is still there and no longer match was added.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer


def used_token_ids(tokenizer_path: Path, texts: list[str]) -> set[int]:
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    used: set[int] = set()
    for encoding in tokenizer.encode_batch(texts, add_special_tokens=False):
        used.update(encoding.ids)
    return used


def kept_token_ids(tokenizer_path: Path, texts: list[str]) -> np.ndarray:
    """Ascending old ids to keep for ``texts``."""
    spec = json.loads(Path(tokenizer_path).read_text())
    vocab: dict[str, int] = spec["model"]["vocab"]
    keep = used_token_ids(tokenizer_path, texts)
    keep.update(token["id"] for token in spec.get("added_tokens", []) if token.get("special"))
    for token, index in vocab.items():
        piece = token[2:] if token.startswith("##") else token
        if len(piece) == 1:
            keep.add(index)
    return np.asarray(sorted(keep), dtype=np.int64)


def remap_tokenizer(spec: dict[str, Any], keep_ids: np.ndarray) -> dict[str, Any]:
    """A tokenizer.json dict whose vocabulary is ``keep_ids`` renumbered 0..n-1 in the same order."""
    spec = json.loads(json.dumps(spec))  # deep copy
    old_to_new = {int(old): new for new, old in enumerate(keep_ids.tolist())}
    vocab: dict[str, int] = spec["model"]["vocab"]
    spec["model"]["vocab"] = {
        tok: old_to_new[i] for tok, i in sorted(vocab.items(), key=lambda kv: kv[1]) if i in old_to_new
    }
    for token in spec.get("added_tokens", []):
        if token["id"] not in old_to_new:
            raise ValueError(f"added token {token['content']!r} would be pruned")
        token["id"] = old_to_new[token["id"]]
    post = spec.get("post_processor") or {}
    for special in (post.get("special_tokens") or {}).values():
        special["ids"] = [old_to_new[i] for i in special["ids"]]
    for key in ("cls", "sep"):  # BertProcessing form: ["[CLS]", 101]
        if isinstance(post.get(key), list):
            post[key][1] = old_to_new[post[key][1]]
    padding = spec.get("padding")
    if padding and "pad_id" in padding:
        padding["pad_id"] = old_to_new[padding["pad_id"]]
    unk = spec["model"].get("unk_token")
    if unk is not None and unk not in spec["model"]["vocab"]:
        raise ValueError(f"unknown token {unk!r} would be pruned")
    return spec


def write_pruned_tokenizer(src: Path, dst: Path, keep_ids: np.ndarray) -> Path:
    spec = remap_tokenizer(json.loads(Path(src).read_text()), keep_ids)
    Path(dst).write_text(json.dumps(spec, ensure_ascii=False))
    Tokenizer.from_file(str(dst))  # fail here, not at run time, if the file is inconsistent
    return Path(dst)


def id_map(keep_ids: np.ndarray, old_vocab_size: int, unk_new_id: int) -> np.ndarray:
    """old id -> new id lookup (pruned ids map to [UNK], as the pruned tokenizer would give)."""
    table = np.full(old_vocab_size, unk_new_id, dtype=np.int64)
    table[keep_ids] = np.arange(len(keep_ids))
    return table
