"""`finsignal model speed`: messages/s of two artifacts on the same texts, batch size and run.

Torch-free. The models run alternately in rounds, so a busy machine slows both alike; the figure is
the median of the rounds. Prints figures only (no pass/fail): timings are not test assertions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from worker.model_build.artifact import verify_artifact
from worker.model_build.data import DataError, read_texts
from worker.model_build.session import open_session
from worker.model_build.tokenizer_files import encode_batch, runtime_tokenizer


class _Runner:
    def __init__(self, model_dir: Path, threads: int, target: str = "cpu") -> None:
        artifact = verify_artifact(model_dir, files=[])
        self.artifact = verify_artifact(model_dir, files=[artifact.onnx_path(target).name, "tokenizer.json"])
        self.tokenizer = runtime_tokenizer(self.artifact.tokenizer_path, self.artifact.max_tokens)
        self.session = open_session(self.artifact.onnx_path(target), target, threads)

    def run(self, batches: list[list[str]]) -> float:
        """Seconds to tokenize and encode every batch (tokenizing is part of the per-message cost)."""
        start = time.perf_counter()
        for texts in batches:
            ids, mask = encode_batch(self.tokenizer, texts)
            self.session.run(None, {"input_ids": ids, "attention_mask": mask})
        return time.perf_counter() - start


def compare(
    models: dict[str, Path], texts: list[str], batch_size: int, rounds: int, threads: int
) -> dict[str, Any]:
    runners = {name: _Runner(path, threads) for name, path in models.items()}
    batches = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]
    for runner in runners.values():  # warm-up: first runs allocate and pick kernels
        runner.run(batches[:2])
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, runner in runners.items():
            times[name].append(runner.run(batches))
    result: dict[str, Any] = {
        "texts": len(texts),
        "batch_size": batch_size,
        "rounds": rounds,
        "threads": threads,
        "models": {},
    }
    for name, samples in times.items():
        median = statistics.median(samples)
        result["models"][name] = {
            "model_dir": str(models[name]),
            "messages_per_s": round(len(texts) / median, 1),
            "median_s": round(median, 4),
        }
    names = list(models)
    if len(names) == 2:
        a, b = (result["models"][n]["messages_per_s"] for n in names)
        result["speedup"] = round(b / a, 2) if a else None
    return result


def load_texts(path: Path, limit: int) -> list[str]:
    texts = read_texts([Path(path)])
    rng = np.random.default_rng(0)  # a fixed sample mixes short and long texts
    order = rng.permutation(len(texts))[:limit]
    return [texts[i] for i in order]


def run_speed_command(args: argparse.Namespace) -> int:
    try:
        texts = load_texts(args.data, args.limit)
    except DataError as exc:
        print(f"finsignal model speed: {exc}", file=sys.stderr)
        return 2
    result = compare(
        {"baseline": args.baseline, "model": args.model_dir},
        texts,
        args.batch_size,
        args.rounds,
        args.threads,
    )
    if args.json:
        print(json.dumps(result))
        return 0
    for name, figures in result["models"].items():
        print(f"{name:9s} {figures['messages_per_s']:9.1f} msg/s  ({figures['model_dir']})")
    print(
        f"speedup {result.get('speedup')}x on {result['texts']} texts, batch {result['batch_size']}, "
        f"{result['rounds']} rounds, {result['threads']} threads"
    )
    return 0
