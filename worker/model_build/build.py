"""`finsignal model build`: fine-tune (teacher) -> prune -> distil (student) -> export -> check.

Stages write to ``work_dir`` (checkpoints, cached targets) so a rerun with ``--resume`` reuses each
checkpoint made with the same settings and training rows. The artifact folder gets only the shipped
files and the manifest with every figure needed to judge the model (dev split, export checks, pruning
plan, parameter counts).
"""

from __future__ import annotations

import copy
import hashlib
import json
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worker.model_build.artifact import TOKENIZER_NAME
from worker.model_build.base_model import BASE_MODEL_NAME, base_tokenizer_path, load_base_encoder
from worker.model_build.calibrate import sample_texts
from worker.model_build.checkpoint import load_checkpoint, save_checkpoint
from worker.model_build.data import (
    DataError,
    LabelledTexts,
    UnknownLabelsError,
    task_splits,
)
from worker.model_build.memory import MemorySpec
from worker.model_build.model import MultiTaskModel, TeacherEnsemble
from worker.model_build.prune import (
    apply_plan,
    gate_importance,
    layer_loss_rise,
    make_plan,
    prune_vocab,
    structure_of,
)
from worker.model_build.train import Distillation, TaskData, TrainConfig, evaluate, pad_batch, predict, train
from worker.model_build.vocab import id_map, kept_token_ids, write_pruned_tokenizer

TASKS = ("sentiment", "topic")
TEACHER_SEED_STRIDE = 8


@dataclass(frozen=True)
class PruneTarget:
    # 4 of 6 layers, 6 of 12 heads, 512 of 1536 FFN neurons: ~2.5x the dense INT8 throughput
    # (measured with `finsignal model speed`); depth is kept over width, distillation fills the gap.
    layers: int = 4
    heads: int = 6
    ffn: int = 512
    importance_batches: int = 48
    layer_batches: int = 16
    prune_vocab: bool = True


@dataclass(frozen=True)
class BuildOptions:
    sentiment_data: Path
    topic_data: Path
    out_dir: Path
    work_dir: Path = Path(".cache/model-build")
    seed: int = 13
    teachers: int = 1  # >1: the student distils the mean logits of that many teachers (seeds differ)
    threads: int | None = None
    resume: bool = False
    max_len: int = 64
    teacher_epochs: float | None = None
    student_epochs: float | None = None
    teacher: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3, lr=1e-4, layer_decay=0.85))
    student: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=3, lr=2e-4, layer_decay=0.9, emb_weight=0.2, teacher_pooled_weight=0.5
        )
    )
    teacher_refine: TrainConfig | None = field(
        default_factory=lambda: TrainConfig(
            epochs=2, lr=5e-5, head_lr=3e-4, layer_decay=0.9, task_repeats={"sentiment": 2}
        )
    )
    prune: PruneTarget = field(default_factory=PruneTarget)
    name: str = "finsignal-encoder"
    version: str = "1.0.0"
    limit: int | None = None  # rows per task (smoke runs and tests)
    calibration_fraction: float = 0.0  # of each train split held out of training (fusion gate fit)
    # Topics left out of training and of the head entirely (for measuring KB edits on unseen topics).
    exclude_topics: tuple[str, ...] = ()
    # The KB embedding through its own linear projection of the pooled vector (model.py), so the
    # geometry loss does not hold back the vector the heads read.
    retrieval_projection: bool = False
    # > 0: a second-generation teacher, fine-tuned from the base encoder for this many epochs on the
    # gold labels plus the first teacher's soft labels for both heads on every text (each set's texts
    # thereby get the other task's labels; born-again distillation, Furlanello et al. 2018). It then
    # replaces the first as the student's teacher and the accuracy baseline.
    self_distil_epochs: float = 0.0
    speed_rounds: int = 5  # pruned vs dense teacher INT8 throughput rounds (0: skip)
    # The k-NN memory head over the train split's embeddings (``memory.py``), added to the student and,
    # for a like-for-like accuracy baseline, to the dense teacher's artifact too. None: no memory.
    memory: MemorySpec | None = field(default_factory=MemorySpec)
    base_encoder: Any = None  # tests pass a tiny model; default: all-MiniLM-L6-v2
    base_tokenizer: Path | None = None
    argv: list[str] = field(default_factory=list)


def with_teacher_loss_weights(
    options: BuildOptions, geometry: float | None = None, contrastive: float | None = None
) -> BuildOptions:
    """``options`` with the teachers' extra loss weights set in both phases (None: keep; 0: no loss):
    ``geometry`` toward the original embedding, ``contrastive`` supervised-contrastive on topics."""
    changes: dict[str, Any] = {}
    for flag, field_name, weight in (
        ("--teacher-geometry-weight", "emb_weight", geometry),
        ("--teacher-contrastive-weight", "contrastive_weight", contrastive),
    ):
        if weight is None:
            continue
        if weight < 0:
            raise ValueError(f"{flag} must be >= 0 (got {weight})")
        changes[field_name] = weight
    refine = options.teacher_refine
    return replace(
        options,
        teacher=replace(options.teacher, **changes),
        teacher_refine=None if refine is None else replace(refine, **changes),
    )


def tokenize(tokenizer_path: Path, texts: list[str], max_len: int) -> list[list[int]]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_len)
    return [e.ids for e in tokenizer.encode_batch(texts)]


def _load_tasks(options: BuildOptions) -> dict[str, tuple[LabelledTexts, LabelledTexts]]:
    splits = {}
    for task, path in (("sentiment", options.sentiment_data), ("topic", options.topic_data)):
        exclude = options.exclude_topics if task == "topic" else ()
        try:
            parts = task_splits(path, task, options.calibration_fraction, exclude)
        except UnknownLabelsError as exc:
            raise DataError(f"--exclude-topic: {exc}") from exc
        train_set, dev_set = parts.train, parts.dev
        if options.limit:  # a random (seeded) slice: the files are sorted by label
            rng = np.random.default_rng(options.seed)
            train_set = train_set.subset(np.sort(rng.permutation(len(train_set))[: options.limit]))
            dev_set = dev_set.subset(np.sort(rng.permutation(len(dev_set))[: max(8, options.limit // 4)]))
        splits[task] = (train_set, dev_set)
    return splits


def run_build(options: BuildOptions) -> dict[str, Any]:
    from rich.console import Console

    console = Console(stderr=True)
    started = time.monotonic()
    if options.threads:
        torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)
    work = Path(options.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    tokenizer_path = Path(options.base_tokenizer or base_tokenizer_path())
    teacher_cfg = (
        options.teacher
        if options.teacher_epochs is None
        else replace(options.teacher, epochs=options.teacher_epochs)
    )
    student_cfg = (
        options.student
        if options.student_epochs is None
        else replace(options.student, epochs=options.student_epochs)
    )
    student_cfg = replace(student_cfg, seed=options.seed + 1)

    splits = _load_tasks(options)
    train_data = _train_data_key(splits)  # --resume reuses a checkpoint only if trained on these rows
    labels = {task: splits[task][0].label_names for task in TASKS}
    ids = {
        task: tuple(tokenize(tokenizer_path, s.texts, options.max_len) for s in splits[task])
        for task in TASKS
    }
    console.print(
        "data: " + ", ".join(f"{t} train {len(splits[t][0])} / dev {len(splits[t][1])}" for t in TASKS)
    )

    # --- 1. teachers: multi-task fine-tunes, embedding kept near the original's geometry -------
    base = options.base_encoder if options.base_encoder is not None else load_base_encoder(attention="sdpa")
    label_counts = {t: len(labels[t]) for t in TASKS}
    fresh = [
        MultiTaskModel(copy.deepcopy(base), label_counts, retrieval=options.retrieval_projection)
        for _ in range(max(1, options.teachers))
    ]
    targets = _original_embeddings(fresh[0], ids, work)
    train_tasks = {t: TaskData(ids[t][0], splits[t][0].labels, labels[t], targets[t][0]) for t in TASKS}
    dev_tasks = {t: TaskData(ids[t][1], splits[t][1].labels, labels[t], targets[t][1]) for t in TASKS}
    dense_params = _params(fresh[0].encoder)
    teacher_inputs = _TeacherInputs(
        train_tasks, dev_tasks, labels, options, console, tokenizer_path, train_data
    )
    members = [
        _fine_tune_teacher(model, index, teacher_cfg, teacher_inputs) for index, model in enumerate(fresh)
    ]
    # Teacher 0 is "the dense fine-tuned teacher": its INT8 export is the accuracy and speed
    # baseline, the student is pruned from it and learns its hidden states. With several teachers
    # the student's soft labels are the mean of their logits (an ensemble is the better target).
    teacher, teacher_dir = members[0]
    member_dev = [evaluate(model, dev_tasks) for model, _ in members]
    for index, figures in enumerate(member_dev):
        console.print(f"teacher {index} dev: " + _brief(figures))
    soft_teacher: MultiTaskModel | TeacherEnsemble = teacher
    ensemble_dev: dict[str, dict] | None = None  # type: ignore[type-arg]
    if len(members) > 1:
        soft_teacher = TeacherEnsemble([model for model, _ in members])
        ensemble_dev = evaluate(soft_teacher, dev_tasks)
        console.print("teacher ensemble dev: " + _brief(ensemble_dev))
    teacher_dev = member_dev[0]
    generation1_dev: dict[str, dict] | None = None  # type: ignore[type-arg]
    if options.self_distil_epochs > 0:
        generation1_dev = ensemble_dev if ensemble_dev is not None else teacher_dev  # already measured
        teacher, teacher_dir = _self_distil_teacher(
            MultiTaskModel(copy.deepcopy(base), label_counts, retrieval=options.retrieval_projection),
            soft_teacher,
            [path for _, path in members],
            teacher_cfg,
            teacher_inputs,
        )
        soft_teacher = teacher
        teacher_dev = evaluate(teacher, dev_tasks)
        console.print("teacher generation 2 dev: " + _brief(teacher_dev))

    # --- 2. prune: measured importance of layers, heads, FFN neurons; unused vocabulary --------
    student = copy.deepcopy(teacher)
    plan_batches = _importance_batches(train_tasks, options)

    def loss_fn(batch: tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        task, b_ids, b_mask, b_labels = batch
        return torch.nn.functional.cross_entropy(student(b_ids, b_mask).logits[task], b_labels)

    importance = gate_importance(student.encoder, plan_batches[: options.prune.importance_batches], loss_fn)
    importance.layer_loss_rise = layer_loss_rise(
        student.encoder, plan_batches[: options.prune.layer_batches], loss_fn
    )
    structure = structure_of(student.encoder)
    target = options.prune
    plan = make_plan(
        importance,
        min(target.layers, structure["layers"]),
        min(target.heads, structure["heads"][0]),
        min(target.ffn, structure["ffn"][0]),
    )
    apply_plan(student.encoder, plan)
    student_tokenizer = work / "student_tokenizer.json"
    token_map = None
    if target.prune_vocab:
        corpus = [text for t in TASKS for text in splits[t][0].texts]
        keep = kept_token_ids(tokenizer_path, corpus)
        old_vocab = student.encoder.embeddings.word_embeddings.num_embeddings
        prune_vocab(student.encoder, keep)
        write_pruned_tokenizer(tokenizer_path, student_tokenizer, keep)
        unk_new = int(np.searchsorted(keep, _unk_id(tokenizer_path)))
        token_map = torch.from_numpy(id_map(keep, old_vocab, unk_new))
    else:
        student_tokenizer.write_text(tokenizer_path.read_text())
    plan = replace(plan, vocab_size=int(student.encoder.embeddings.word_embeddings.num_embeddings))
    n_teacher = len(structure["heads"])
    layer_map = [teacher_layer + 1 for teacher_layer in plan.layers]
    layer_map[-1] = n_teacher  # the last student layer always learns the teacher's output
    pruned_dev = evaluate(student, _remap(dev_tasks, token_map))
    console.print(f"pruned (before distillation) dev: {_brief(pruned_dev)}")

    # --- 3. distil the pruned student from the dense fine-tuned teacher ------------------------
    student_dir = work / "student"
    student_key = {
        "teacher": str(teacher_dir),
        "teachers": [str(path) for _, path in members],
        "train_config": asdict(student_cfg),
        "train_data": train_data,
        "plan": plan.as_dict(),
        "retrieval": options.retrieval_projection,
    }
    if options.resume and _same_run(student_dir, student_key):
        student, _meta = load_checkpoint(student_dir)
        console.print(f"student: reusing {student_dir}")
    else:
        t0 = time.monotonic()
        train(
            student,
            train_tasks,
            student_cfg,
            distil=Distillation(teacher=soft_teacher, layer_map=layer_map, id_map=token_map),
            desc="student distil",
        )
        console.print(f"student distilled in {time.monotonic() - t0:.0f} s")
    student.eval()
    student_dev = evaluate(student, _remap(dev_tasks, token_map))
    console.print("student dev: " + _brief(student_dev))
    pruning = {
        **plan.as_dict(),
        "importance": "gradient of head/neuron gates (Michel et al. 2019); layers by loss rise when skipped",
        "layer_loss_rise": [round(float(x), 4) for x in importance.layer_loss_rise],
        "distillation_layer_map": layer_map,
    }
    meta = {
        **student_key,
        "labels": labels,
        "pruning": pruning,
        "parameters": {"dense": dense_params, "pruned": _params(student.encoder)},
        "max_tokens": options.max_len,
    }
    save_checkpoint(student, student_dir, meta)
    (student_dir / TOKENIZER_NAME).write_text(student_tokenizer.read_text())

    # --- 4. export INT8 + FP16 and score the shipped INT8 file on the dev split --------------
    metrics: dict[str, Any] = {
        "dev_split": {"fraction": 0.15, "seed": "worker.model_build.data.DEV_SEED", "stratified": True},
        "calibration_split": {
            "fraction_of_train": options.calibration_fraction,
            "seed": "worker.model_build.data.CALIBRATION_SEED",
            "stratified": True,
        },
        "train_rows": {task: len(splits[task][0]) for task in TASKS},
        "teacher_dev": _figures(teacher_dev),
        **(
            {
                "teacher_members_dev": [_figures(figures) for figures in member_dev],
                "teacher_ensemble_dev": _figures(ensemble_dev),
            }
            if ensemble_dev is not None
            else {}
        ),
        **(
            {
                "teacher_generation1_dev": _figures(generation1_dev),
                "self_distil_epochs": options.self_distil_epochs,
            }
            if generation1_dev is not None
            else {}
        ),
        "pruned_before_distillation_dev": _figures(pruned_dev),
        "student_torch_dev": _figures(student_dev),
    }
    command = "finsignal " + " ".join(shlex.quote(a) for a in options.argv) if options.argv else None
    # Fixed INT8 activation scales for both exports, measured on the same sample of training texts.
    calibration = sample_texts([text for task in TASKS for text in splits[task][0].texts])

    def write_student(reuse_onnx: bool) -> dict[str, Any]:
        # Written once to score the ONNX files, once more (ONNX kept) with the figures measured on them.
        extra = {
            "metrics": metrics,
            "build_command": command,
            "name": options.name,
            "version": options.version,
            **({"excluded_topics": list(options.exclude_topics)} if options.exclude_topics else {}),
        }
        return export_checkpoint(
            student_dir, options.out_dir, extra=extra, reuse_onnx=reuse_onnx, calibration_texts=calibration
        )

    write_student(reuse_onnx=False)
    # The dense fine-tuned teacher as an INT8 artifact too: the accuracy and speed baseline
    # (same architecture as dense all-MiniLM-L6-v2, plus the two tiny heads).
    teacher_artifact = work / "teacher-artifact"
    export_checkpoint(
        teacher_dir,
        teacher_artifact,
        fp16=False,
        extra={"name": "teacher-dense"},
        max_tokens=options.max_len,
        calibration_texts=calibration,
    )
    if options.memory is not None:
        from worker.model_build.memory import add_memory, check_memory, embed_texts

        metrics["int8_onnx_dev_without_memory"] = _onnx_dev(options.out_dir, splits)
        metrics["teacher_int8_onnx_dev_without_memory"] = _onnx_dev(teacher_artifact, splits)
        memory_train, memory_dev = splits[options.memory.task]
        data_path = options.topic_data if options.memory.task == "topic" else options.sentiment_data
        source = f"train split of {data_path.name}"
        teacher_keys = embed_texts(teacher_artifact, memory_train.texts)
        add_memory(teacher_artifact, teacher_keys, memory_train.labels, options.memory, source)
        keys = embed_texts(options.out_dir, memory_train.texts)  # also the check's reference keys
        add_memory(options.out_dir, keys, memory_train.labels, options.memory, source)
        metrics["memory_check"] = check_memory(
            options.out_dir, memory_dev.texts[:512], keys, memory_train.labels
        )
        console.print(f"memory head: {options.memory}, check {metrics['memory_check']}")
    metrics["int8_onnx_dev"] = _onnx_dev(options.out_dir, splits)
    metrics["teacher_int8_onnx_dev"] = _onnx_dev(teacher_artifact, splits)
    metrics["accuracy_lost_vs_teacher_int8"] = {
        task: round(
            metrics["teacher_int8_onnx_dev"][task]["accuracy"] - metrics["int8_onnx_dev"][task]["accuracy"], 4
        )
        for task in TASKS
    }
    if options.speed_rounds > 0:
        from worker.model_build.speed import compare

        texts = [text for task in TASKS for text in splits[task][1].texts]
        sample = [texts[i] for i in np.random.default_rng(0).permutation(len(texts))[:1024]]
        metrics["speed_int8_cpu"] = compare(
            {"dense_teacher_int8": teacher_artifact, "pruned_int8": Path(options.out_dir)},
            sample,
            batch_size=32,
            rounds=options.speed_rounds,
            threads=1,
        )
        console.print(f"speed: {metrics['speed_int8_cpu']}")
    metrics["build_seconds"] = round(time.monotonic() - started, 1)
    manifest = write_student(reuse_onnx=True)
    _summary(console, manifest)
    return manifest


def _teacher_dirs(work: Path, index: int) -> tuple[Path, Path]:
    """Teacher 0 keeps the historical folder names."""
    if index == 0:
        return work / "teacher", work / "teacher-refined"
    return work / f"teacher-{index}", work / f"teacher-{index}-refined"


@dataclass(frozen=True)
class _TeacherInputs:
    """What every teacher's training phases read: the tokenized rows, the labels, the build options,
    where to print, the tokenizer to copy beside each checkpoint and the rows' key for --resume."""

    train_tasks: dict[str, TaskData]
    dev_tasks: dict[str, TaskData]
    labels: dict[str, list[str]]
    options: BuildOptions
    console: Any
    tokenizer_path: Path
    train_data: str


def _fine_tune_teacher(
    teacher: MultiTaskModel, index: int, teacher_cfg: TrainConfig, inputs: _TeacherInputs
) -> tuple[MultiTaskModel, Path]:
    """Fine-tune (or, with --resume, reload one made with the same config and rows) teacher ``index``;
    its seed is options.seed + 8 * index, so teacher i of one build is teacher 0 of a build run with
    that seed."""
    options = inputs.options
    return _teacher_phases(
        teacher,
        "teacher" if index == 0 else f"teacher {index}",
        _teacher_dirs(Path(options.work_dir), index),
        replace(teacher_cfg, seed=options.seed + TEACHER_SEED_STRIDE * index),
        options.teacher_refine,
        inputs,
    )


# The second-generation teacher's losses: the cross-task soft labels are the new signal, so the head a
# batch has no gold label for counts as much as the other; no hidden-state or pooled-vector targets
# (same shape, fresh start).
_SELF_DISTIL_LOSSES: dict[str, Any] = {
    "kd_other_weight": 1.0,
    "hidden_weight": 0.0,
    "teacher_pooled_weight": 0.0,
}


def _self_distil_teacher(
    teacher: MultiTaskModel,
    generation1: MultiTaskModel | TeacherEnsemble,
    generation1_dirs: list[Path],
    teacher_cfg: TrainConfig,
    inputs: _TeacherInputs,
) -> tuple[MultiTaskModel, Path]:
    """Fine-tune ``teacher`` (a fresh copy of the base encoder) on the gold labels and the first
    generation's soft labels of both heads, then refine it as the first generation was; with --resume,
    reload checkpoints made the same way."""
    options = inputs.options
    folder = Path(options.work_dir) / "teacher-generation2"
    refine = options.teacher_refine
    return _teacher_phases(
        teacher,
        "teacher generation 2",
        (folder, folder.with_name(folder.name + "-refined")),
        replace(teacher_cfg, epochs=options.self_distil_epochs, seed=options.seed + 4, **_SELF_DISTIL_LOSSES),
        None if refine is None else replace(refine, **_SELF_DISTIL_LOSSES),
        inputs,
        distil=Distillation(teacher=generation1, layer_map=[]),
        key_extra={"generation1": [str(path) for path in generation1_dirs]},
    )


def _teacher_phases(
    teacher: MultiTaskModel,
    name: str,
    dirs: tuple[Path, Path],
    config: TrainConfig,
    refine: TrainConfig | None,
    inputs: _TeacherInputs,
    distil: Distillation | None = None,
    key_extra: dict[str, Any] | None = None,
) -> tuple[MultiTaskModel, Path]:
    """A teacher's fine-tune (``config``) and, unless ``refine`` is None or has no epochs, its warm
    restart (seed ``config.seed + 2``); each phase saved to its folder of ``dirs``, or reloaded from it
    with --resume when made with the same settings and rows."""
    first_dir, refined_dir = dirs
    options, console, dev_tasks = inputs.options, inputs.console, inputs.dev_tasks
    train_data = inputs.train_data
    key = {
        "train_config": asdict(config),
        "train_data": train_data,
        "retrieval": options.retrieval_projection,
        **(key_extra or {}),
    }

    def phase(
        model: MultiTaskModel,
        folder: Path,
        phase_key: dict[str, Any],
        cfg: TrainConfig,
        label: str,
        desc: str,
        done: str,
        before_training: Callable[[], None] | None = None,
    ) -> MultiTaskModel:
        if options.resume and _same_run(folder, phase_key):
            model, _meta = load_checkpoint(folder)
            console.print(f"{label}: reusing {folder}")
            return model
        if before_training is not None:
            before_training()
        t0 = time.monotonic()
        train(model, inputs.train_tasks, cfg, distil=distil, desc=desc)
        console.print(f"{name} {done} in {time.monotonic() - t0:.0f} s")
        save_checkpoint(model, folder, {"labels": inputs.labels, **phase_key})
        return model

    teacher = phase(teacher, first_dir, key, config, name, f"{name} fine-tune", "trained")
    teacher_dir = first_dir
    if refine is not None and refine.epochs > 0:
        # Warm restart at a lower LR, sentiment (the smaller, harder set) seen twice per epoch.
        refine_cfg = replace(refine, seed=config.seed + 2)
        refine_key = {**key, "train_config": asdict(refine_cfg), "phase1_config": key["train_config"]}
        phase1 = teacher

        def show_phase1() -> None:
            console.print(f"{name} after phase 1 dev: " + _brief(evaluate(phase1, dev_tasks)))

        label = f"{name} refine"
        teacher = phase(teacher, refined_dir, refine_key, refine_cfg, label, label, "refined", show_phase1)
        teacher_dir = refined_dir
    if not (teacher_dir / TOKENIZER_NAME).is_file():
        (teacher_dir / TOKENIZER_NAME).write_text(inputs.tokenizer_path.read_text())
    teacher.eval()
    return teacher, teacher_dir


def export_checkpoint(
    checkpoint: Path,
    out_dir: Path,
    fp16: bool = True,
    extra: dict[str, Any] | None = None,
    reuse_onnx: bool = False,
    max_tokens: int | None = None,
    calibration_texts: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Export a checkpoint written by `model build` (student or teacher) as an artifact folder.

    ``calibration_texts``: fix the INT8 file's activation scales on them (else they stay dynamic).
    """
    from worker.model_build.artifact import write_manifest
    from worker.model_build.export import export_artifact

    model, meta = load_checkpoint(checkpoint)
    extra = dict(extra or {})
    tokenizer = Path(checkpoint) / TOKENIZER_NAME
    if not tokenizer.is_file():
        tokenizer = base_tokenizer_path()
    manifest = {
        "name": extra.pop("name", "finsignal-encoder"),
        "version": extra.pop("version", "1.0.0"),
        "base_model": BASE_MODEL_NAME,
        "labels": meta["labels"],
        "parameters": meta.get("parameters", {"encoder": _params(model.encoder)}),
        "pruning": meta.get("pruning"),
        "retrieval_projection": model.retrieval is not None,
        **extra,
    }
    max_tokens = int(max_tokens or meta.get("max_tokens", 128))
    if reuse_onnx:  # only the manifest's figures changed: keep files, rewrite the manifest
        old = json.loads((Path(out_dir) / "manifest.json").read_text())
        old.update({k: v for k, v in manifest.items() if v is not None})
        return write_manifest(Path(out_dir), old, list(old["files"]))
    return export_artifact(
        Path(out_dir),
        model.encoder,
        tokenizer,
        manifest,
        heads=dict(model.heads),
        retrieval=model.retrieval,
        max_tokens=max_tokens,
        fp16=fp16,
        calibration_texts=calibration_texts,
    )


def _train_data_key(splits: dict[str, tuple[LabelledTexts, LabelledTexts]]) -> str:
    """Digest of every task's training texts and labels (changes with --calibration-fraction, --limit)."""
    digest = hashlib.sha256()
    for task in TASKS:
        train_set = splits[task][0]
        digest.update("\x00".join(train_set.texts).encode() + train_set.labels.tobytes())
    return digest.hexdigest()[:24]


def _same_run(checkpoint: Path, key: dict[str, Any]) -> bool:
    """Reuse a saved checkpoint only if its meta matches ``key`` (config, training rows, teacher, plan)."""
    meta_path = checkpoint / "meta.json"
    if not (checkpoint / "model.pt").is_file() or not meta_path.is_file():
        return False
    meta = json.loads(meta_path.read_text())
    return all(json.loads(json.dumps(value)) == meta.get(name) for name, value in key.items())


def _onnx_dev(model_dir: Path, splits: dict[str, tuple[LabelledTexts, LabelledTexts]]) -> dict[str, Any]:
    from worker.model_build.evaluate import OnnxClassifier, score

    classifier = OnnxClassifier(model_dir)
    return _figures({task: score(classifier, splits[task][1], task) for task in TASKS})


def _original_embeddings(model: MultiTaskModel, ids: dict[str, tuple], work: Path) -> dict[str, tuple]:
    """Pooled vectors of the untouched base encoder for every text (cached in the work folder)."""
    out: dict[str, tuple] = {}
    for task, parts in ids.items():
        arrays = []
        for split, rows in zip(("train", "dev"), parts, strict=True):
            cache = work / f"orig_emb_{task}_{split}_{len(rows)}.npy"
            if cache.is_file():
                arrays.append(np.load(cache))
                continue
            _, pooled = predict(model, rows)
            np.save(cache, pooled.astype(np.float32))
            arrays.append(pooled.astype(np.float32))
        out[task] = tuple(arrays)
    return out


def _importance_batches(tasks: dict[str, TaskData], options: BuildOptions) -> list[tuple]:
    rng = np.random.default_rng(options.seed)
    batches = []
    n = max(options.prune.importance_batches, options.prune.layer_batches)
    names = list(tasks)
    for i in range(n):
        task = names[i % len(names)]
        data = tasks[task]
        rows = rng.choice(len(data.ids), size=min(32, len(data.ids)), replace=False)
        b_ids, b_mask = pad_batch([data.ids[r] for r in rows])
        batches.append((task, b_ids, b_mask, torch.from_numpy(data.labels[rows])))
    return batches


def _remap(tasks: dict[str, TaskData], token_map: torch.Tensor | None) -> dict[str, TaskData]:
    if token_map is None:
        return tasks
    table = token_map.numpy()
    return {t: replace(d, ids=[table[np.asarray(r)].tolist() for r in d.ids]) for t, d in tasks.items()}


def _unk_id(tokenizer_path: Path) -> int:
    spec = json.loads(Path(tokenizer_path).read_text())
    return int(spec["model"]["vocab"][spec["model"].get("unk_token", "[UNK]")])


def _params(module: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def _figures(results: dict[str, dict]) -> dict[str, Any]:
    keep = (
        "n",
        "accuracy",
        "macro_f1",
        "embedding_cosine_to_original",
        "embedding_pairwise_spearman_vs_original",
        "embedding_knn10_overlap_vs_original",
    )
    return {
        task: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k in keep}
        for task, r in results.items()
    }


def _brief(results: dict[str, dict]) -> str:
    return "; ".join(f"{t} acc {r['accuracy']:.4f} F1 {r['macro_f1']:.4f}" for t, r in results.items())


def _summary(console: Any, manifest: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"{manifest['name']} {manifest['version']}")
    table.add_column("stage")
    for task in TASKS:
        table.add_column(f"{task} acc")
        table.add_column(f"{task} F1")
    for stage, figures in manifest["metrics"].items():
        if not isinstance(figures, dict) or not all(isinstance(figures.get(t), dict) for t in TASKS):
            continue
        row = [stage]
        for task in TASKS:
            row += [f"{figures[task]['accuracy']:.4f}", f"{figures[task]['macro_f1']:.4f}"]
        table.add_row(*row)
    console.print(table)
    params = manifest.get("parameters", {})
    sizes = ", ".join(f"{n} {e['bytes'] / 1e6:.1f} MB" for n, e in manifest["files"].items())
    console.print(f"parameters {params}; files: {sizes}")
