"""Multi-task training loop: fine-tuning (teacher) and distillation (pruned student) share it.

Each step takes one batch of one task (batches of both tasks are interleaved at random). Losses:
- task cross-entropy with label smoothing;
- embedding geometry: 1 - cos(embedding, target), target = the frozen original's sentence embedding,
  so KB similarity keeps working (the embedding is the pooled vector, or its retrieval projection);
  the student's pooled vector also learns the teacher's (the copied heads read it);
- teacher only, optional (``contrastive_weight``): supervised contrastive loss on the embedding over
  the batch's labels (off in the shipped build: docs/INTERNALS.md has why);
- student only: KL to the teacher's logits on *both* heads (soft labels for the unlabelled task
  too) and MSE to the teacher's hidden states of the mapped layers.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from worker.model_build.metrics import classification_report
from worker.model_build.model import MultiTaskModel, TeacherEnsemble


@dataclass(frozen=True)
class TaskData:
    """Pre-tokenized texts (unpadded id lists) of one task with labels and embedding targets."""

    ids: list[list[int]]
    labels: np.ndarray
    label_names: list[str]
    emb_targets: np.ndarray | None = None  # [n, hidden] target for the pooled vector


@dataclass(frozen=True)
class TrainConfig:
    epochs: float = 4.0
    batch_size: int = 32
    lr: float = 1e-4
    head_lr: float = 1e-3
    layer_decay: float = 0.85
    warmup_fraction: float = 0.06
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    emb_weight: float = 0.5
    # Supervised contrastive term on the KB embedding for batches of these tasks (Khosla et al. 2020):
    # texts of one label pull together, others push apart, so exemplars of a topic sit near its
    # messages. 0: off.
    contrastive_weight: float = 0.0
    contrastive_temperature: float = 0.1
    contrastive_tasks: tuple[str, ...] = ("topic",)
    teacher_pooled_weight: float = 0.5  # distillation only
    kd_alpha: float = 0.7  # share of the soft (teacher) loss in the task loss
    kd_temperature: float = 2.0
    kd_other_weight: float = 0.5  # KL on the head whose label the batch does not have
    hidden_weight: float = 1.0
    seed: int = 13
    task_weights: dict[str, float] = field(default_factory=dict)
    task_repeats: dict[str, int] = field(default_factory=dict)  # oversample a smaller task


@dataclass(frozen=True)
class Distillation:
    teacher: MultiTaskModel | TeacherEnsemble
    layer_map: list[int]  # student layer j learns teacher hidden state layer_map[j] (1-based outputs)
    id_map: torch.Tensor | None = None  # teacher token id -> student token id (vocabulary pruning)


def pad_batch(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


def epoch_batches(
    tasks: dict[str, TaskData], batch_size: int, rng: random.Random, repeats: dict[str, int] | None = None
) -> list[tuple[str, list[int]]]:
    """Shuffled batches of every task (a task seen ``repeats[task]`` times per epoch); within chunks
    texts are sorted by length to cut padding."""
    batches: list[tuple[str, list[int]]] = []
    for name, data in tasks.items():
        order = list(range(len(data.ids))) * max(1, (repeats or {}).get(name, 1))
        rng.shuffle(order)
        chunk = batch_size * 16
        for start in range(0, len(order), chunk):
            part = sorted(order[start : start + chunk], key=lambda i: len(data.ids[i]))
            batches.extend((name, part[i : i + batch_size]) for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def param_groups(model: MultiTaskModel, cfg: TrainConfig) -> list[dict]:  # type: ignore[type-arg]
    """Layer-wise LR decay: top layer at lr, each lower layer x layer_decay; heads at head_lr."""
    layers = model.encoder.encoder.layer  # type: ignore[union-attr]
    n = len(layers)
    groups: list[dict] = []  # type: ignore[type-arg]

    def add(params: list[tuple[str, nn.Parameter]], lr: float) -> None:
        decay = [p for name, p in params if p.ndim > 1]
        no_decay = [p for name, p in params if p.ndim <= 1]  # biases and LayerNorm
        groups.append({"params": decay, "lr": lr, "weight_decay": cfg.weight_decay})
        groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0})

    add(list(model.encoder.embeddings.named_parameters()), cfg.lr * cfg.layer_decay**n)  # type: ignore[union-attr]
    for i, layer in enumerate(layers):
        add(list(layer.named_parameters()), cfg.lr * cfg.layer_decay ** (n - 1 - i))
    add(list(model.heads.named_parameters()), cfg.head_lr)
    if model.retrieval is not None:  # a fresh layer like the heads
        add(list(model.retrieval.named_parameters()), cfg.head_lr)
    for group in groups:
        group["initial_lr"] = group["lr"]
    return [g for g in groups if g["params"]]


def lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def train(
    model: MultiTaskModel,
    tasks: dict[str, TaskData],
    cfg: TrainConfig,
    distil: Distillation | None = None,
    desc: str = "train",
    on_epoch_end=None,  # type: ignore[no-untyped-def]
) -> list[float]:
    """Train in place; returns the mean loss of each epoch."""
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    per_epoch = sum(
        math.ceil(len(t.ids) * max(1, cfg.task_repeats.get(name, 1)) / cfg.batch_size)
        for name, t in tasks.items()
    )
    total = max(1, int(round(per_epoch * cfg.epochs)))
    warmup = int(total * cfg.warmup_fraction)
    optimizer = torch.optim.AdamW(param_groups(model, cfg))
    if distil is not None:
        distil.teacher.eval()
    losses: list[float] = []
    step = 0
    epoch = 0
    progress = tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True)
    while step < total:
        model.train()
        running, count = 0.0, 0
        for task, rows in epoch_batches(tasks, cfg.batch_size, rng, cfg.task_repeats):
            if step >= total:
                break
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * lr_factor(step, total, warmup)
            loss = _step_loss(model, tasks, task, rows, cfg, distil)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            running += float(loss.detach())
            count += 1
            step += 1
            progress.update(1)
            if step % 20 == 0:
                progress.set_postfix(epoch=epoch + 1, loss=f"{running / count:.4f}")
        losses.append(running / max(1, count))
        epoch += 1
        if on_epoch_end is not None:
            on_epoch_end(epoch, model)
    progress.close()
    return losses


def _step_loss(
    model: MultiTaskModel,
    tasks: dict[str, TaskData],
    task: str,
    rows: list[int],
    cfg: TrainConfig,
    distil: Distillation | None,
) -> torch.Tensor:
    data = tasks[task]
    ids, mask = pad_batch([data.ids[i] for i in rows])
    labels = torch.from_numpy(data.labels[rows])
    weight = cfg.task_weights.get(task, 1.0)
    if distil is None:
        out = model(ids, mask)
        loss = weight * F.cross_entropy(out.logits[task], labels, label_smoothing=cfg.label_smoothing)
        if data.emb_targets is not None and cfg.emb_weight > 0:
            target = torch.from_numpy(data.emb_targets[rows])
            loss = loss + cfg.emb_weight * (1 - F.cosine_similarity(out.embedding, target, dim=-1)).mean()
        if cfg.contrastive_weight > 0 and task in cfg.contrastive_tasks:
            loss = loss + cfg.contrastive_weight * supervised_contrastive(
                out.embedding, labels, cfg.contrastive_temperature
            )
        return loss

    with torch.no_grad():
        t_out = distil.teacher(ids, mask, hidden_states=cfg.hidden_weight > 0)
    s_ids = distil.id_map[ids] if distil.id_map is not None else ids
    out = model(s_ids, mask, hidden_states=cfg.hidden_weight > 0)
    temperature = cfg.kd_temperature
    hard = F.cross_entropy(out.logits[task], labels, label_smoothing=cfg.label_smoothing)
    loss = weight * (1 - cfg.kd_alpha) * hard
    for head, logits in out.logits.items():
        kl = F.kl_div(
            F.log_softmax(logits / temperature, dim=-1),
            F.softmax(t_out.logits[head] / temperature, dim=-1),
            reduction="batchmean",
        ) * (temperature**2)
        share = cfg.kd_alpha * (weight if head == task else cfg.kd_other_weight)
        loss = loss + share * kl
    if cfg.hidden_weight > 0 and out.hidden_states is not None and t_out.hidden_states is not None:
        token_mask = mask.unsqueeze(-1).to(out.pooled.dtype)
        denom = token_mask.sum() * out.pooled.shape[-1]
        for j, t_layer in enumerate(distil.layer_map):
            diff = (out.hidden_states[j + 1] - t_out.hidden_states[t_layer]) * token_mask
            loss = loss + cfg.hidden_weight / len(distil.layer_map) * diff.pow(2).sum() / denom
    # Geometry: toward the original sentence embedding (what KB exemplars were written against) and
    # toward the teacher's pooled vector (what the copied heads read).
    if cfg.emb_weight > 0 and data.emb_targets is not None:
        target = torch.from_numpy(data.emb_targets[rows])
        loss = loss + cfg.emb_weight * (1 - F.cosine_similarity(out.embedding, target, dim=-1)).mean()
    if cfg.teacher_pooled_weight > 0:
        cosine = F.cosine_similarity(out.pooled, t_out.pooled, dim=-1)
        loss = loss + cfg.teacher_pooled_weight * (1 - cosine).mean()
    return loss


def supervised_contrastive(embedding: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """SupCon loss of one batch: for each text with at least one same-label batch-mate, the mean
    negative log-probability of its positives among all other texts (cosine / temperature)."""
    z = F.normalize(embedding, dim=-1)
    n = z.shape[0]
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(self_mask, float("-inf"))
    positive = (labels[:, None] == labels[None, :]) & ~self_mask
    anchors = positive.any(dim=1)
    if not bool(anchors.any()):
        return z.new_zeros(())
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    per_anchor = log_prob.masked_fill(~positive, 0.0).sum(dim=1) / positive.sum(dim=1).clamp(min=1)
    return -per_anchor[anchors].mean()


@torch.no_grad()
def predict(
    model: MultiTaskModel | TeacherEnsemble, ids: list[list[int]], batch_size: int = 128
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Logits of every head and the embeddings (what the KB compares), in input order."""
    model.eval()
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    logits: dict[str, list[np.ndarray]] = {name: [] for name in model.heads}
    pooled: list[np.ndarray] = []
    for start in range(0, len(order), batch_size):
        part = order[start : start + batch_size]
        batch_ids, mask = pad_batch([ids[i] for i in part])
        out = model(batch_ids, mask)
        for name, value in out.logits.items():
            logits[name].append(value.numpy())
        pooled.append(out.embedding.numpy())
    inverse = np.argsort(np.asarray(order))
    merged = {name: np.concatenate(parts)[inverse] for name, parts in logits.items()}
    return merged, np.concatenate(pooled)[inverse]


def evaluate(model: MultiTaskModel | TeacherEnsemble, dev: dict[str, TaskData]) -> dict[str, dict]:  # type: ignore[type-arg]
    """Dev-split report per task, plus mean cosine of the embedding to its target (geometry kept)."""
    results: dict[str, dict] = {}  # type: ignore[type-arg]
    for task, data in dev.items():
        logits, pooled = predict(model, data.ids)
        report = classification_report(data.labels, logits[task].argmax(-1), data.label_names)
        if data.emb_targets is not None:
            report.update(geometry_kept(pooled, data.emb_targets))
        results[task] = report
    return results


def _ranks(values: np.ndarray) -> np.ndarray:
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[np.argsort(values, kind="stable")] = np.arange(len(values))
    return ranks


def geometry_kept(
    vectors: np.ndarray, original: np.ndarray, sample: int = 500, k: int = 10
) -> dict[str, float]:
    """How much of the original embedding geometry survives (what KB similarity search relies on):
    mean cosine to the original vector, Spearman correlation of all pairwise cosines, and the
    overlap of each text's k nearest neighbours, on the first ``sample`` texts."""
    a = vectors[:sample] / np.linalg.norm(vectors[:sample], axis=-1, keepdims=True)
    b = original[:sample] / np.linalg.norm(original[:sample], axis=-1, keepdims=True)
    sim_a, sim_b = a @ a.T, b @ b.T
    upper = np.triu_indices(len(a), 1)
    rho = np.corrcoef(_ranks(sim_a[upper]), _ranks(sim_b[upper]))[0, 1] if len(a) > 2 else 1.0
    np.fill_diagonal(sim_a, -np.inf)
    np.fill_diagonal(sim_b, -np.inf)
    k = max(1, min(k, len(a) - 1))
    near_a, near_b = np.argsort(-sim_a, 1)[:, :k], np.argsort(-sim_b, 1)[:, :k]
    overlap = np.mean([len(set(x) & set(y)) / k for x, y in zip(near_a, near_b, strict=True)])
    return {
        "embedding_cosine_to_original": float((a * b).sum(-1).mean()) if len(a) else 0.0,
        "embedding_pairwise_spearman_vs_original": float(rho),
        "embedding_knn10_overlap_vs_original": float(overlap),
    }
