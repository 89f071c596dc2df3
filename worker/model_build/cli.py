"""`finsignal model build|eval|export|calibrate|speed|fit-fusion|eval-fusion`: offline model commands.

torch is imported only inside the handlers that train or export.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from worker.cli import positive_int
from worker.config import DEFAULT_MODEL_DIR


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    model = subparsers.add_parser("model", help="build, evaluate and export the encoder (offline)")
    commands = model.add_subparsers(dest="model_command", metavar="MODEL_COMMAND", required=True)

    export = commands.add_parser("export", help="export the dense base encoder or a trained checkpoint")
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--dense", action="store_true", help="the base all-MiniLM-L6-v2 (embedding only)")
    source.add_argument("--checkpoint", type=Path, help="a checkpoint folder written by `model build`")
    export.add_argument("--out", type=Path, required=True, help="artifact folder to write")
    export.add_argument("--max-tokens", type=int, default=128, help="tokenizer truncation length")
    export.add_argument("--no-fp16", action="store_true", help="skip the FP16 (GPU) file")
    export.add_argument(
        "--calibration-data",
        type=Path,
        nargs="+",
        default=None,
        help="JSONL with a text field: fix the INT8 activation scales on these texts (see `model calibrate`)",
    )
    export.set_defaults(handler=_export)

    calibrate = commands.add_parser(
        "calibrate",
        help="give an artifact's INT8 file fixed activation scales (outputs stop depending on batch-mates)",
    )
    calibrate.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR, help="artifact folder")
    calibrate.add_argument("--data", type=Path, nargs="+", required=True, help="JSONL with a text field")
    calibrate.add_argument("--limit", type=positive_int, default=1024, help="texts sampled from --data")
    calibrate.add_argument(
        "--train-split",
        action="store_true",
        help="--data are labelled files: leave their fixed dev split out (what `model build` calibrates on)",
    )
    calibrate.set_defaults(handler=_calibrate)

    from worker.model_build.memory import add_arguments as add_memory_arguments

    memory = commands.add_parser(
        "memory",
        help="add a k-NN memory head over the training set's embeddings to an artifact (topic by default)",
    )
    memory.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR, help="artifact folder")
    memory.add_argument(
        "--data", type=Path, required=True, help="the labelled JSONL the model was built on (its train split)"
    )
    memory.add_argument("--task", choices=("topic", "sentiment"), default="topic", help="whose logits")
    add_memory_arguments(memory)
    memory.set_defaults(handler=_memory)

    build = commands.add_parser("build", help="fine-tune, prune, distil and export the shipped encoder")
    build.add_argument("--sentiment-data", type=Path, required=True, help="JSONL with text + sentiment")
    build.add_argument("--topic-data", type=Path, required=True, help="JSONL with text + topic")
    build.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR, help="artifact folder to write")
    build.add_argument("--work-dir", type=Path, default=Path(".cache/model-build"), help="checkpoints")
    build.add_argument("--teacher-epochs", type=float, default=None, help="override teacher epochs")
    build.add_argument("--student-epochs", type=float, default=None, help="override student epochs")
    build.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    build.add_argument("--seed", type=int, default=13, help="random seed (data split uses its own)")
    build.add_argument(
        "--teachers",
        type=positive_int,
        default=1,
        help="fine-tune this many teachers (seeds SEED, SEED+8, ...); the student distils their mean logits",
    )
    build.add_argument(
        "--calibration-fraction",
        type=float,
        default=0.0,
        help="hold this share of each train split out of training, for `model fit-fusion` (e.g. 0.1)",
    )
    build.add_argument(
        "--exclude-topic",
        action="append",
        default=None,
        metavar="TOPIC",
        help="leave this topic out of training and of the head entirely (repeatable)",
    )
    build.add_argument(
        "--retrieval-projection",
        action="store_true",
        help="give the KB embedding its own linear projection of the pooled vector (heads read the vector)",
    )
    build.add_argument(
        "--teacher-geometry-weight",
        type=float,
        default=None,
        help="weight of the teachers' loss toward the original embedding geometry (default 0.5; 0: none)",
    )
    build.add_argument(
        "--teacher-contrastive-weight",
        type=float,
        default=None,
        help="weight of a supervised contrastive loss on the teachers' KB embedding over topic labels "
        "(texts of a topic pulled together; default 0: none)",
    )
    build.add_argument(
        "--teacher-self-distil",
        type=float,
        default=0.0,
        metavar="EPOCHS",
        help="train a second-generation teacher for EPOCHS on the gold labels plus the first teacher's "
        "soft labels of both heads on every text; the student learns from it (default 0: off)",
    )
    shape = build.add_argument_group(
        "student shape", "what pruning keeps (default 4 layers, 6 heads per layer, 512 FFN neurons per layer)"
    )
    shape.add_argument("--prune-layers", type=positive_int, default=None, help="encoder layers kept")
    shape.add_argument(
        "--prune-heads", type=positive_int, default=None, help="attention heads kept per layer"
    )
    shape.add_argument("--prune-ffn", type=positive_int, default=None, help="FFN neurons kept per layer")
    build.add_argument(
        "--no-memory",
        action="store_true",
        help="ship the topic head alone, without the k-NN memory head over its training rows",
    )
    add_memory_arguments(build)
    build.add_argument(
        "--resume",
        action="store_true",
        help="reuse checkpoints in --work-dir made with the same settings and training rows",
    )
    build.set_defaults(handler=_build)

    evaluate = commands.add_parser("eval", help="accuracy, macro-F1 and confusion matrix of an artifact")
    evaluate.add_argument("--data", type=Path, required=True, help="labelled JSONL (text + label field)")
    evaluate.add_argument("--task", choices=["sentiment", "topic"], default=None, help="default: guessed")
    evaluate.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR, help="artifact folder")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--plot", type=Path, default=None, help="write the confusion matrix as PNG")
    evaluate.add_argument("--dev-split", action="store_true", help="score only the fixed dev split")
    evaluate.add_argument("--batch-size", type=int, default=64, help="texts per inference batch")
    evaluate.add_argument("--target", choices=["cpu", "cuda"], default="cpu", help="which ONNX file")
    evaluate.set_defaults(handler=_eval)

    speed = commands.add_parser("speed", help="messages/s of the model vs a baseline artifact (same texts)")
    speed.add_argument("--data", type=Path, required=True, help="JSONL with a text field")
    speed.add_argument(
        "--baseline", type=Path, default=Path(".cache/minilm-dense"), help="e.g. the dense export"
    )
    speed.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR, help="artifact folder")
    speed.add_argument("--batch-size", type=int, default=32, help="texts per batch (same for both)")
    speed.add_argument("--limit", type=int, default=1024, help="texts sampled from --data")
    speed.add_argument("--rounds", type=int, default=5, help="alternating timed rounds (median kept)")
    speed.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    speed.add_argument("--json", action="store_true", help="print one JSON object")
    speed.set_defaults(handler=_speed)

    from worker.model_build.fusion_fit import add_arguments as add_fusion_arguments

    fit_fusion = commands.add_parser(
        "fit-fusion", help="fit the KB fusion (attention + gates), write fusion.json"
    )
    add_fusion_arguments(fit_fusion, DEFAULT_MODEL_DIR)
    fit_fusion.set_defaults(handler=_fit_fusion)
    eval_fusion = commands.add_parser(
        "eval-fusion", help="KB figures: dev accuracy, new-topic edits, corrections"
    )
    add_fusion_arguments(eval_fusion, DEFAULT_MODEL_DIR)
    eval_fusion.add_argument("--per-topic", action="store_true", help="include per-topic edit figures")
    eval_fusion.add_argument(
        "--exemplars",
        type=positive_int,
        default=20,
        help="exemplars published per new topic (default 20, the issue's; at most half its sampled rows)",
    )
    eval_fusion.add_argument(
        "--plot", type=Path, default=None, help="write the per-topic edit figures as a PNG chart"
    )
    eval_fusion.set_defaults(handler=_eval_fusion)


def _export(args: argparse.Namespace) -> int:
    from worker.model_build.calibrate import sample_texts
    from worker.model_build.data import DataError, read_texts
    from worker.model_build.export import export_dense

    texts = None
    if args.calibration_data:
        try:
            texts = sample_texts(read_texts(args.calibration_data))
        except DataError as exc:
            print(f"finsignal model export: {exc}", file=sys.stderr)
            return 2
    if args.dense:
        manifest = export_dense(
            args.out, max_tokens=args.max_tokens, fp16=not args.no_fp16, calibration_texts=texts
        )
    else:
        from worker.model_build.build import export_checkpoint

        manifest = export_checkpoint(
            args.checkpoint, args.out, fp16=not args.no_fp16, calibration_texts=texts
        )
    print(json.dumps({"out": str(args.out), "files": manifest["files"]}, indent=2))
    return 0


def _build(args: argparse.Namespace) -> int:
    from worker.model_build.build import BuildOptions, PruneTarget, run_build, with_teacher_loss_weights
    from worker.model_build.memory import MemoryHeadError, spec_from_args

    default_shape = PruneTarget()
    try:
        memory = None if args.no_memory else spec_from_args(args)
    except MemoryHeadError as exc:
        print(f"finsignal model build: {exc}", file=sys.stderr)
        return 2
    options = BuildOptions(
        sentiment_data=args.sentiment_data,
        topic_data=args.topic_data,
        out_dir=args.out,
        work_dir=args.work_dir,
        seed=args.seed,
        teachers=args.teachers,
        threads=args.threads,
        resume=args.resume,
        teacher_epochs=args.teacher_epochs,
        student_epochs=args.student_epochs,
        calibration_fraction=args.calibration_fraction,
        exclude_topics=tuple(args.exclude_topic or ()),
        retrieval_projection=args.retrieval_projection,
        self_distil_epochs=args.teacher_self_distil,
        memory=memory,
        prune=replace(
            default_shape,
            layers=args.prune_layers or default_shape.layers,
            heads=args.prune_heads or default_shape.heads,
            ffn=args.prune_ffn or default_shape.ffn,
        ),
        argv=sys.argv[1:],
    )
    try:
        options = with_teacher_loss_weights(
            options, args.teacher_geometry_weight, args.teacher_contrastive_weight
        )
    except ValueError as exc:
        print(f"finsignal model build: {exc}", file=sys.stderr)
        return 2
    from worker.model_build.data import DataError

    try:
        run_build(options)
    except DataError as exc:
        print(f"finsignal model build: {exc}", file=sys.stderr)
        return 2
    return 0


def _memory(args: argparse.Namespace) -> int:
    from worker.model_build.memory import run_memory_command

    return run_memory_command(args)


def _eval(args: argparse.Namespace) -> int:
    from worker.model_build.evaluate import run_eval_command

    return run_eval_command(args)


def _calibrate(args: argparse.Namespace) -> int:
    from worker.model_build.calibrate import run_calibrate_command

    return run_calibrate_command(args)


def _speed(args: argparse.Namespace) -> int:
    from worker.model_build.speed import run_speed_command

    return run_speed_command(args)


def _fit_fusion(args: argparse.Namespace) -> int:
    from worker.model_build.fusion_fit import run_fit_command

    return run_fit_command(args)


def _eval_fusion(args: argparse.Namespace) -> int:
    from worker.model_build.fusion_fit import run_eval_command

    return run_eval_command(args)
