"""Which execution provider really runs the encoder, and one batch's time there (bench/gpu_check.sh).

``python -m bench.provider_check cuda`` exits non-zero, naming the cause, when the session does not run
on the asked-for provider: a silent fall-back to the CPU would make a GPU benchmark measure the CPU.
``--sweep`` then checks the provider's answers against the CPU INT8 model on the bench texts (argmax
agreement, embedding cosine) and times the encoder alone over batch sizes, token budgets and IOBinding
on/off; ``--json PATH`` writes everything as one object.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from worker.config import ConfigError, load_settings
from worker.encoder import Encoder
from worker.model_build.session import CPU_PROVIDER, CUDA_PROVIDER

EXPECTED = {"cuda": CUDA_PROVIDER, "cpu": CPU_PROVIDER}


def check(provider: str, batch_size: int = 256, rounds: int = 20) -> dict[str, object]:
    """Open the shipped encoder on ``provider``; raise SystemExit unless its session runs there."""
    import onnxruntime as ort

    encoder = Encoder.from_settings(load_settings(provider=provider))  # ConfigError names the fix
    used = encoder.session.get_providers()
    if used[0] != EXPECTED[provider]:
        raise SystemExit(f"provider_check: the encoder runs on {used[0]}, not {EXPECTED[provider]}")
    texts = ["Acme cuts guidance; shares fall 12% in early trade"] * batch_size
    encoder.encode(texts)  # warm-up: kernels picked, buffers allocated
    start = time.perf_counter()
    for _ in range(rounds):
        out = encoder.encode(texts)
    seconds = (time.perf_counter() - start) / rounds
    if not np.isfinite(out.embedding).all():
        raise SystemExit("provider_check: the encoder produced non-finite output")
    return {
        "onnxruntime": ort.__version__,
        "available": ort.get_available_providers(),
        "session_providers": used,
        "model": encoder.artifact.onnx_path(encoder.target).name,
        "batch_size": batch_size,
        "batch_ms": round(seconds * 1000, 2),
        "msgs_per_s": round(batch_size / seconds, 1),
    }


def agreement(provider: str, texts: list[str]) -> dict[str, float]:
    """How far ``provider``'s model (FP16 on CUDA) answers like the CPU INT8 model on ``texts``."""
    settings = load_settings(provider=provider)
    ours = Encoder.from_settings(settings).encode(texts)
    cpu = Encoder.from_settings(load_settings(provider="cpu")).encode(texts)
    cosine = np.sum(ours.embedding * cpu.embedding, axis=1)
    return {
        "n": len(texts),
        "sentiment_argmax_agreement": float(
            np.mean(ours.sentiment_logits.argmax(1) == cpu.sentiment_logits.argmax(1))
        ),
        "topic_argmax_agreement": float(np.mean(ours.topic_logits.argmax(1) == cpu.topic_logits.argmax(1))),
        "embedding_cosine_min": float(cosine.min()),
        "embedding_cosine_mean": float(cosine.mean()),
    }


def sweep(
    provider: str,
    texts: list[str],
    batch_sizes: tuple[int, ...] = (64, 256, 1024, 4096),
    token_budgets: tuple[int, ...] = (8192, 65536),
    io_bindings: tuple[bool, ...] = (True, False),
    min_seconds: float = 1.0,
) -> list[dict[str, Any]]:
    """Encoder-alone messages/s (tokenization included) for each setting, on the same texts."""
    results = []
    for budget, bound in itertools.product(token_budgets, io_bindings):
        settings = load_settings(provider=provider, max_batch_tokens=budget)
        encoder = Encoder.from_settings(settings)
        encoder.io_binding = bound
        for size in batch_sizes:
            batches = [texts[i : i + size] for i in range(0, len(texts) - size + 1, size)] or [texts[:size]]
            for batch in batches[:2]:
                encoder.encode(batch)  # warm-up: kernels picked, arena grown for these shapes
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < min_seconds:
                for batch in batches:
                    encoder.encode(batch)
                    done += len(batch)
            seconds = time.perf_counter() - start
            results.append(
                {
                    "batch_size": size,
                    "max_batch_tokens": budget,
                    "io_binding": bound,
                    "msgs_per_s": round(done / seconds, 1),
                    "batch_ms": round(1000 * seconds * size / done, 3),
                }
            )
            print(
                f"sweep: batch {size:5d} budget {budget:6d} io_binding {bound!s:5}: "
                f"{done / seconds:12,.0f} msg/s",
                flush=True,
            )
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.provider_check", description=__doc__)
    parser.add_argument("provider", nargs="?", default="cuda", choices=sorted(EXPECTED))
    parser.add_argument("--sweep", action="store_true", help="also check answers and time a settings sweep")
    parser.add_argument("--texts", type=int, default=8192, help="bench texts for --sweep [8192]")
    parser.add_argument("--json", type=Path, default=None, help="write the report here as JSON")
    args = parser.parse_args(argv)
    try:
        report: dict[str, Any] = check(args.provider)
    except ConfigError as exc:  # e.g. no CUDA driver: say so in one line, not a traceback
        print(f"provider_check: {exc}", file=sys.stderr)
        return 3
    for key, value in report.items():
        print(f"{key}: {value}")
    if args.sweep:
        from bench.common import load_texts

        texts = load_texts(args.texts)
        report["agreement_with_cpu_int8"] = agreement(args.provider, texts[:2000])
        print(f"agreement_with_cpu_int8: {report['agreement_with_cpu_int8']}", flush=True)
        report["sweep"] = sweep(args.provider, texts)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
