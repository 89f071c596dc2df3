"""Shared pieces of the bench: the run plan, the texts, one result row, timing and padding helpers."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
TEXTS_PATH = BENCH_DIR / "data" / "texts.jsonl"
RESULTS_DIR = BENCH_DIR / "results"
DENSE_DIR = BENCH_DIR.parent / ".cache" / "minilm-dense"


@dataclass(frozen=True)
class Plan:
    """How much of each row to run. ``quick`` is the CI smoke size; ``full`` fits ~10 min on 2 cores."""

    texts: int  # texts used by the batched rows (from bench/data/texts.jsonl, fixed order)
    per_message_sample: int  # row 1 per message: a sample, bert-base one at a time is slow on CPU
    finbert_batched: int  # row 1 batched
    torch_batched: int  # row 2
    torch_sweep_texts: int
    repeats: int  # rows 3/4: timed passes over the texts (median)
    sweep_texts: int  # texts per point of the batch-size sweep
    sweep_sizes: tuple[int, ...]
    torch_sweep_sizes: tuple[int, ...]
    e2e_messages: int  # row 5 at full speed
    paced_messages: int  # row 5 at 50% of max throughput
    scaling_messages: int
    peak_repeats: int

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            texts=128,
            per_message_sample=8,
            finbert_batched=32,
            torch_batched=64,
            torch_sweep_texts=32,
            repeats=1,
            sweep_texts=64,
            sweep_sizes=(1, 32),
            torch_sweep_sizes=(16,),
            e2e_messages=200,
            paced_messages=100,
            scaling_messages=400,
            peak_repeats=3,
        )

    @classmethod
    def full(cls) -> Plan:
        return cls(
            texts=3000,
            per_message_sample=200,
            finbert_batched=256,
            torch_batched=1024,
            torch_sweep_texts=256,
            repeats=3,
            sweep_texts=1024,
            sweep_sizes=(1, 4, 16, 32, 64, 128, 256),
            torch_sweep_sizes=(1, 16, 64),
            e2e_messages=12000,
            paced_messages=3000,
            scaling_messages=12000,
            peak_repeats=10,
        )


@dataclass
class Row:
    """One line of the table (and of the JSON)."""

    row: str  # "1a", "2", ... as in issue 7
    name: str
    messages: int
    seconds: float
    batch_size: int | None
    mean_tokens: float  # tokens fed to the model per message (after truncation), not padded
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "msgs_per_s": round(self.msgs_per_s, 2), "seconds": round(self.seconds, 4)}


def load_texts(limit: int | None = None, path: Path = TEXTS_PATH) -> list[str]:
    """The bench texts in file order (the generator already mixes kinds, so any prefix is a fair sample)."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python bench/make_texts.py` to generate it")
    texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line]
    if limit is not None and limit > len(texts):
        texts = (texts * (limit // len(texts) + 1))[:limit]  # repeat: more messages than texts
    return texts[:limit]


def threads(requested: int) -> int:
    """The inference thread count: 0 means every core, as ONNX Runtime reads it."""
    return requested if requested > 0 else (os.cpu_count() or 1)


def batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def timed(fn: Callable[[], object], repeats: int = 1, warm_up: Callable[[], object] | None = None) -> float:
    """Median wall seconds of ``repeats`` calls after one untimed warm-up (``warm_up``, else ``fn``)."""
    (warm_up or fn)()
    samples = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return float(np.median(samples))


def padded_tokens(lengths: np.ndarray, batch_size: int, sort: bool) -> int:
    """Tokens actually computed when ``lengths`` arrive in batches padded to each batch's longest."""
    total = 0
    for start in range(0, len(lengths), batch_size):
        chunk = lengths[start : start + batch_size]
        if sort:
            chunk = np.sort(chunk)
        total += int(chunk.max()) * len(chunk) if len(chunk) else 0
    return total


def percentiles(values_ms: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values_ms, dtype=np.float64)
    if arr.size == 0:
        return {}
    qs = {"p50": 50, "p90": 90, "p95": 95, "p99": 99, "max": 100}
    return {name: round(float(np.percentile(arr, q)), 2) for name, q in qs.items()}
