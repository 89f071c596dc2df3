"""Fixed INT8 activation scales: a message's outputs stop depending on the other messages of its batch.

``quantize_dynamic`` makes each quantized activation's scale at run time from the min / max of the whole
batch tensor (``DynamicQuantizeLinear``). One long or unusual message therefore changes how every other
message in the same call is rounded: with the shipped model, 10 of 1,431 sentiment and 26 of 2,550 topic
dev labels changed between batch size 1 and 64, and dev accuracy moved up to 0.5 points with the
batching alone. Here each ``DynamicQuantizeLinear`` becomes a ``QuantizeLinear`` whose scale and zero
point were measured once, as the min / max of that activation over calibration texts, and each integer
MatMul is written as the ``MatMulIntegerToFloat`` ORT runs for the dynamic file (``fuse_integer_matmuls``).
The kernels are the same (``QAttention`` too), so the speed is, and each row is rounded the same way
whatever shares its batch. Values outside the calibrated range saturate.

Torch-free: it reads and rewrites the ONNX file an export wrote (``finsignal model calibrate``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from worker.model_build.artifact import ArtifactError, load_manifest, verify_artifact, write_manifest
from worker.model_build.tokenizer_files import encode_batch, runtime_tokenizer

DYNAMIC_OP = "DynamicQuantizeLinear"
CALIBRATION_BATCH = 32  # texts per calibration run, length-sorted like the worker's sub-batches
CALIBRATION_TEXTS = 1024  # how many texts the build samples for calibration
CALIBRATION_SEED = 11


class CalibrationError(ValueError):
    """The file cannot be given fixed scales (nothing to calibrate, or no texts)."""


def calibration_feeds(
    tokenizer_path: Path, texts: Sequence[str], max_tokens: int, batch_size: int = CALIBRATION_BATCH
) -> list[dict[str, np.ndarray]]:
    """Model inputs for ``texts``: length-sorted batches, each padded to its own longest text."""
    tokenizer = runtime_tokenizer(tokenizer_path, max_tokens)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    feeds = []
    for start in range(0, len(order), batch_size):
        ids, mask = encode_batch(tokenizer, [texts[i] for i in order[start : start + batch_size]])
        feeds.append({"input_ids": ids, "attention_mask": mask})
    return feeds


def sample_texts(
    texts: Sequence[str], limit: int = CALIBRATION_TEXTS, seed: int = CALIBRATION_SEED
) -> list[str]:
    """A fixed sample of at most ``limit`` texts (all of them when there are fewer)."""
    if len(texts) <= limit:
        return list(texts)
    rows = np.random.default_rng(seed).choice(len(texts), limit, replace=False)
    return [texts[i] for i in sorted(rows.tolist())]


def activation_ranges(model: Any, feeds: Sequence[dict[str, np.ndarray]]) -> dict[str, tuple[float, float]]:
    """(min, max) over every feed of each tensor a ``DynamicQuantizeLinear`` of ``model`` quantizes."""
    import onnx

    from worker.model_build.session import open_session

    names = list(dict.fromkeys(n.input[0] for n in model.graph.node if n.op_type == DYNAMIC_OP))
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in names:  # expose the float inputs of the dynamic quantizers as extra outputs
        probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = open_session(probe.SerializeToString())
    low = dict.fromkeys(names, np.inf)
    high = dict.fromkeys(names, -np.inf)
    for feed in feeds:
        for name, value in zip(names, session.run(names, feed), strict=True):
            low[name] = min(low[name], float(value.min()))
            high[name] = max(high[name], float(value.max()))
    return {name: (low[name], high[name]) for name in names}


def uint8_scale(low: float, high: float) -> tuple[np.float32, np.uint8]:
    """Scale and zero point as ``DynamicQuantizeLinear`` computes them, for the range [low, high]."""
    low, high = min(low, 0.0), max(high, 0.0)  # the range always holds 0, so padding zeros are exact
    scale = np.float32((high - low) / 255.0) if high > low else np.float32(1.0)
    zero_point = np.uint8(np.clip(np.round(-low / scale), 0, 255))
    return scale, zero_point


def fix_activation_scales(path: Path, feeds: Sequence[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Rewrite the INT8 file at ``path`` in place with calibrated, fixed activation scales."""
    import onnx
    from onnx import numpy_helper

    if not feeds:
        raise CalibrationError("no calibration texts: fixed scales need at least one batch")
    model = onnx.load(str(path))
    dynamic = [n for n in model.graph.node if n.op_type == DYNAMIC_OP]
    if not dynamic:
        raise CalibrationError(
            f"{path} has no {DYNAMIC_OP} node: it already has fixed scales or is not a dynamic INT8 "
            "export; re-export the model (`finsignal model export` / `model build`) to calibrate it again"
        )
    ranges = activation_ranges(model, feeds)
    nodes = []
    for node in model.graph.node:
        if node.op_type != DYNAMIC_OP:
            nodes.append(node)
            continue
        scale, zero_point = uint8_scale(*ranges[node.input[0]])
        # Same output names: the MatMulInteger / QAttention consumers and their dequantising Muls
        # read the scale and zero point as before, now as constants.
        model.graph.initializer.append(numpy_helper.from_array(np.array(scale), node.output[1]))
        model.graph.initializer.append(numpy_helper.from_array(np.array(zero_point), node.output[2]))
        nodes.append(
            onnx.helper.make_node(
                "QuantizeLinear",
                [node.input[0], node.output[1], node.output[2]],
                [node.output[0]],
                name=f"{node.name or node.output[0]}_fixed",
            )
        )
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    fused = fuse_integer_matmuls(model)
    onnx.save(model, str(path))
    return {
        "mode": "fixed",
        "quantizers": len(dynamic),
        "fused_matmuls": fused,
        "calibration_texts": int(sum(len(feed["input_ids"]) for feed in feeds)),
        "method": "min/max of each activation over the calibration texts (length-sorted batches of "
        f"{CALIBRATION_BATCH}); values outside saturate",
    }


def fuse_integer_matmuls(model: Any) -> int:
    """MatMulInteger -> Cast -> Mul(a_scale * b_scale) [-> Add(bias)] as one ``MatMulIntegerToFloat``.

    ORT makes this fusion itself when the activation scale comes from a DynamicQuantizeLinear; with a
    constant scale its constant folding merges a_scale * b_scale first and the pattern no longer
    matches, leaving the int32 product, the cast and two elementwise passes (2 threads: 0.86x the
    speed of the dynamic file). Written here, the kernel is the one the dynamic file runs.
    """
    import onnx

    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    graph_outputs = {o.name for o in graph.output}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def only_consumer(name: str, op_type: str) -> Any:
        users = consumers.get(name, [])
        if len(users) == 1 and users[0].op_type == op_type and name not in graph_outputs:
            return users[0]
        return None

    fused_node: dict[int, Any] = {}  # id(the MatMulInteger of a pattern) -> its MatMulIntegerToFloat
    drop: set[int] = set()
    for node in graph.node:
        if node.op_type != "MatMulInteger" or len(node.input) != 4:
            continue
        cast = only_consumer(node.output[0], "Cast")
        scale = cast and only_consumer(cast.output[0], "Mul")
        if not scale:
            continue
        product_name = next(i for i in scale.input if i != cast.output[0])
        product = producer.get(product_name)
        if product is None or product.op_type != "Mul" or not all(i in initializers for i in product.input):
            continue
        inputs = [
            node.input[0],
            node.input[1],
            product.input[0],
            product.input[1],
            node.input[2],
            node.input[3],
        ]
        output, absorbed = scale.output[0], [node, cast, scale]
        bias = only_consumer(output, "Add")
        if bias is not None:
            other = next((i for i in bias.input if i != output), None)
            if other in initializers and len(initializers[other].dims) == 1:
                inputs.append(other)
                output = bias.output[0]
                absorbed.append(bias)
        fused_node[id(node)] = onnx.helper.make_node(
            "MatMulIntegerToFloat", inputs, [output], name=f"{node.name}_to_float", domain="com.microsoft"
        )
        drop.update(id(n) for n in absorbed[1:])
        if len(consumers.get(product_name, [])) == 1:
            drop.add(id(product))
    nodes = [fused_node.get(id(n), n) for n in graph.node if id(n) not in drop]
    del graph.node[:]
    graph.node.extend(nodes)
    if fused_node and not any(op.domain == "com.microsoft" for op in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return len(fused_node)


def calibrate_artifact(
    model_dir: Path, texts: Sequence[str], source: str, command: str | None = None
) -> dict[str, Any]:
    """Give an artifact's CPU file fixed scales from ``texts``; record it in the manifest."""
    artifact = verify_artifact(model_dir)
    path = artifact.onnx_path("cpu")
    previous = artifact.manifest["files"][path.name]["sha256"]
    feeds = calibration_feeds(artifact.tokenizer_path, texts, artifact.max_tokens)
    summary = fix_activation_scales(path, feeds) | {"texts_from": source, "dynamic_file_sha256": previous}
    if command:
        summary["command"] = command
    manifest = load_manifest(model_dir)
    manifest["cpu_graph"] = {**(manifest.get("cpu_graph") or {}), "activation_scales": summary}
    write_manifest(Path(model_dir), manifest, list(manifest["files"]))
    return summary


def _labelled_splits(paths: Sequence[Path], manifest: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Per task, (train, dev) of each labelled file, split as the model's build split it."""
    from worker.model_build.data import guess_task, model_task_splits

    splits = {}
    for path in paths:
        task = guess_task(path)
        parts = model_task_splits(path, task, manifest)
        splits[task] = (parts.train, parts.dev)
    return splits


def rescore_dev(model_dir: Path, dev: dict[str, Any]) -> None:
    """Score the (rewritten) CPU file on the dev splits and update the manifest's INT8 figures.

    The figures measured on the dynamic file move to ``cpu_graph.activation_scales.dynamic_int8_onnx_dev``.
    """
    from worker.model_build.evaluate import OnnxClassifier, score

    classifier = OnnxClassifier(model_dir)
    figures = {}
    for task, data in dev.items():
        report = score(classifier, data, task)
        figures[task] = {"n": report["n"], **{k: round(report[k], 4) for k in ("accuracy", "macro_f1")}}
    manifest = load_manifest(model_dir)
    metrics = manifest.setdefault("metrics", {})
    scales = manifest["cpu_graph"]["activation_scales"]
    if "int8_onnx_dev" in metrics:
        scales["dynamic_int8_onnx_dev"] = metrics["int8_onnx_dev"]
    metrics["int8_onnx_dev"] = {**metrics.get("int8_onnx_dev", {}), **figures}
    teacher = metrics.get("teacher_int8_onnx_dev") or {}
    if all(task in teacher for task in figures):
        metrics["accuracy_lost_vs_teacher_int8"] = {
            task: round(teacher[task]["accuracy"] - figures[task]["accuracy"], 4) for task in figures
        }
    write_manifest(Path(model_dir), manifest, list(manifest["files"]))


def run_calibrate_command(args: argparse.Namespace) -> int:
    from worker.model_build.data import DataError, read_texts

    try:
        splits = {}
        if args.train_split:
            splits = _labelled_splits(args.data, load_manifest(args.model_dir))
            texts = [text for train, _ in splits.values() for text in train.texts]
        else:
            texts = read_texts(args.data)
        texts = sample_texts(texts, args.limit)
        files = ("train split of " if args.train_split else "") + ", ".join(p.name for p in args.data)
        source = f"{files}: fixed sample of {len(texts)} (seed {CALIBRATION_SEED})"
        command = " ".join(
            ["finsignal model calibrate --model-dir", str(args.model_dir), "--data"]
            + [p.name for p in args.data]
            + ["--limit", str(args.limit)]
            + (["--train-split"] if args.train_split else [])
        )
        summary = calibrate_artifact(args.model_dir, texts, source, command)
        if splits:  # the dev figures in the manifest were measured on the file just rewritten
            rescore_dev(args.model_dir, {task: dev for task, (_, dev) in splits.items()})
    except (ArtifactError, CalibrationError, DataError, OSError) as exc:
        print(f"finsignal model calibrate: {exc}", file=sys.stderr)
        return 2
    report = {"model_dir": str(args.model_dir), "activation_scales": summary}
    if splits:
        report["int8_onnx_dev"] = load_manifest(args.model_dir)["metrics"]["int8_onnx_dev"]
    print(json.dumps(report, indent=2))
    return 0
