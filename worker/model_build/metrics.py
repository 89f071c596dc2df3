"""Classification metrics from label indices (torch-free, numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (truth.astype(np.int64), predicted.astype(np.int64)), 1)
    return matrix


def classification_report(truth: np.ndarray, predicted: np.ndarray, label_names: list[str]) -> dict[str, Any]:
    """accuracy, macro_f1, per-class precision/recall/f1/support and the confusion matrix."""
    n = len(label_names)
    matrix = confusion_matrix(truth, predicted, n)
    tp = np.diag(matrix).astype(np.float64)
    predicted_counts = matrix.sum(axis=0).astype(np.float64)
    support = matrix.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, predicted_counts, out=np.zeros(n), where=predicted_counts > 0)
    recall = np.divide(tp, support, out=np.zeros(n), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(n), where=denominator > 0)
    present = support > 0  # classes absent from the data do not drag macro-F1 down
    total = int(matrix.sum())
    return {
        "n": total,
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {
            name: {
                "precision": round(float(precision[i]), 4),
                "recall": round(float(recall[i]), 4),
                "f1": round(float(f1[i]), 4),
                "support": int(support[i]),
            }
            for i, name in enumerate(label_names)
        },
        "labels": list(label_names),
        "confusion_matrix": matrix.tolist(),
    }
