"""One encoder, two classifier heads (sentiment, topic) on the mean-pooled token vectors.

The ``embedding`` the KB compares with its exemplars is the pooled vector itself, or, with
``retrieval=True``, a learned linear projection of it: the geometry loss then constrains only what a
linear map can recover from the pooled vector, not the vector the heads read. Measured through full
builds it did not pay: KB new-topic recall fell 0.825 -> 0.77, and the 0.84-point sentiment gain of a
teacher without the loss did not repeat on a second run (models/finsignal-encoder/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from worker.model_build.onnx_export import mean_pool


def make_head(hidden: int, n_classes: int, dropout: float = 0.1) -> nn.Sequential:
    # A small MLP lets the heads separate classes without bending the pooled vector (whose geometry
    # the KB similarity search relies on) as much as a linear probe would.
    return nn.Sequential(
        nn.Dropout(dropout),
        nn.Linear(hidden, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, n_classes),
    )


@dataclass
class Outputs:
    pooled: torch.Tensor  # what the heads read
    logits: dict[str, torch.Tensor]
    hidden_states: tuple[torch.Tensor, ...] | None
    embedding: torch.Tensor  # what the KB compares (the pooled vector, or its retrieval projection)


def identity_linear(size: int) -> nn.Linear:
    """A Linear that starts as the identity, so training starts from the base model's geometry."""
    layer = nn.Linear(size, size)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(size))
        layer.bias.zero_()
    return layer


class MultiTaskModel(nn.Module):
    def __init__(self, encoder: Any, label_counts: dict[str, int], retrieval: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        hidden = int(encoder.config.hidden_size)  # type: ignore[attr-defined]
        self.heads = nn.ModuleDict({task: make_head(hidden, n) for task, n in label_counts.items()})
        self.retrieval: nn.Linear | None = identity_linear(hidden) if retrieval else None

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, hidden_states: bool = False
    ) -> Outputs:
        out = self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=torch.zeros_like(input_ids),
            output_hidden_states=hidden_states,
        )
        pooled = mean_pool(out.last_hidden_state, attention_mask)
        logits = {task: head(pooled) for task, head in self.heads.items()}
        embedding = self.retrieval(pooled) if self.retrieval is not None else pooled
        return Outputs(pooled, logits, out.hidden_states if hidden_states else None, embedding)


class TeacherEnsemble(nn.Module):
    """Several fine-tuned teachers as one distillation target: the mean of their logits (soft
    labels), hidden states, pooled vector and embedding of the first (the one the student was pruned
    from)."""

    def __init__(self, members: list[MultiTaskModel]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.heads = members[0].heads

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, hidden_states: bool = False
    ) -> Outputs:
        first = self.members[0](input_ids, attention_mask, hidden_states=hidden_states)
        others = [member(input_ids, attention_mask) for member in self.members[1:]]
        logits = {
            task: torch.stack([first.logits[task], *(o.logits[task] for o in others)]).mean(0)
            for task in first.logits
        }
        return Outputs(first.pooled, logits, first.hidden_states, first.embedding)
