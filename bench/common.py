"""Shared pieces of the bench: the run plan, the texts, one result row, timing and padding helpers."""

from __future__ import annotations

import dataclasses
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

    texts: int  # bench/data/texts.jsonl texts (end-to-end rows cycle through them; token stats)
    timed_texts: int  # rows 4/4p/4e/4t per round
    dense_texts: int  # rows 3/3s per round: the dense model pads arrival-order batches to ~128 tokens
    per_message_sample: int  # row 1a per round: bert-base one message at a time is slow on CPU
    finbert_batched: int  # row 1b per round
    torch_batched: int  # row 2 per round
    rounds: int  # rows 1-4 are timed in this many interleaved rounds; each keeps its best
    sweep_texts: int  # texts per point of the batch-size sweep (rows 3, 4)
    sweep_sizes: tuple[int, ...]
    torch_sweep_texts: int
    torch_sweep_sizes: tuple[int, ...]
    e2e_messages: int  # row 5 per round at full speed
    e2e_rounds: int
    paced_messages: int  # row 5p at 50% of the best row-5 rate
    scaling_messages: int
    peak_repeats: int
    drain_messages: int = 4000

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            texts=128,
            timed_texts=128,
            dense_texts=64,
            per_message_sample=4,
            finbert_batched=16,
            torch_batched=32,
            rounds=1,
            sweep_texts=64,
            sweep_sizes=(1, 32),
            torch_sweep_texts=32,
            torch_sweep_sizes=(16,),
            e2e_messages=200,
            e2e_rounds=1,
            paced_messages=100,
            scaling_messages=400,
            peak_repeats=3,
            drain_messages=400,
        )

    @classmethod
    def full(cls) -> Plan:
        return cls(
            texts=3000,
            timed_texts=1024,
            dense_texts=512,  # two full batches at the default max_batch_size (256)
            per_message_sample=48,
            finbert_batched=256,
            torch_batched=512,
            rounds=3,
            sweep_texts=256,
            sweep_sizes=(1, 8, 32, 64, 128),
            torch_sweep_texts=128,
            torch_sweep_sizes=(1, 16, 64),
            e2e_messages=12000,
            e2e_rounds=3,
            paced_messages=2000,
            scaling_messages=4000,
            peak_repeats=10,
        )

    @classmethod
    def gpu(cls) -> Plan:
        """``full`` with counts sized for a GPU's rate (~20x more messages per timed run)."""
        return dataclasses.replace(
            cls.full(),
            texts=16384,  # the bench texts repeated: the encoder caches nothing
            timed_texts=16384,
            sweep_texts=8192,
            sweep_sizes=(64, 256, 1024, 4096),
            e2e_messages=30000,
            paced_messages=15000,
            scaling_messages=30000,
            drain_messages=100000,
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


def no_warm_up() -> None:
    """A warm-up that does nothing (the sweep's points follow a warmed-up row)."""


def batches(items: Sequence[Any] | np.ndarray, size: int) -> list[Any]:
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


@dataclass
class Timer:
    """A row whose ``seconds`` is filled in by ``interleave``: ``fn`` is one timed pass."""

    row: Row
    fn: Callable[[], object]
    warm_up: Callable[[], object]


def interleave(timers: Sequence[Timer], repeats: int) -> None:
    """Time the rows in rounds (A B C, A B C, ...) and keep each row's best round: on a shared machine a
    busy spell then hits every row alike instead of whichever row happened to run during it."""
    for timer in timers:
        timer.warm_up()
    samples: list[list[float]] = [[] for _ in timers]
    for _ in range(max(1, repeats)):
        for timer, out in zip(timers, samples, strict=True):
            start = time.perf_counter()
            timer.fn()
            out.append(time.perf_counter() - start)
    for timer, out in zip(timers, samples, strict=True):
        timer.row.seconds = min(out)  # the best round: the least disturbed by other work on the machine
        timer.row.extra["rounds_s"] = [round(x, 4) for x in out]


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
