"""Row 6: the machine's limit. FLOPs per message from the encoder's shapes, and a measured matmul peak.

FLOPs count multiply-adds as 2 and cover the transformer layers only (embeddings, pooling and the small
heads are < 1%): per layer and message of n tokens, with hidden h, attention width a = heads x head_size
and FFN width i: Q/K/V/O projections 2n(3ha + ah), attention scores and context 4n^2 a, FFN 4nhi.
"Useful" FLOPs use each message's real token count; "padded" FLOPs use the shapes the encoder actually
ran (length-sorted sub-batches within the token budget), so their ratio is the padding waste.

The INT8 peak is ONNX Runtime's ``MatMulInteger`` (uint8 x int8 -> int32, the kernel a dynamically
quantised model uses) on the encoder's own GEMM shapes and on one large GEMM; FP32 is numpy's sgemm
(OpenBLAS) on the same shapes. The best of the shapes is the peak, so the fraction is conservative.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from bench.common import batches
from bench.onnx_rows import token_budget_parts


def flops_per_message(n_tokens: int | np.ndarray, arch: Mapping[str, Any]) -> np.ndarray:
    n = np.asarray(n_tokens, dtype=np.float64)
    h = float(arch["hidden_size"])
    a = float(arch["num_heads"]) * float(arch.get("head_size") or h / arch["num_heads"])
    i = float(arch["intermediate_size"])
    per_layer = 2 * n * (3 * h * a + a * h) + 4 * n * n * a + 4 * n * h * i
    return per_layer * float(arch["num_layers"])


def padded_flops(lengths: np.ndarray, arch: Mapping[str, Any], batch_size: int, budget: int) -> float:
    """FLOPs of the shapes the encoder runs: each batch sorted, split by the padded-token budget."""
    total = 0.0
    for chunk in batches(lengths, batch_size):
        ordered = np.sort(np.asarray(chunk))
        for part in token_budget_parts(ordered, budget):
            rows = ordered[part]
            total += float(flops_per_message(int(rows.max()), arch)) * len(rows)
    return total


def gemm_shapes(arch: Mapping[str, Any], m: int) -> list[tuple[int, int, int]]:
    """(M, K, N) of the encoder's GEMMs for M tokens in flight: QKV, output projection, FFN in/out."""
    h = int(arch["hidden_size"])
    a = int(arch["num_heads"]) * int(arch.get("head_size") or h // arch["num_heads"])
    i = int(arch["intermediate_size"])
    return [(m, h, 3 * a), (m, a, h), (m, h, i), (m, i, h)]


BIG_SHAPE = (2048, 1024, 1024)


def int8_peak(shapes: list[tuple[int, int, int]], num_threads: int, repeats: int) -> float:
    """Best int8 ops/s of MatMulInteger over ``shapes`` (each shape timed as one graph of 4 GEMMs)."""
    return max(_int8_gemm_ops(shape, num_threads, repeats) for shape in shapes)


def _int8_gemm_ops(shape: tuple[int, int, int], num_threads: int, repeats: int, copies: int = 4) -> float:

    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    m, k, n = shape
    rng = np.random.default_rng(0)
    inits, nodes, outputs = [], [], []
    for c in range(copies):  # several GEMMs per run: the Python call overhead stays out of the figure
        b = rng.integers(-127, 128, size=(k, n), dtype=np.int8)
        inits.append(numpy_helper.from_array(b, f"B{c}"))
        nodes.append(helper.make_node("MatMulInteger", ["A", f"B{c}", "azp"], [f"Y{c}"]))
        outputs.append(helper.make_tensor_value_info(f"Y{c}", TensorProto.INT32, [m, n]))
    inits.append(numpy_helper.from_array(np.array(128, dtype=np.uint8), "azp"))
    graph = helper.make_graph(
        nodes, "peak", [helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])], outputs, inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    a = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    seconds = _best_of(lambda: session.run(None, {"A": a}), repeats)
    return copies * 2.0 * m * k * n / seconds


def fp32_peak(shapes: list[tuple[int, int, int]], repeats: int) -> float:
    best = 0.0
    rng = np.random.default_rng(0)
    for m, k, n in shapes:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        out = np.empty((m, n), dtype=np.float32)
        seconds = _best_of(lambda a=a, b=b, out=out: np.matmul(a, b, out=out), repeats)
        best = max(best, 2.0 * m * k * n / seconds)
    return best


def _best_of(fn: Any, repeats: int) -> float:
    """Fastest of ``repeats`` runs after a warm-up: a peak is what the machine *can* do."""
    fn()
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
