"""Rows 3 and 4: ONNX Runtime on CPU, no Kafka.

Row 3 is the dense all-MiniLM-L6-v2 exported by ``worker.model_build.export.export_dense`` (fused,
dynamically quantised INT8), run the ordinary way: arrival-order batches padded to their longest text.
Row 3s is the same model with finsignal's batching (length sort + padded-token budget) to separate the
batching lever from the pruning lever. Row 4 is finsignal's ``Classifier`` (encoder + KB fusion over
the default KB); row 4e is its encoder alone, which row 6 compares with the machine's peak.
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import DENSE_DIR, Row, Timer, batches, no_warm_up, timed
from worker.app import ENCODER_QUEUE
from worker.config import Settings
from worker.model_build.session import open_session

log = logging.getLogger(__name__)


TIGHT_BUDGET = 1024  # padded tokens per sub-batch in rows 3s and 4t (what-if rows)


def ensure_dense_artifact(out_dir: Path = DENSE_DIR, max_tokens: int = 128) -> Path:
    """The dense INT8 export in .cache/minilm-dense (built once, ~15 s, needs the train extra)."""
    if not (out_dir / "manifest.json").exists() or _is_stale(out_dir):
        from worker.model_build.export import export_dense

        log.info("exporting dense all-MiniLM-L6-v2 (INT8) to %s", out_dir)
        export_dense(out_dir, max_tokens=max_tokens, fp16=False)
    return out_dir


def _is_stale(model_dir: Path) -> bool:
    """An export from before the CPU graph was unfused (it would make row 3 look slower than it is)."""
    from worker.model_build.onnx_export import count_ops

    path = model_dir / "model.int8.onnx"
    return not path.exists() or count_ops(path, "SkipLayerNormalization") > 0


class DenseRunner:
    """Tokenize + run an embedding-only INT8 artifact; ``sort`` uses finsignal's batching instead."""

    def __init__(self, model_dir: Path, num_threads: int, max_tokens: int, max_batch_tokens: int) -> None:
        from worker.model_build.artifact import verify_artifact
        from worker.model_build.tokenizer_files import runtime_tokenizer

        artifact = verify_artifact(model_dir, files=["model.int8.onnx", "tokenizer.json"])
        self.max_tokens = min(max_tokens, artifact.max_tokens)
        self.tokenizer = runtime_tokenizer(artifact.tokenizer_path, self.max_tokens)
        self.max_batch_tokens = max_batch_tokens
        self.session = open_session(artifact.onnx_path("cpu"), "cpu", num_threads)

    def lengths(self, texts: list[str]) -> np.ndarray:
        return np.array([sum(e.attention_mask) for e in self.tokenizer.encode_batch(texts)], dtype=np.int64)

    def run(self, texts: list[str], batch_size: int, sort: bool = False) -> None:
        for chunk in batches(texts, batch_size):
            encodings = self.tokenizer.encode_batch(list(chunk))  # padded to the chunk's longest
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            if not sort:
                self.session.run(None, {"input_ids": ids, "attention_mask": mask})
                continue
            lengths = mask.sum(1)
            order = np.argsort(lengths, kind="stable")
            for part in token_budget_parts(lengths[order], self.max_batch_tokens):
                index = order[part]
                width = int(lengths[index].max())
                self.session.run(
                    None, {"input_ids": ids[index, :width], "attention_mask": mask[index, :width]}
                )


def token_budget_parts(sorted_lengths: np.ndarray, budget: int) -> list[slice]:
    """Slices of ascending lengths whose padded size (rows x longest) stays within ``budget``."""
    parts, start = [], 0
    for end in range(1, len(sorted_lengths) + 1):
        if (end - start) * int(sorted_lengths[end - 1]) > budget and end - 1 > start:
            parts.append(slice(start, end - 1))
            start = end - 1
    parts.append(slice(start, len(sorted_lengths)))
    return parts


def dense_onnx_timers(
    texts: list[str], batch_size: int, settings: Settings, num_threads: int
) -> tuple[list[Timer], Callable[[int, tuple[int, ...]], dict[int, float]]]:
    """Rows 3 and 3s (timed by ``interleave``) and the batch-size sweep of row 3."""
    # 3s uses a tight token budget: at the default budget (8192) a batch of 64 never splits, so sorting
    # alone would change nothing; this row shows what splitting by length is worth on the dense model.
    runner = DenseRunner(ensure_dense_artifact(), num_threads, settings.max_tokens, TIGHT_BUDGET)
    mean_tokens = float(runner.lengths(texts).mean())
    note = f"INT8 dynamic quantisation, ORT {num_threads} threads, truncated at {runner.max_tokens}"
    warm = texts[: 2 * batch_size]
    timers = [
        Timer(
            Row(
                "3",
                "dense all-MiniLM-L6-v2, ONNX INT8, batched",
                len(texts),
                0.0,
                batch_size,
                mean_tokens,
                note + "; arrival-order batches padded to their longest",
            ),
            lambda: runner.run(texts, batch_size),
            lambda: runner.run(warm, batch_size),
        ),
        Timer(
            Row(
                "3s",
                f"  same, length-sorted sub-batches of <= {TIGHT_BUDGET} padded tokens",
                len(texts),
                0.0,
                batch_size,
                mean_tokens,
                note,
            ),
            lambda: runner.run(texts, batch_size, sort=True),
            lambda: runner.run(warm, batch_size, sort=True),
        ),
    ]

    def sweep(n: int, sizes: tuple[int, ...]) -> dict[int, float]:
        sample = texts[:n]
        return {
            s: len(sample) / timed(functools.partial(runner.run, sample, s), warm_up=no_warm_up)
            for s in sizes
        }

    return timers, sweep


def default_kb_snapshot() -> Any:
    from kb_sync.loader import load_default_kb
    from kb_sync.model import KBSnapshot

    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return KBSnapshot(version=1, entries=load_default_kb(), published_at=now, author="bench")


@dataclass
class FinsignalBench:
    """Rows 4 and 4e (timed by ``interleave``), their batch-size sweep and the facts rows 5/6 need."""

    timers: list[Timer]
    sweep: Callable[[int, tuple[int, ...]], dict[int, float]]
    facts: Callable[[], dict[str, Any]]


def finsignal_timers(texts: list[str], settings: Settings) -> FinsignalBench:
    """Row 4: the lead's ``Classifier`` (encoder + fusion over the default KB); 4e: its encoder alone."""
    from worker.classifier import Classifier, Encoded
    from worker.encoder import Encoder

    classifier = Classifier(settings)
    classifier.set_kb(default_kb_snapshot())
    encoder = classifier.encoder
    encoder.warm_up()
    size = settings.max_batch_size
    chunks = [list(c) for c in batches(texts, size)]

    def classify(items: list[list[str]]) -> None:
        for chunk in items:
            classifier.classify_texts(chunk)

    def classify_handed_off(items: list[list[str]]) -> None:
        # As the worker's run loop drives the model: while one batch is fused on this thread, the next
        # ENCODER_QUEUE are in the encoder (one tokenized while another runs); fused in order. The pool
        # lives for one timed run (starting and joining its threads: ~0.4 ms, against ~0.3 s per run).
        queued: deque[Future[Encoded]] = deque()
        with ThreadPoolExecutor(ENCODER_QUEUE, thread_name_prefix="bench-classify") as handoff:
            for chunk in items:
                queued.append(handoff.submit(classifier.encode_texts, chunk))
                if len(queued) > ENCODER_QUEUE:
                    classifier.fuse_encoded(queued.popleft().result())
            while queued:
                classifier.fuse_encoded(queued.popleft().result())

    tight = Encoder.from_settings(settings.model_copy(update={"max_batch_tokens": TIGHT_BUDGET}))

    def encode(items: list[list[str]], model: Encoder) -> None:
        for chunk in items:
            model.encode(chunk)

    # tokens fed per message: the encoder's own tokenizer (truncating at its cap, no padding)
    n_tokens = np.array([len(e.ids) for e in encoder.tokenizer.encode_batch(texts)], dtype=np.int64)
    mean_tokens = float(n_tokens.mean())
    threads = settings.intra_op_threads or "all"
    kb = classifier.index
    note = (
        f"{encoder.name} {encoder.version} ({encoder.artifact.onnx_path(encoder.target).name}), "
        f"ORT threads {threads} in {encoder.streams} stream(s), truncated at {encoder.max_tokens}"
    )
    timers = [
        Timer(
            Row(
                "4",
                "finsignal encoder + fusion (no Kafka)",
                len(texts),
                0.0,
                size,
                mean_tokens,
                note + f"; default KB ({kb.size if kb else 0} points)",
            ),
            lambda: classify(chunks),
            lambda: classify(chunks[:2]),
        ),
        Timer(
            Row(
                "4p",
                f"  same, {ENCODER_QUEUE} batches in the encoder at once (as the worker)",
                len(texts),
                0.0,
                size,
                mean_tokens,
                note + "; one batch tokenized while another runs, fused in order on the caller",
            ),
            lambda: classify_handed_off(chunks),
            lambda: classify_handed_off(chunks[:2]),
        ),
        Timer(
            Row("4e", "  finsignal encoder alone", len(texts), 0.0, size, mean_tokens, note),
            lambda: encode(chunks, encoder),
            lambda: encode(chunks[:2], encoder),
        ),
        Timer(
            Row(
                "4t",
                f"  encoder alone, max_batch_tokens {TIGHT_BUDGET} (what-if)",
                len(texts),
                0.0,
                size,
                mean_tokens,
                note + f"; setting max_batch_tokens={TIGHT_BUDGET} instead of {settings.max_batch_tokens}",
            ),
            lambda: encode(chunks, tight),
            lambda: encode(chunks[:2], tight),
        ),
    ]

    def sweep(n: int, sizes: tuple[int, ...]) -> dict[int, float]:
        out = {}
        for bs in sizes:
            sample = [list(c) for c in batches(texts[:n], bs)]
            out[bs] = n / timed(functools.partial(classify, sample), warm_up=no_warm_up)
        return out

    def facts() -> dict[str, Any]:
        # One full batch (max_batch_size messages): the unit the latency target is stated in. A run with
        # fewer texts than that (--quick) times one batch of the texts repeated up to the size.
        full = [c for c in chunks if len(c) == size] or [list(itertools.islice(itertools.cycle(texts), size))]
        per_batch = [_seconds(functools.partial(classifier.classify_texts, c)) for c in full]
        return {
            "batch_seconds_median": float(np.median(per_batch)) if per_batch else None,
            "batch_seconds_p90": float(np.percentile(per_batch, 90)) if per_batch else None,
            "token_lengths": n_tokens.tolist(),
            "max_tokens": encoder.max_tokens,
            "architecture": dict(encoder.artifact.manifest.get("architecture", {})),
            "kb_points": kb.size if kb else 0,
        }

    return FinsignalBench(timers, sweep, facts)


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
