"""Rows 1 and 2: what a user would run instead of finsignal (PyTorch, CPU).

Row 1 is a FinBERT-class model: ``BertForSequenceClassification`` with a bert-base config (12 layers,
768 hidden, 110M parameters) and **randomly initialised weights**, since only speed is measured; the
tokenizer is all-MiniLM-L6-v2's, which is bert-base-uncased's WordPiece vocabulary. Row 2 is the dense
all-MiniLM-L6-v2 sentence encoder (mean pooling), batched. Both see the same texts in arrival order,
padded to each batch's longest text and truncated at ``max_tokens`` (the worker's cap).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.common import Row, Timer, batches, no_warm_up, timed


def _torch(num_threads: int) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are local; never reach for the hub
    import torch

    torch.set_num_threads(num_threads)
    return torch


def _tokenizer() -> Any:
    from transformers import AutoTokenizer

    from worker.model_build.base_model import base_model_path

    return AutoTokenizer.from_pretrained(str(base_model_path()))


def finbert_timers(
    texts: list[str], per_message: int, batched: int, batch_size: int, max_tokens: int, num_threads: int
) -> list[Timer]:
    """1a: pipeline per message (the tutorial way); 1b: the same pipeline with ``batch_size``."""
    torch = _torch(num_threads)
    from transformers import BertConfig, BertForSequenceClassification, pipeline

    torch.manual_seed(0)
    config = BertConfig(num_labels=3)  # type: ignore[call-arg]  # bert-base defaults
    model = BertForSequenceClassification(config).eval()  # random weights: speed only
    tokenizer = _tokenizer()
    classify = pipeline("text-classification", model=model, tokenizer=tokenizer, device=-1)
    kwargs = {"truncation": True, "max_length": max_tokens}
    sample, chunk = texts[:per_message], texts[:batched]

    def one_by_one(items: list[str]) -> None:
        for text in items:
            classify(text, **kwargs)

    note = "bert-base config, random weights (speed only); transformers pipeline, PyTorch fp32"
    return [
        Timer(
            Row(
                "1a",
                "FinBERT-class pipeline, per message",
                len(sample),
                0.0,
                1,
                float(_lengths(tokenizer, sample, max_tokens).mean()),
                note + f"; a {len(sample)}-message sample per round",
            ),
            lambda: one_by_one(sample),
            lambda: one_by_one(sample[:2]),
        ),
        Timer(
            Row(
                "1b",
                "FinBERT-class pipeline, batched",
                len(chunk),
                0.0,
                batch_size,
                float(_lengths(tokenizer, chunk, max_tokens).mean()),
                note,
            ),
            lambda: classify(chunk, batch_size=batch_size, **kwargs),
            lambda: classify(chunk[:batch_size], batch_size=batch_size, **kwargs),
        ),
    ]


def minilm_torch_timers(
    texts: list[str], batch_size: int, max_tokens: int, num_threads: int
) -> tuple[list[Timer], Callable[[int, tuple[int, ...]], dict[int, float]]]:
    """Row 2 (timed by ``interleave``) and its batch-size sweep."""
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

    timer = Timer(
        Row(
            "2",
            "dense all-MiniLM-L6-v2, PyTorch, batched",
            len(texts),
            0.0,
            batch_size,
            float(_lengths(tokenizer, texts, max_tokens).mean()),
            "PyTorch fp32, SDPA attention, mean pooling",
        ),
        lambda: run(texts, batch_size),
        lambda: run(texts[:batch_size], batch_size),
    )

    def sweep(n: int, sizes: tuple[int, ...]) -> dict[int, float]:
        sample = texts[:n]
        return {s: n / timed(functools.partial(run, sample, s), warm_up=no_warm_up) for s in sizes}

    return [timer], sweep


def _lengths(tokenizer: Any, texts: list[str], max_tokens: int) -> np.ndarray:
    ids = tokenizer(texts, truncation=True, max_length=max_tokens)["input_ids"]
    return np.array([len(x) for x in ids], dtype=np.int64)
