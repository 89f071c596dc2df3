"""The CPU graph rewrite (SkipLayerNormalization -> Add + LayerNormalization) and the session that keeps it.

ORT's CPU SkipLayerNormalization kernel is several times slower than its pieces, so the INT8 export
unfuses it and ``open_session`` stops ORT from fusing it back. These tests check that the rewrite
computes the same thing, that the graph ORT actually runs holds no SkipLayerNormalization, and that the
shipped CPU model is the rewritten one.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx  # the train extra, which `make test` installs
import pytest
from onnx import TensorProto, helper, numpy_helper

from worker.config import DEFAULT_MODEL_DIR
from worker.model_build.onnx_export import count_ops, unfuse_skip_layer_norm
from worker.model_build.session import open_session

HIDDEN = 8


def _skip_layer_norm_model(path: Path, with_bias: bool, with_beta: bool) -> dict[str, np.ndarray]:
    """y = SkipLayerNorm(x @ W, skip, gamma, beta, bias): the shape a BERT block has after fusion."""
    rng = np.random.default_rng(0)
    weights = {
        "W": rng.normal(size=(HIDDEN, HIDDEN)).astype(np.float32),
        "gamma": rng.normal(size=HIDDEN).astype(np.float32),
        "beta": rng.normal(size=HIDDEN).astype(np.float32),
        "bias": rng.normal(size=HIDDEN).astype(np.float32),
    }
    beta = "beta" if with_beta or with_bias else ""
    inputs = ["h", "skip", "gamma", beta, *(["bias"] if with_bias else [])]
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"]),
        helper.make_node(
            "SkipLayerNormalization", inputs, ["y"], domain="com.microsoft", epsilon=1e-5, name="sln"
        ),
    ]
    if not with_beta and with_bias:
        weights["beta"] = np.zeros(HIDDEN, dtype=np.float32)
    used = {name for name in inputs if name}
    graph = helper.make_graph(
        nodes,
        "sln",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", HIDDEN]),
            helper.make_tensor_value_info("skip", TensorProto.FLOAT, ["b", "s", HIDDEN]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", HIDDEN])],
        [numpy_helper.from_array(v, k) for k, v in weights.items() if k in used or k == "W"],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 8
    onnx.save(model, str(path))
    return weights


@pytest.mark.parametrize(("with_bias", "with_beta"), [(True, True), (False, True), (False, False)])
def test_unfused_graph_computes_layer_norm_of_the_sum(
    tmp_path: Path, with_bias: bool, with_beta: bool
) -> None:
    path = tmp_path / "model.onnx"
    w = _skip_layer_norm_model(path, with_bias, with_beta)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 5, HIDDEN)).astype(np.float32)
    skip = rng.normal(size=(3, 5, HIDDEN)).astype(np.float32)
    fused = open_session(path).run(None, {"x": x, "skip": skip})[0]

    assert unfuse_skip_layer_norm(path) == 1
    assert count_ops(path, "SkipLayerNormalization") == 0
    assert count_ops(path, "LayerNormalization") == 1
    unfused = open_session(path).run(None, {"x": x, "skip": skip})[0]

    total = x @ w["W"] + skip + (w["bias"] if with_bias else 0.0)
    normed = (total - total.mean(-1, keepdims=True)) / np.sqrt(total.var(-1, keepdims=True) + 1e-5)
    expected = normed * w["gamma"] + (w["beta"] if with_beta or with_bias else 0.0)
    np.testing.assert_allclose(unfused, expected, atol=1e-4)
    np.testing.assert_allclose(unfused, fused, atol=1e-4)
    assert unfuse_skip_layer_norm(path) == 0  # idempotent: nothing left to rewrite


def test_session_does_not_fuse_it_back_and_folds_the_bias(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    _skip_layer_norm_model(path, with_bias=True, with_beta=True)
    unfuse_skip_layer_norm(path)
    ran = tmp_path / "optimized.onnx"
    open_session(path, optimized_model_path=ran)
    ops = Counter(node.op_type for node in onnx.load(str(ran)).graph.node)
    assert ops["SkipLayerNormalization"] == 0  # ORT's SkipLayerNormFusion would match bias-Add + Add + LN
    assert ops["LayerNormalization"] == 1


def test_shipped_cpu_model_runs_without_skip_layer_norm(tmp_path: Path) -> None:
    cpu = DEFAULT_MODEL_DIR / "model.int8.onnx"
    assert count_ops(cpu, "SkipLayerNormalization") == 0
    assert count_ops(cpu, "LayerNormalization") > 0
    ran = tmp_path / "optimized.onnx"
    open_session(cpu, optimized_model_path=ran)
    nodes = onnx.load(str(ran)).graph.node
    ops = Counter(node.op_type for node in nodes)
    assert ops["SkipLayerNormalization"] == 0
    assert ops["LayerNormalization"] == count_ops(cpu, "LayerNormalization")
    # Each bias Add went into the MatMul before it; what is left is one residual Add per block norm
    # (and the memory head's two, which mix probabilities after the encoder).
    encoder_adds = [n for n in nodes if n.op_type == "Add" and not n.name.startswith("memory/")]
    assert len(encoder_adds) == ops["LayerNormalization"]
    assert ops["Add"] == len(encoder_adds) + 2
