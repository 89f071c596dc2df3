"""A retrieval head inside the ONNX graph: a task's logits mixed with a k-NN vote over the training set.

The fine-tuned embedding places a message near the training messages of its class more often than the
head's decision boundary says: on the shipped model's topic dev split, a 16-NN vote over the 14,440
training embeddings alone scores 0.893 (head 0.889), and mixing the two 0.900 (docs/INTERNALS.md,
"Memory head"). The memory is that vote, appended to both ONNX files so the worker, ``model eval`` and
``model speed`` see it without a code path of their own:

    sims   = embedding @ keys^T                     (INT8 MatMulIntegerToFloat in the CPU file)
    w      = softmax(top-k sims / temperature)
    p_knn  = sum_k w_k one_hot(label_k)
    share  = weight * clip((max sims - from) / (at - from), 0, 1)
    p      = (1 - share) softmax(head_logits) + share p_knn
    logits = log p + logsumexp(head_logits)

The logsumexp term keeps each message's logit energy as the head gave it, since the KB gate reads that
energy as its out-of-distribution feature (``worker.fusion``); softmax(logits) is exactly p.

Torch-free: the keys are the artifact's own ``embedding`` output for the train split's texts.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from worker.fusion import logsumexp, softmax
from worker.model_build.artifact import ArtifactError, load_manifest, verify_artifact, write_manifest
from worker.model_build.calibrate import uint8_scale

PREFIX = "memory"  # names of every node and tensor the head adds


class MemoryHeadError(ValueError):
    """The memory head cannot be added (settings, data or model); the message says which."""


@dataclass(frozen=True)
class MemorySpec:
    """What the head does; the defaults were chosen on the topic dev split (INTERNALS, "Memory head")."""

    task: str = "topic"
    neighbours: int = 16
    temperature: float = 0.02
    weight: float = 0.5  # the vote's share once the nearest point is at least ``similar_at`` close
    # The share ramps from 0 at a nearest-point cosine of ``similar_from`` to ``weight`` at ``similar_at``:
    # a message of a topic the memory lacks has no close point (dev: 83% of such messages below 0.8,
    # median 0.73, vs 0.88 for all dev messages), so the vote leaves it to the head and the KB gate.
    similar_from: float = 0.8
    similar_at: float = 0.9

    def check(self) -> None:
        if self.neighbours < 1:
            raise MemoryHeadError(f"--memory-neighbours must be >= 1 (got {self.neighbours})")
        if not self.temperature > 0:
            raise MemoryHeadError(f"--memory-temperature must be > 0 (got {self.temperature})")
        if not 0 < self.weight <= 1:
            raise MemoryHeadError(f"--memory-weight must be in (0, 1] (got {self.weight})")
        if not -1 <= self.similar_from < self.similar_at <= 1:
            raise MemoryHeadError(
                "the memory's similarity ramp needs -1 <= from < to <= 1 "
                f"(got {self.similar_from}, {self.similar_at})"
            )

    def share(self, nearest: np.ndarray) -> np.ndarray:
        """The vote's share per row from the cosine of its nearest memory point."""
        ramp = (nearest - self.similar_from) / (self.similar_at - self.similar_from)
        return (self.weight * np.clip(ramp, 0.0, 1.0)).astype(np.float32)


def memory_probs(
    embedding: np.ndarray, keys: np.ndarray, labels: np.ndarray, n_classes: int, spec: MemorySpec
) -> tuple[np.ndarray, np.ndarray]:
    """The k-NN vote (B, n_classes) and each row's nearest-point cosine, in numpy: the reference the
    ONNX head is checked against."""
    sims = embedding.astype(np.float32) @ keys.astype(np.float32).T
    return votes_from_sims(sims, labels, n_classes, spec)


def votes_from_sims(
    sims: np.ndarray, labels: np.ndarray, n_classes: int, spec: MemorySpec
) -> tuple[np.ndarray, np.ndarray]:
    """The vote and nearest cosine from a (B, N) similarity matrix; a point at -inf is out of the memory
    for that row."""
    k = min(spec.neighbours, sims.shape[1])
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    top_sims = np.take_along_axis(sims, top, axis=1)
    scaled = top_sims / spec.temperature
    weights = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    votes = np.zeros((len(sims), n_classes), dtype=np.float32)
    np.add.at(votes, (np.repeat(np.arange(len(sims)), k), labels[top].ravel()), weights.ravel())
    return votes, top_sims.max(axis=1)


@dataclass
class MemoryVotes:
    """The memory head in numpy, for offline tools that must leave points out of it: a training row's own
    point (it would vote for its label) or every point of a topic that plays a new one (fusion fit)."""

    keys: np.ndarray  # (N, D) float32, the artifact's embedding of each memory text
    labels: np.ndarray  # (N,) label index in the model's order
    n_classes: int
    spec: MemorySpec

    def mixed(
        self,
        embedding: np.ndarray,
        head_logits: np.ndarray,
        own_rows: np.ndarray | None = None,
        without_label: int | None = None,
        chunk: int = 2048,
    ) -> np.ndarray:
        """The head's logits mixed with the vote; ``own_rows[i]`` (>= 0) is left out for row i."""
        parts = []
        for start in range(0, len(embedding), chunk):
            stop = min(start + chunk, len(embedding))
            sims = embedding[start:stop].astype(np.float32) @ self.keys.T
            if own_rows is not None:
                rows = np.flatnonzero(own_rows[start:stop] >= 0)
                sims[rows, own_rows[start:stop][rows]] = -np.inf
            if without_label is not None:
                sims[:, self.labels == without_label] = -np.inf
            votes, nearest = votes_from_sims(sims, self.labels, self.n_classes, self.spec)
            parts.append(mixed_logits(head_logits[start:stop], votes, self.spec.share(nearest)))
        return np.concatenate(parts) if parts else head_logits.copy()


def mixed_logits(head_logits: np.ndarray, votes: np.ndarray, share: np.ndarray) -> np.ndarray:
    """``log((1 - share) softmax(head) + share votes) + logsumexp(head)``, ``share`` per row (numpy
    reference)."""
    energy = logsumexp(head_logits)[:, None]
    share = share[:, None]
    probs = (1 - share) * np.exp(head_logits - energy) + share * votes
    return np.log(np.maximum(probs, 1e-30)) + energy


def quantize_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric INT8 per key (one scale per memory row): ``keys ~= q * scale[:, None]``."""
    scale = np.abs(keys).max(axis=1) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    return np.clip(np.round(keys / scale[:, None]), -127, 127).astype(np.int8), scale


def append_memory_head(
    model: Any,
    keys: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    spec: MemorySpec,
    int8_range: tuple[float, float] | None,
) -> None:
    """Rewrite ``model`` (an onnx ModelProto) in place: ``{task}_logits`` becomes the mixed logits.

    ``int8_range``: the embedding's (min, max); given, the similarity MatMul is INT8 (the CPU file),
    else the keys are stored as FP16 and multiplied in float32 (the GPU file: small next to the encoder).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    output = f"{spec.task}_logits"
    if any(node.name.startswith(f"{PREFIX}/") for node in graph.node):
        raise MemoryHeadError("the model already has a memory head; add it to the export without one")
    producers = [node for node in graph.node if output in node.output]
    outputs = [o.name for o in graph.output]
    if not producers or "embedding" not in outputs:
        raise MemoryHeadError(f"the model has no {output} and embedding outputs to build a memory head on")
    head = f"{PREFIX}/{spec.task}_head_logits"
    for node in producers:
        node.output[:] = [head if name == output else name for name in node.output]

    k = min(spec.neighbours, len(keys))
    onehot = np.zeros((len(keys), n_classes), dtype=np.float32)
    onehot[np.arange(len(keys)), labels] = 1.0

    def name(part: str) -> str:
        return f"{PREFIX}/{part}"

    def const(part: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(value, name(part)))
        return name(part)

    nodes = []
    if int8_range is not None:
        q_keys, key_scale = quantize_keys(keys)
        a_scale, a_zero = uint8_scale(*int8_range)
        nodes += [
            helper.make_node(
                "QuantizeLinear",
                ["embedding", const("a_scale", np.array(a_scale)), const("a_zero", np.array(a_zero))],
                [name("embedding_q")],
                name=name("quantize"),
            ),
            helper.make_node(
                "MatMulIntegerToFloat",
                [
                    name("embedding_q"),
                    const("keys_t", np.ascontiguousarray(q_keys.T)),
                    name("a_scale"),
                    const("key_scale", key_scale),
                    name("a_zero"),
                    const("key_zero", np.zeros(len(keys), np.int8)),
                ],
                [name("sims")],
                name=name("similarity"),
                domain="com.microsoft",
            ),
        ]
        if not any(op.domain == "com.microsoft" for op in model.opset_import):
            model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    else:
        nodes += [
            helper.make_node(
                "Cast",
                [const("keys_t_fp16", np.ascontiguousarray(keys.T).astype(np.float16))],
                [name("keys_t")],
                to=TensorProto.FLOAT,
                name=name("keys_float"),
            ),
            helper.make_node(
                "MatMul", ["embedding", name("keys_t")], [name("sims")], name=name("similarity")
            ),
        ]
    nodes += [
        helper.make_node(
            "TopK",
            [name("sims"), const("k", np.array([k], np.int64))],
            [name("top_sims"), name("top_rows")],
            axis=-1,
            name=name("top_k"),
        ),
        helper.make_node(
            "Mul",
            [name("top_sims"), const("inv_temperature", np.array(1.0 / spec.temperature, np.float32))],
            [name("scaled")],
            name=name("scale"),
        ),
        helper.make_node("Softmax", [name("scaled")], [name("w")], axis=-1, name=name("attention")),
        helper.make_node(
            "Gather",
            [const("onehot", onehot), name("top_rows")],
            [name("votes_k")],
            axis=0,
            name=name("labels"),
        ),
        helper.make_node(
            "Unsqueeze", [name("w"), const("last", np.array([-1], np.int64))], [name("w3")], name=name("w3")
        ),
        helper.make_node("Mul", [name("votes_k"), name("w3")], [name("weighted")], name=name("weighted")),
        helper.make_node(
            "ReduceSum",
            [name("weighted"), const("k_axis", np.array([1], np.int64))],
            [name("votes")],
            keepdims=0,
            name=name("vote"),
        ),
        helper.make_node("Softmax", [head], [name("p_head")], axis=-1, name=name("head_probs")),
        helper.make_node(
            "ReduceLogSumExp", [head], [name("energy")], axes=[-1], keepdims=1, name=name("energy")
        ),
        # share = weight * clip((nearest - from) / (at - from), 0, 1), one per row: (B, 1)
        helper.make_node(
            "ReduceMax", [name("top_sims")], [name("nearest")], axes=[-1], keepdims=1, name=name("nearest")
        ),
        helper.make_node(
            "Sub",
            [name("nearest"), const("similar_from", np.array(spec.similar_from, np.float32))],
            [name("above")],
            name=name("above"),
        ),
        helper.make_node(
            "Mul",
            [name("above"), const("ramp", np.array(1.0 / (spec.similar_at - spec.similar_from), np.float32))],
            [name("ramp_raw")],
            name=name("ramp_raw"),
        ),
        helper.make_node(
            "Clip",
            [
                name("ramp_raw"),
                const("zero", np.array(0.0, np.float32)),
                const("one", np.array(1.0, np.float32)),
            ],
            [name("ramp_clipped")],
            name=name("ramp_clip"),
        ),
        helper.make_node(
            "Mul",
            [name("ramp_clipped"), const("weight", np.array(spec.weight, np.float32))],
            [name("share")],
            name=name("share"),
        ),
        # p = p_head + share * (votes - p_head)
        helper.make_node("Sub", [name("votes"), name("p_head")], [name("toward")], name=name("toward")),
        helper.make_node("Mul", [name("toward"), name("share")], [name("step")], name=name("step")),
        helper.make_node("Add", [name("p_head"), name("step")], [name("p")], name=name("mix")),
        helper.make_node(
            "Max",
            [name("p"), const("floor", np.array(1e-30, np.float32))],
            [name("p_floor")],
            name=name("floor"),
        ),
        helper.make_node("Log", [name("p_floor")], [name("log_p")], name=name("log")),
        helper.make_node("Add", [name("log_p"), name("energy")], [output], name=name("logits")),
    ]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)


def spec_of(manifest: dict[str, Any]) -> MemorySpec | None:
    """The artifact's memory head settings (None: it has none)."""
    memory = manifest.get("memory")
    if not memory:
        return None
    return MemorySpec(**{k: memory[k] for k in asdict(MemorySpec())})


def strip_memory_head(path: Path | bytes) -> bytes:
    """The ONNX file at ``path`` without its memory head: ``{task}_logits`` are the head's own again."""
    import onnx

    model = onnx.load_from_string(path) if isinstance(path, bytes) else onnx.load(str(path))
    graph = model.graph
    kept = [node for node in graph.node if not node.name.startswith(f"{PREFIX}/")]
    for node in kept:
        node.output[:] = [_head_output(name) for name in node.output]
    del graph.node[:]
    graph.node.extend(kept)
    initializers = [t for t in graph.initializer if not t.name.startswith(f"{PREFIX}/")]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    return model.SerializeToString()


def _head_output(name: str) -> str:
    prefix = f"{PREFIX}/"
    if name.startswith(prefix) and name.endswith("_head_logits"):
        return name[len(prefix) : -len("_head_logits")] + "_logits"
    return name


def embed_texts(model_dir: Path, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """The artifact's CPU ``embedding`` for each text (length-sorted batches, input order kept)."""
    from worker.model_build.evaluate import OnnxClassifier

    return OnnxClassifier(model_dir).output(texts, "embedding", batch_size, progress="embed memory texts")


def add_memory(
    model_dir: Path, keys: np.ndarray, train_labels: np.ndarray, spec: MemorySpec, source: str
) -> dict[str, Any]:
    """Add the memory head to every ONNX file of ``model_dir`` and record it in the manifest.

    ``keys``: ``embed_texts(model_dir, train texts)``; the head leaves the ``embedding`` output as it is,
    so the same keys serve ``check_memory`` afterwards."""
    import onnx

    spec.check()
    model_dir = Path(model_dir)
    artifact = verify_artifact(model_dir)
    if artifact.manifest.get("memory"):
        raise MemoryHeadError(f"{model_dir} already has a memory head; re-export the model to add another")
    names = artifact.labels.get(spec.task)
    if not names:
        raise MemoryHeadError(f"{model_dir}: the manifest has no {spec.task} labels")
    if len(keys) == 0:
        raise MemoryHeadError(f"no {spec.task} training texts to build the memory from")
    int8_range = (float(keys.min()), float(keys.max()))
    for target, filename in artifact.manifest["onnx"].items():
        path = model_dir / filename
        model = onnx.load(str(path))
        append_memory_head(
            model, keys, np.asarray(train_labels), len(names), spec, int8_range if target == "cpu" else None
        )
        onnx.save(model, str(path))
    summary = {
        **asdict(spec),
        "points": len(keys),
        "from": source,
        "keys": {"cpu": "int8, one scale per point", "cuda": "fp16"},
        "embedding_range": [round(v, 6) for v in int8_range],
    }
    manifest = load_manifest(model_dir)
    manifest["memory"] = summary
    write_manifest(model_dir, manifest, list(manifest["files"]))
    return summary


def check_memory(
    model_dir: Path, texts: Sequence[str], keys: np.ndarray, train_labels: np.ndarray
) -> dict[str, float]:
    """The CPU file's mixed logits against the numpy reference (float ``keys``, as for ``add_memory``)
    on ``texts``."""
    import onnx

    from worker.model_build.session import open_session
    from worker.model_build.tokenizer_files import encode_batch, runtime_tokenizer

    artifact = verify_artifact(model_dir)
    spec = spec_of(artifact.manifest)
    if spec is None:
        raise MemoryHeadError(f"{model_dir} has no memory head")
    head_name = f"{PREFIX}/{spec.task}_head_logits"
    probe = onnx.load(str(artifact.onnx_path("cpu")))  # the head's own logits as an extra output
    probe.graph.output.append(onnx.helper.make_tensor_value_info(head_name, onnx.TensorProto.FLOAT, None))
    ids, mask = encode_batch(runtime_tokenizer(artifact.tokenizer_path, artifact.max_tokens), list(texts))
    embedding, head, got = open_session(probe.SerializeToString()).run(
        ["embedding", head_name, f"{spec.task}_logits"], {"input_ids": ids, "attention_mask": mask}
    )
    votes, nearest = memory_probs(embedding, keys, np.asarray(train_labels), head.shape[1], spec)
    want = mixed_logits(head, votes, spec.share(nearest))
    return {
        "prob_max_abs_diff": round(float(np.abs(softmax(got) - softmax(want)).max()), 6),
        "argmax_agreement": round(float((got.argmax(1) == want.argmax(1)).mean()), 4),
        "energy_max_abs_diff": round(float(np.abs(logsumexp(got) - logsumexp(head)).max()), 6),
        "texts": len(texts),
    }


def add_memory_with_figures(
    model_dir: Path, train: Any, dev: Any, spec: MemorySpec, source: str, command: str | None = None
) -> dict[str, Any]:
    """``add_memory`` from a task's train split, then the export check and the dev figures in the manifest.

    ``train`` / ``dev``: the task's ``LabelledTexts`` as the model's build split them. The task's INT8
    figures measured before move to ``metrics.int8_onnx_dev_without_memory``.
    """
    from worker.model_build.evaluate import OnnxClassifier, score

    keys = embed_texts(model_dir, train.texts)
    summary = add_memory(model_dir, keys, train.labels, spec, source)
    check = check_memory(model_dir, dev.texts[:512], keys, train.labels)
    report = score(OnnxClassifier(model_dir), dev, spec.task)
    manifest = load_manifest(model_dir)
    metrics = manifest.setdefault("metrics", {})
    before = metrics.get("int8_onnx_dev") or {}
    if spec.task in before:
        metrics.setdefault("int8_onnx_dev_without_memory", {})[spec.task] = before[spec.task]
    figures = {"n": report["n"], **{k: round(report[k], 4) for k in ("accuracy", "macro_f1")}}
    metrics["int8_onnx_dev"] = {**before, spec.task: {**before.get(spec.task, {}), **figures}}
    # ``accuracy_lost_vs_teacher_int8`` stays as it was: the teacher's figures have no memory head here
    # (``model build`` gives both one and compares them like for like).
    manifest["memory"]["check"] = check
    if command:
        manifest["memory"]["command"] = command
    write_manifest(Path(model_dir), manifest, list(manifest["files"]))
    return {**summary, "check": check, "int8_onnx_dev": figures}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The head's settings (shared by ``model memory`` and ``model build``)."""
    spec = MemorySpec()
    parser.add_argument(
        "--memory-neighbours",
        type=int,
        default=spec.neighbours,
        help="points that vote (default %(default)s)",
    )
    parser.add_argument(
        "--memory-temperature",
        type=float,
        default=spec.temperature,
        help="softmax temperature over their cosines (default %(default)s)",
    )
    parser.add_argument(
        "--memory-weight",
        type=float,
        default=spec.weight,
        help="the vote's share for a message with a close point (default %(default)s)",
    )
    parser.add_argument(
        "--memory-similar",
        type=float,
        nargs=2,
        default=(spec.similar_from, spec.similar_at),
        metavar=("FROM", "AT"),
        help="nearest-point cosine where the vote's share starts, and where it is full (default 0.8 0.9)",
    )


def spec_from_args(args: argparse.Namespace, task: str = "topic") -> MemorySpec:
    spec = MemorySpec(
        task=task,
        neighbours=args.memory_neighbours,
        temperature=args.memory_temperature,
        weight=args.memory_weight,
        similar_from=args.memory_similar[0],
        similar_at=args.memory_similar[1],
    )
    spec.check()
    return spec


def run_memory_command(args: argparse.Namespace) -> int:
    from worker.model_build.data import DataError, model_task_splits

    try:
        spec = spec_from_args(args, args.task)
        manifest = load_manifest(args.model_dir)
        parts = model_task_splits(args.data, spec.task, manifest)
        result = add_memory_with_figures(
            args.model_dir,
            parts.train,
            parts.dev,
            spec,
            f"train split of {args.data.name}",
            _command(args, spec),
        )
    except (ArtifactError, MemoryHeadError, DataError, OSError) as exc:
        print(f"finsignal model memory: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


def _command(args: argparse.Namespace, spec: MemorySpec) -> str:
    return (
        f"finsignal model memory --model-dir {args.model_dir} --data {args.data.name} --task {spec.task} "
        f"--memory-neighbours {spec.neighbours} --memory-temperature {spec.temperature} "
        f"--memory-weight {spec.weight} --memory-similar {spec.similar_from} {spec.similar_at}"
    )
