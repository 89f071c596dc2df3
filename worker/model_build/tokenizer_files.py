"""tokenizer.json handling: runtime padding/truncation settings and encoding batches (torch-free)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer


def runtime_tokenizer(src: Path, max_tokens: int) -> Tokenizer:
    """Load a tokenizer and set what the runtime wants: truncate at ``max_tokens``, pad to the
    longest text of the batch (the base file pads every text to a fixed 128 tokens)."""
    tokenizer = Tokenizer.from_file(str(src))
    tokenizer.enable_truncation(max_length=max_tokens)
    pad_id = tokenizer.token_to_id("[PAD]")
    tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
    return tokenizer


def save_runtime_tokenizer(src: Path, dst: Path, max_tokens: int) -> Path:
    runtime_tokenizer(src, max_tokens).save(str(dst))
    return dst


def encode_batch(tokenizer: Tokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``input_ids`` and ``attention_mask`` (int64) for a batch, padded to its longest text."""
    encodings = tokenizer.encode_batch(texts)
    ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
    mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
    return ids, mask
