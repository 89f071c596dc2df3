"""Torch -> ONNX: export with pooling inside the graph, fuse, quantize (INT8) / convert (FP16), check.

The graph takes ``input_ids`` / ``attention_mask`` (int64, dynamic batch and sequence axes) and
returns ``embedding`` (mean-pooled over the mask, through the retrieval projection when the model has
one, L2-normalised) plus the classifier logits when the model has heads, so the runtime needs only
onnxruntime + tokenizers.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

INPUT_NAMES = ["input_ids", "attention_mask"]
OPSET = 17


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors where the mask is 1 (padding excluded)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    return summed / counts


class ExportWrapper(nn.Module):
    """Encoder + pooling + normalisation (+ heads) as one module with plain tensor outputs."""

    def __init__(
        self,
        encoder: nn.Module,
        heads: dict[str, nn.Module] | None = None,
        retrieval: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head_names = list(heads or {})
        self.heads = nn.ModuleDict(heads or {})
        self.retrieval = retrieval

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # token_type_ids passed explicitly: BERT's default buffer slice does not trace to a dynamic shape.
        hidden = self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=torch.zeros_like(input_ids),
        ).last_hidden_state
        pooled = mean_pool(hidden, attention_mask)
        projected = self.retrieval(pooled) if self.retrieval is not None else pooled
        embedding = nn.functional.normalize(projected, p=2.0, dim=-1)
        return (embedding, *(self.heads[name](pooled) for name in self.head_names))

    @property
    def output_names(self) -> list[str]:
        return ["embedding", *(f"{name}_logits" for name in self.head_names)]


def export_onnx(wrapper: ExportWrapper, path: Path, vocab_size: int) -> Path:
    """Trace ``wrapper`` to ONNX (fp32) with dynamic batch and sequence axes."""
    wrapper = wrapper.eval()
    ids = torch.randint(5, max(6, vocab_size), (2, 11), dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    outputs = wrapper.output_names
    dynamic_axes: dict[str, dict[int, str]] = {name: {0: "batch", 1: "seq"} for name in INPUT_NAMES}
    dynamic_axes.update({name: {0: "batch"} for name in outputs})
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
        torch.onnx.export(
            wrapper,
            (ids, mask),
            str(path),
            input_names=INPUT_NAMES,
            output_names=outputs,
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    return path


def optimize_onnx(src: Path, dst: Path, num_heads: int, attention_size: int) -> Path:
    """Fuse attention / LayerNorm / GELU with onnxruntime.transformers.

    Heads are given explicitly (the traced reshape says -1). ``attention_size`` is num_heads x
    head_size, which after head pruning is smaller than the model width: the fusion matches it
    against the reshape, and reads the (narrower) Q/K/V widths from the weights.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    # It warns that attention_size differs from the input width: expected after head pruning.
    logging.disable(logging.WARNING)
    try:
        model = optimize_model(
            str(src), model_type="bert", num_heads=num_heads, hidden_size=attention_size, opt_level=1
        )
    finally:
        logging.disable(logging.NOTSET)
    model.save_model_to_file(str(dst))
    return dst


def quantize_int8(src: Path, dst: Path) -> Path:
    """Dynamic INT8 quantization for CPU (weights int8 per channel, activations quantized at run time).

    ``export_artifact`` then fixes the activation scales when it has calibration texts (calibrate.py).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Fused contrib ops (Attention, SkipLayerNormalization) defeat shape inference: say outputs are float.
    logging.disable(logging.WARNING)  # one INFO/WARNING line per tensor otherwise
    try:
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        logging.disable(logging.NOTSET)
    unfuse_skip_layer_norm(dst)
    return dst


def unfuse_skip_layer_norm(path: Path) -> int:
    """Rewrite each SkipLayerNormalization node of ``path`` as Add (+ Add bias) + LayerNormalization.

    Why: ONNX Runtime's CPU SkipLayerNormalization kernel is the slow way to do this (measured with
    ORT 1.32 on [14, 36, 384]: 990 us on one thread against 168 us for Add + Add + LayerNormalization),
    and it was 37% of the INT8 encoder's kernel time; unfused, the whole encoder ran 1.46x faster on
    the bench texts (BENCHMARKS.md). CUDA's fused kernel is fast, so only the CPU file is rewritten.
    The bias Add comes first so that ORT folds it into the MatMul before it; ``session.open_session``
    keeps ORT from fusing the pieces back at session start. Returns the number of nodes rewritten.
    """
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    graph = model.graph
    consumed = {name for node in graph.node for name in node.input} | {out.name for out in graph.output}
    nodes: list[Any] = []
    rewritten = 0
    for node in graph.node:
        if node.op_type != "SkipLayerNormalization":
            nodes.append(node)
            continue
        if any(name in consumed for name in node.output[1:3] if name):
            raise ValueError(f"{path}: {node.name} exposes its mean / inv_std_var; cannot unfuse")
        epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-12)
        x, skip, gamma = node.input[:3]
        beta = node.input[3] if len(node.input) > 3 else ""
        bias = node.input[4] if len(node.input) > 4 else ""
        if bias:  # first, so ORT folds it into the producing MatMul as that kernel's bias
            biased = f"{node.name}_biased"
            nodes.append(helper.make_node("Add", [x, bias], [biased], name=f"{node.name}_bias"))
            x = biased
        total = f"{node.name}_sum"
        nodes.append(helper.make_node("Add", [x, skip], [total], name=f"{node.name}_add"))
        if len(node.output) > 3 and node.output[3] in consumed:  # the residual sum, used downstream
            nodes.append(helper.make_node("Identity", [total], [node.output[3]], name=f"{node.name}_sum_out"))
        norm_inputs = [total, gamma, *([beta] if beta else [])]
        norm = helper.make_node("LayerNormalization", norm_inputs, [node.output[0]], name=f"{node.name}_ln")
        norm.attribute.extend([helper.make_attribute("axis", -1), helper.make_attribute("epsilon", epsilon)])
        nodes.append(norm)
        rewritten += 1
    if rewritten:
        del graph.node[:]
        graph.node.extend(nodes)
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
    return rewritten


def count_ops(path: Path, op_type: str) -> int:
    """How many ``op_type`` nodes the ONNX file at ``path`` holds."""
    import onnx

    return sum(node.op_type == op_type for node in onnx.load(str(path), load_external_data=False).graph.node)


def convert_fp16(src: Path, dst: Path) -> Path:
    """FP16 weights and compute for GPU; inputs/outputs keep their types (int64 in, float32 out)."""
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(src)))
    model.convert_float_to_float16(keep_io_types=True)
    model.save_model_to_file(str(dst))
    return dst


@dataclass(frozen=True)
class ExportCheck:
    """How closely an ONNX file reproduces the torch model on sample inputs."""

    file: str
    embedding_max_abs_diff: float
    embedding_min_cosine: float
    logits_max_abs_diff: dict[str, float]
    argmax_agreement: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {
            "embedding_max_abs_diff": round(self.embedding_max_abs_diff, 6),
            "embedding_min_cosine": round(self.embedding_min_cosine, 6),
            "logits_max_abs_diff": {k: round(v, 6) for k, v in self.logits_max_abs_diff.items()},
            "argmax_agreement": {k: round(v, 4) for k, v in self.argmax_agreement.items()},
        }


def check_export(
    wrapper: ExportWrapper, onnx_path: Path, input_ids: np.ndarray, attention_mask: np.ndarray
) -> ExportCheck:
    """Run torch and ONNX Runtime (CPU) on the same batch and compare the outputs."""
    from worker.model_build.session import open_session

    with torch.no_grad():
        expected = [
            t.numpy() for t in wrapper.eval()(torch.from_numpy(input_ids), torch.from_numpy(attention_mask))
        ]
    session = open_session(onnx_path)
    got = session.run(
        wrapper.output_names,
        {"input_ids": input_ids.astype(np.int64), "attention_mask": attention_mask.astype(np.int64)},
    )
    emb_t, emb_o = expected[0], got[0].astype(np.float32)
    cosine = (emb_t * emb_o).sum(-1) / (
        np.linalg.norm(emb_t, axis=-1) * np.linalg.norm(emb_o, axis=-1) + 1e-12
    )
    logits_diff: dict[str, float] = {}
    agreement: dict[str, float] = {}
    for name, want, have in zip(wrapper.output_names[1:], expected[1:], got[1:], strict=True):
        logits_diff[name] = float(np.abs(want - have.astype(np.float32)).max())
        agreement[name] = float((want.argmax(-1) == have.argmax(-1)).mean())
    return ExportCheck(
        file=onnx_path.name,
        embedding_max_abs_diff=float(np.abs(emb_t - emb_o).max()),
        embedding_min_cosine=float(cosine.min()),
        logits_max_abs_diff=logits_diff,
        argmax_agreement=agreement,
    )
