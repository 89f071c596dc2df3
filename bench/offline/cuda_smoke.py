"""Does this onnxruntime's CUDA provider load and run kernels here? (before any model is involved)

Builds a tiny FP16 graph (MatMul -> LayerNormalization -> Softmax), runs it on CUDAExecutionProvider
and compares it with numpy. Exits non-zero with one line naming what failed.

    python bench/offline/cuda_smoke.py
"""

from __future__ import annotations

import sys

import numpy as np


def main() -> int:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    print(f"onnxruntime {ort.__version__} at {ort.__file__}; providers {ort.get_available_providers()}")
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((64, 32)).astype(np.float16) / 8
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"]),
            helper.make_node("LayerNormalization", ["h", "g", "b"], ["n"], axis=-1),
            helper.make_node("Softmax", ["n"], ["y"], axis=-1),
        ],
        "smoke",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["B", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["B", 32])],
        [
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(np.ones(32, np.float16), "g"),
            numpy_helper.from_array(np.zeros(32, np.float16), "b"),
        ],
    )
    # IR 10: what ORT 1.2x-1.3x reads (newer onnx writes IR versions ORT may not know yet)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    session = ort.InferenceSession(
        model.SerializeToString(), providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    if session.get_providers()[0] != "CUDAExecutionProvider":
        print(f"cuda_smoke: the session runs on {session.get_providers()}, not CUDA", file=sys.stderr)
        return 3
    x = rng.standard_normal((256, 64)).astype(np.float16)
    (y,) = session.run(None, {"x": x})
    h = x.astype(np.float32) @ weight.astype(np.float32)
    n = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-5)
    expected = np.exp(n) / np.exp(n).sum(-1, keepdims=True)
    diff = float(np.abs(y.astype(np.float32) - expected).max())
    print(f"cuda_smoke: CUDA session ran, max abs diff vs numpy {diff:.2e} (onnx {onnx.__version__})")
    return 0 if diff < 1e-2 else 4


if __name__ == "__main__":
    sys.exit(main())
