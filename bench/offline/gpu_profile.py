"""Where does the encoder's time go on this provider? Host work vs the ONNX session, per batch.

    python -m bench.offline.gpu_profile [cuda|cpu] [BATCH]

Times, on the bench texts: tokenization alone, the padded-block preparation, ``session.run`` alone on
the prepared blocks (with and without IOBinding), and the whole ``Encoder.encode``; then runs one
profiled batch and counts the graph's nodes per execution provider (a node that fell back to the CPU
copies its tensors across the bus on every call). The node times come from a fresh session's first
runs, so they include kernel selection: read them for placement, not speed.
"""

from __future__ import annotations

import collections
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import load_texts
from worker.config import load_settings
from worker.encoder import Encoder
from worker.model_build.session import open_session


def best_of(fn: Callable[[], object], repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    provider = sys.argv[1] if len(sys.argv) > 1 else "cuda"
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 4096
    encoder = Encoder.from_settings(load_settings(provider=provider, max_batch_tokens=65536))
    texts = load_texts(size)
    tokenize = best_of(lambda: encoder._encode_batch(texts))
    encodings = encoder._encode_batch(texts)
    prep = best_of(lambda: encoder._blocks(encodings))
    blocks = [(ids, mask) for _, ids, mask in encoder._blocks(encodings).parts]
    report: dict[str, Any] = {
        "provider": encoder.provider,
        "batch": size,
        "blocks": [list(b[0].shape) for b in blocks],
    }
    for bound in (True, False):
        encoder.io_binding = bound
        report[f"session_s_io_binding_{bound}"] = best_of(lambda: [encoder._run(i, m) for i, m in blocks])
    encoder.io_binding = encoder.target == "cuda"
    whole = best_of(lambda: encoder.encode(texts))
    report.update(tokenize_s=tokenize, prepare_s=prep, encode_s=whole)
    for key in list(report):
        if key.endswith("_s"):
            report[key.replace("_s", "_msgs_per_s")] = round(size / report[key], 1)
    # Nodes per provider, from ORT's own profile of one batch.
    session = open_session(encoder.artifact.onnx_path(encoder.target), encoder.target, profile=True)
    ids, mask = blocks[0]
    for _ in range(3):
        session.run(None, {"input_ids": ids, "attention_mask": mask})
    trace_path = Path(session.end_profiling())
    trace = json.loads(trace_path.read_text())
    trace_path.unlink()  # ORT writes it into the working directory
    per_provider: collections.Counter[str] = collections.Counter()
    time_us: collections.Counter[str] = collections.Counter()
    for event in trace:
        args = event.get("args", {})
        if event.get("cat") == "Node" and "provider" in args and event["name"].endswith("_kernel_time"):
            per_provider[f"{args['provider']}:{args.get('op_name')}"] += 1
            time_us[f"{args['provider']}:{args.get('op_name')}"] += event.get("dur", 0)
    report["nodes"] = {k: [per_provider[k], time_us[k]] for k in sorted(per_provider)}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
