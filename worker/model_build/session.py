"""The one place ONNX Runtime sessions for finsignal artifacts are opened (torch-free, runtime-safe).

Every session of a model file goes through ``open_session`` so the runtime, the evaluator, the speed
check and the benchmarks run the same graph. What it owns:

- ``ORT_ENABLE_ALL`` graph optimisation, quiet logs, the intra-op thread count;
- ``DISABLED_OPTIMIZERS``: ORT's SkipLayerNormFusion would otherwise fuse the CPU graph's Add +
  LayerNormalization (``onnx_export.unfuse_skip_layer_norm``) back into its SkipLayerNormalization
  kernel, which is 4-6x slower than the pieces on CPU; with it off, the bias Add folds into the
  MatMul before it instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"
DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


def providers_for(target: str) -> list[str]:
    """Execution providers for ``target`` ("cpu" or "cuda"), CPU last as ORT's fallback for odd ops."""
    return [CUDA_PROVIDER, CPU_PROVIDER] if target == "cuda" else [CPU_PROVIDER]


def open_session(
    model: Path | bytes,
    target: str = "cpu",
    intra_op_threads: int = 0,
    optimized_model_path: Path | None = None,
    spinning: bool = True,
    profile: bool = False,
) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``model`` (a path or serialized bytes) on ``target``.

    ``optimized_model_path``: also write the graph ORT will actually run there (to inspect fusions).
    ``spinning``: ORT's pool threads busy-wait between ops (its default). Offline tools keep it; the
    worker turns it off by default (``Settings.intra_op_spinning``), since there the spinning threads
    take the cores its Kafka I/O needs. ``profile``: ORT writes a per-node trace (``end_profiling()``).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_profiling = profile
    if optimized_model_path is not None:
        options.optimized_model_filepath = str(optimized_model_path)
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(
        source, options, providers=providers_for(target), disabled_optimizers=list(DISABLED_OPTIMIZERS)
    )
