"""Rows 1 and 2: what a user would run instead of finsignal (PyTorch, CPU).

Row 1 is a FinBERT-class model: ``BertForSequenceClassification`` with a bert-base config (12 layers,
768 hidden, 110M parameters) and **randomly initialised weights**, since only speed is measured; the
tokenizer is all-MiniLM-L6-v2's, which is bert-base-uncased's WordPiece vocabulary. Row 2 is the dense
all-MiniLM-L6-v2 sentence encoder (mean pooling), batched. Both see the same texts in arrival order,
padded to each batch's longest text and truncated at ``max_tokens`` (the worker's cap).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from bench.common import Row, batches, timed


def _torch(num_threads: int) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are local; never reach for the hub
    import torch

    torch.set_num_threads(num_threads)
    return torch


def _tokenizer() -> Any:
    from transformers import AutoTokenizer

    from worker.model_build.base_model import base_model_path

    return AutoTokenizer.from_pretrained(str(base_model_path()))


def finbert_rows(
    texts: list[str], per_message: int, batched: int, batch_size: int, max_tokens: int, num_threads: int
) -> list[Row]:
    """1a: pipeline per message (the tutorial way); 1b: the same pipeline with ``batch_size``."""
    torch = _torch(num_threads)
    from transformers import BertConfig, BertForSequenceClassification, pipeline

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(num_labels=3)).eval()  # random weights: speed only
    tokenizer = _tokenizer()
    classify = pipeline("text-classification", model=model, tokenizer=tokenizer, device=-1)
    kwargs = {"truncation": True, "max_length": max_tokens}
    lengths = _lengths(tokenizer, texts, max_tokens)
    classify(texts[:2], **kwargs)  # warm-up: first calls allocate

    sample = texts[:per_message]
    start = time.perf_counter()
    for text in sample:
        classify(text, **kwargs)
    per_msg_s = time.perf_counter() - start

    chunk = texts[:batched]
    start = time.perf_counter()
    classify(chunk, batch_size=batch_size, **kwargs)
    batched_s = time.perf_counter() - start
    note = "bert-base config, random weights (speed only); transformers pipeline, PyTorch fp32"
    return [
        Row(
            "1a",
            "FinBERT-class pipeline, per message",
            len(sample),
            per_msg_s,
            1,
            float(lengths[: len(sample)].mean()),
            note + f"; timed on a {len(sample)}-message sample",
        ),
        Row(
            "1b",
            "FinBERT-class pipeline, batched",
            len(chunk),
            batched_s,
            batch_size,
            float(lengths[: len(chunk)].mean()),
            note,
        ),
    ]


def minilm_torch_rows(
    texts: list[str],
    batch_size: int,
    sweep_sizes: tuple[int, ...],
    sweep_texts: int,
    max_tokens: int,
    num_threads: int,
) -> tuple[Row, dict[int, float]]:
    """Row 2 at ``batch_size`` plus msgs/s at each sweep size (for the throughput-vs-batch plot)."""
    torch = _torch(num_threads)
    from worker.model_build.base_model import load_base_encoder

    model = load_base_encoder(attention="sdpa")  # the fastest stock attention on CPU
    tokenizer = _tokenizer()

    def run(items: list[str], size: int) -> None:
        with torch.inference_mode():
            for chunk in batches(items, size):
                enc = tokenizer(
                    list(chunk), padding=True, truncation=True, max_length=max_tokens, return_tensors="pt"
                )
                hidden = model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                torch.nn.functional.normalize(pooled, dim=-1)

    seconds = timed(lambda: run(texts, batch_size), warm_up=lambda: run(texts[:batch_size], batch_size))
    lengths = _lengths(tokenizer, texts, max_tokens)
    row = Row(
        "2",
        "dense all-MiniLM-L6-v2, PyTorch, batched",
        len(texts),
        seconds,
        batch_size,
        float(lengths.mean()),
        "PyTorch fp32, SDPA attention, mean pooling",
    )
    sample = texts[:sweep_texts]
    sweep = {
        size: len(sample) / timed(lambda s=size: run(sample, s), warm_up=lambda s=size: run(sample[:s], s))
        for size in sweep_sizes
    }
    return row, sweep


def _lengths(tokenizer: Any, texts: list[str], max_tokens: int) -> np.ndarray:
    ids = tokenizer(texts, truncation=True, max_length=max_tokens)["input_ids"]
    return np.array([len(x) for x in ids], dtype=np.int64)
