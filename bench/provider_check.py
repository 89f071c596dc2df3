"""Which execution provider really runs the encoder, and one batch's time there (bench/gpu_check.sh).

``python -m bench.provider_check cuda`` exits non-zero, naming the cause, when the session does not run
on the asked-for provider: a silent fall-back to the CPU would make a GPU benchmark measure the CPU.
"""

from __future__ import annotations

import sys
import time

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


def main(argv: list[str]) -> int:
    provider = argv[0] if argv else "cuda"
    if provider not in EXPECTED:
        raise SystemExit(f"usage: python -m bench.provider_check [{'|'.join(EXPECTED)}]")
    try:
        report = check(provider)
    except ConfigError as exc:  # e.g. no CUDA driver: say so in one line, not a traceback
        print(f"provider_check: {exc}", file=sys.stderr)
        return 3
    for key, value in report.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
