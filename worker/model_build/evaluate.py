"""`finsignal model eval`: score a shipped ONNX artifact on labelled JSONL.

Torch-free on purpose: it runs with onnxruntime + tokenizers only, exactly like the worker.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from worker.model_build.artifact import ArtifactError, verify_artifact
from worker.model_build.data import DataError, LabelledTexts, guess_task, load_labelled, split_dataset
from worker.model_build.metrics import classification_report
from worker.model_build.session import open_session
from worker.model_build.tokenizer_files import encode_batch, runtime_tokenizer


class OnnxClassifier:
    """The artifact's ONNX model + tokenizer (checked against the manifest first)."""

    def __init__(self, model_dir: Path, target: str = "cpu", threads: int = 0) -> None:
        probe = verify_artifact(model_dir, files=[])
        onnx_file = probe.onnx_path(target).name
        self.artifact = verify_artifact(model_dir, files=[onnx_file, "tokenizer.json"])
        self.tokenizer = runtime_tokenizer(self.artifact.tokenizer_path, self.artifact.max_tokens)
        path = self.artifact.onnx_path(target)
        try:
            self.session = open_session(path, target, threads)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ArtifactError(f"cannot load ONNX model {path}: {exc}") from exc
        self.outputs = [o.name for o in self.session.get_outputs()]

    def logits(self, texts: list[str], task: str, batch_size: int = 64) -> np.ndarray:
        name = f"{task}_logits"
        if name not in self.outputs:
            raise ArtifactError(
                f"{self.artifact.model_dir}: the model has no {task} head "
                f"(outputs: {', '.join(self.outputs)})"
            )
        return self.output(texts, name, batch_size)

    def output(
        self, texts: Sequence[str], name: str, batch_size: int = 64, progress: str | None = None
    ) -> np.ndarray:
        """Output ``name`` for each text, rows in input order; ``progress``: a progress bar's label."""
        from tqdm.auto import tqdm

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad less
        parts: list[np.ndarray] = []
        batches = range(0, len(order), batch_size)
        for start in tqdm(
            batches, desc=progress, unit="batch", leave=False, disable=None if progress else True
        ):
            chunk = [texts[i] for i in order[start : start + batch_size]]
            ids, mask = encode_batch(self.tokenizer, chunk)
            parts.append(self.session.run([name], {"input_ids": ids, "attention_mask": mask})[0])
        merged = np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
        return merged[np.argsort(np.asarray(order))]


def score(classifier: OnnxClassifier, data: LabelledTexts, task: str, batch_size: int = 64) -> dict[str, Any]:
    model_labels = classifier.artifact.labels.get(task)
    if model_labels is None:
        raise ArtifactError(f"{classifier.artifact.model_dir}: manifest has no {task} labels")
    # Data label indices follow the data's own order; score in the model's label order.
    if list(data.label_names) != list(model_labels):
        index = {name: i for i, name in enumerate(model_labels)}
        truth = np.asarray([index[data.label_names[i]] for i in data.labels], dtype=np.int64)
    else:
        truth = data.labels
    predicted = classifier.logits(data.texts, task, batch_size).argmax(-1)
    report = classification_report(truth, predicted, list(model_labels))
    report["task"] = task
    report["model_sha256"] = classifier.artifact.sha256
    return report


def plot_confusion(report: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(report["confusion_matrix"])
    labels = report["labels"]
    size = max(4.0, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{report['task']}: accuracy {report['accuracy']:.3f}, macro-F1 {report['macro_f1']:.3f}")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, col), value in np.ndenumerate(matrix):
        ax.text(
            col,
            row,
            str(value),
            ha="center",
            va="center",
            fontsize=7,
            color="white" if value > threshold else "black",
        )
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def run_eval_command(args: argparse.Namespace) -> int:
    try:
        task = args.task or guess_task(args.data)
        classifier = OnnxClassifier(args.model_dir, target=args.target)
        data = load_labelled(args.data, task, classifier.artifact.labels.get(task))
        if args.dev_split:
            data = split_dataset(data)[1]
        report = score(classifier, data, task, args.batch_size)
    except (ArtifactError, DataError) as exc:
        print(f"finsignal model eval: {exc}", file=sys.stderr)
        return 2
    report["data"] = str(args.data)
    report["onnx_file"] = classifier.artifact.onnx_path(args.target).name
    if args.target == "cpu":  # fixed: the figures do not depend on --batch-size or the text order
        report["int8_activation_scales"] = classifier.artifact.activation_scales
    if args.plot:
        report["plot"] = str(plot_confusion(report, args.plot))
    if args.json:
        print(json.dumps(report))
        return 0
    _print_report(report)
    return 0


def _print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"{report['task']} on {report['data']}: n={report['n']} accuracy={report['accuracy']:.4f} "
        f"macro-F1={report['macro_f1']:.4f} (model {report['model_sha256'][:12]}, {report['onnx_file']}"
        + (f", {report['int8_activation_scales']} INT8 scales" if "int8_activation_scales" in report else "")
        + ")"
    )
    table = Table()
    for column in ("class", "precision", "recall", "f1", "support"):
        table.add_column(column)
    for name, figures in report["per_class"].items():
        table.add_row(
            name, *(f"{figures[k]:.3f}" for k in ("precision", "recall", "f1")), str(figures["support"])
        )
    console.print(table)
    if report.get("plot"):
        console.print(f"confusion matrix: {report['plot']}")
