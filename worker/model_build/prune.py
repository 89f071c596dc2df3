"""Structural pruning of a BERT encoder: whole layers, attention heads (same count per layer), FFN
neurons and vocabulary rows. Smaller dense matrices speed up every runtime; zeros would not.

Importance is measured, not guessed:
- heads and FFN neurons: |dL/dg| of a gate g = 1 multiplied into each head's context vector / each
  neuron's activation (Michel et al. 2019, "Are Sixteen Heads Really Better than One?"), summed
  over training batches; head scores are normalised per layer;
- layers: the rise in loss when the layer is skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

LossFn = Callable[[nn.Module], torch.Tensor]


def _layers(encoder: Any) -> Any:
    return encoder.encoder.layer  # type: ignore[union-attr,return-value]


def structure_of(encoder: Any) -> dict[str, Any]:
    layers = _layers(encoder)
    return {
        "layers": len(layers),
        "heads": [int(layer.attention.self.num_attention_heads) for layer in layers],
        "head_size": int(layers[0].attention.self.attention_head_size) if len(layers) else 0,
        "ffn": [int(layer.intermediate.dense.out_features) for layer in layers],
        "vocab_size": int(encoder.embeddings.word_embeddings.num_embeddings),  # type: ignore[union-attr]
    }


def _slice_linear(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A new Linear keeping ``index`` along ``dim`` (0: outputs, 1: inputs) of the weight."""
    weight = linear.weight.detach().index_select(dim, index).clone()
    bias = linear.bias.detach().clone() if linear.bias is not None else None
    if dim == 0 and bias is not None:
        bias = bias.index_select(0, index).clone()
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    new.weight.data.copy_(weight)
    if bias is not None:
        new.bias.data.copy_(bias)
    return new


def prune_heads(layer: Any, keep: Iterable[int]) -> None:
    attention = layer.attention  # type: ignore[union-attr]
    size = int(attention.self.attention_head_size)
    heads = sorted(int(h) for h in keep)
    index = torch.tensor([h * size + k for h in heads for k in range(size)], dtype=torch.long)
    for name in ("query", "key", "value"):
        setattr(attention.self, name, _slice_linear(getattr(attention.self, name), index, 0))
    attention.output.dense = _slice_linear(attention.output.dense, index, 1)
    attention.self.num_attention_heads = len(heads)
    attention.self.all_head_size = len(heads) * size


def prune_ffn(layer: Any, keep: Iterable[int]) -> None:
    index = torch.tensor(sorted(int(i) for i in keep), dtype=torch.long)
    layer.intermediate.dense = _slice_linear(layer.intermediate.dense, index, 0)  # type: ignore[union-attr]
    layer.output.dense = _slice_linear(layer.output.dense, index, 1)  # type: ignore[union-attr]


def keep_layers(encoder: Any, keep: Iterable[int]) -> None:
    kept = sorted(int(i) for i in keep)
    layers = _layers(encoder)
    encoder.encoder.layer = nn.ModuleList([layers[i] for i in kept])  # type: ignore[union-attr]
    for new_index, layer in enumerate(encoder.encoder.layer):  # type: ignore[union-attr]
        layer.attention.self.layer_idx = new_index
    encoder.config.num_hidden_layers = len(kept)  # type: ignore[union-attr]


def prune_vocab(encoder: Any, keep_ids: np.ndarray) -> None:
    """Keep embedding rows ``keep_ids`` (ascending old ids); new id = position in ``keep_ids``."""
    old = encoder.embeddings.word_embeddings  # type: ignore[union-attr]
    index = torch.as_tensor(np.asarray(keep_ids, dtype=np.int64))
    new = nn.Embedding(len(index), old.embedding_dim, padding_idx=0)
    new.weight.data.copy_(old.weight.detach().index_select(0, index))
    encoder.embeddings.word_embeddings = new  # type: ignore[union-attr]
    encoder.config.vocab_size = len(index)  # type: ignore[union-attr]
    encoder.config.pad_token_id = 0  # type: ignore[union-attr]


def apply_structure(encoder: Any, structure: dict[str, Any]) -> None:
    """Reshape a freshly built encoder (from the pruned config) to a saved structure before loading
    its weights: heads and FFN widths per layer (layer count and vocab come from the config)."""
    for layer, heads, ffn in zip(_layers(encoder), structure["heads"], structure["ffn"], strict=True):
        if heads != layer.attention.self.num_attention_heads:
            prune_heads(layer, range(heads))
        if ffn != layer.intermediate.dense.out_features:
            prune_ffn(layer, range(ffn))


@dataclass
class Importance:
    heads: np.ndarray  # [layers, heads], normalised per layer
    neurons: list[np.ndarray]  # per layer [ffn]
    layer_loss_rise: np.ndarray | None = None  # [layers]


def gate_importance(
    encoder: Any, batches: Iterable[Any], loss_fn: Callable[[Any], torch.Tensor]
) -> Importance:
    """Sum of |dL/dgate| over ``batches``; ``loss_fn(batch)`` runs the model and returns the loss."""
    layers = _layers(encoder)
    head_gates = [torch.ones(int(x.attention.self.num_attention_heads), requires_grad=True) for x in layers]
    ffn_gates = [torch.ones(int(x.intermediate.dense.out_features), requires_grad=True) for x in layers]
    handles = []
    for layer, h_gate, f_gate in zip(layers, head_gates, ffn_gates, strict=True):
        size = int(layer.attention.self.attention_head_size)

        def head_hook(_module: nn.Module, args: tuple, gate: torch.Tensor = h_gate, size: int = size):  # type: ignore[type-arg]
            return (args[0] * gate.repeat_interleave(size),)

        def ffn_hook(_module: nn.Module, args: tuple, gate: torch.Tensor = f_gate):  # type: ignore[type-arg]
            return (args[0] * gate,)

        handles.append(layer.attention.output.dense.register_forward_pre_hook(head_hook))
        handles.append(layer.output.dense.register_forward_pre_hook(ffn_hook))
    head_score = [torch.zeros_like(g) for g in head_gates]
    ffn_score = [torch.zeros_like(g) for g in ffn_gates]
    was_training = encoder.training
    encoder.eval()  # no dropout: importance of the deterministic network
    try:
        for batch in batches:
            for gate in (*head_gates, *ffn_gates):
                gate.grad = None
            loss_fn(batch).backward()
            for score, gate in zip((*head_score, *ffn_score), (*head_gates, *ffn_gates), strict=True):
                score += gate.grad.abs()  # type: ignore[union-attr]
    finally:
        for handle in handles:
            handle.remove()
        encoder.zero_grad(set_to_none=True)
        encoder.train(was_training)
    heads = torch.stack(head_score).numpy() if head_score else np.zeros((0, 0))
    norms = np.linalg.norm(heads, axis=1, keepdims=True)
    heads = heads / np.where(norms > 0, norms, 1.0)
    return Importance(heads=heads, neurons=[s.numpy() for s in ffn_score])


@torch.no_grad()
def layer_loss_rise(encoder: Any, batches: list[Any], loss_fn: Callable[[Any], torch.Tensor]) -> np.ndarray:
    """Mean loss with each layer skipped minus the loss of the full encoder."""
    layers = _layers(encoder)
    encoder.eval()
    base = float(np.mean([float(loss_fn(b)) for b in batches]))
    rises = []
    for skip in range(len(layers)):
        encoder.encoder.layer = nn.ModuleList([x for i, x in enumerate(layers) if i != skip])  # type: ignore[union-attr]
        try:
            rises.append(float(np.mean([float(loss_fn(b)) for b in batches])) - base)
        finally:
            encoder.encoder.layer = layers  # type: ignore[union-attr]
    return np.asarray(rises)


@dataclass(frozen=True)
class PruningPlan:
    layers: list[int]  # teacher layers kept (ascending)
    heads: list[list[int]]  # per kept layer: teacher head indices kept
    ffn: list[list[int]]  # per kept layer: teacher neuron indices kept
    vocab_size: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "layers_kept": self.layers,
            "heads_kept": self.heads,
            "ffn_kept_per_layer": [len(f) for f in self.ffn],
            "vocab_size": self.vocab_size,
        }


def make_plan(importance: Importance, n_layers: int, n_heads: int, n_ffn: int) -> PruningPlan:
    """Keep the ``n_layers`` layers whose removal hurts most, and in each the top heads / neurons."""
    if importance.layer_loss_rise is None:
        raise ValueError("layer importance missing: run layer_loss_rise first")
    layers = sorted(np.argsort(-importance.layer_loss_rise)[:n_layers].tolist())
    heads = [sorted(np.argsort(-importance.heads[i])[:n_heads].tolist()) for i in layers]
    ffn = [sorted(np.argsort(-importance.neurons[i])[:n_ffn].tolist()) for i in layers]
    return PruningPlan(layers=layers, heads=heads, ffn=ffn)


def apply_plan(encoder: Any, plan: PruningPlan) -> None:
    keep_layers(encoder, plan.layers)
    for layer, heads, ffn in zip(_layers(encoder), plan.heads, plan.ffn, strict=True):
        prune_heads(layer, heads)
        prune_ffn(layer, ffn)
    encoder.config.intermediate_size = len(plan.ffn[0]) if plan.ffn else 0  # type: ignore[union-attr]
