"""The KB edit-efficacy figure of `finsignal model eval-fusion --plot`: per topic, what an expert's 20
exemplars do to its recall and to the other topics' accuracy, against the issue's targets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

RECALL_TARGET = 0.7
MOVE_TARGET_POINTS = 0.5


def plot_edit_efficacy(per_topic: dict[str, dict[str, Any]], path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(per_topic, key=lambda name: per_topic[name]["recall_after"])
    rows = [per_topic[name] for name in names]
    y = np.arange(len(names))
    labels = [
        name if row["encoder_saw_topic"] else f"{name}  (never trained on)"
        for name, row in zip(names, rows, strict=True)
    ]
    fig, (recall_ax, move_ax) = plt.subplots(
        1, 2, figsize=(12, 0.32 * len(names) + 1.8), sharey=True, gridspec_kw={"width_ratios": [3, 2]}
    )
    height = 0.27
    settings = (
        ("recall_before", "no KB points of the topic", "#c7c7c7"),
        ("recall_starter_kb", "starter KB's own points", "#9ecae1"),
        ("recall_after", "20 exemplars published", "#08519c"),
    )
    for k, (key, label, color) in enumerate(settings):
        recall_ax.barh(y + (k - 1) * height, [row[key] for row in rows], height, label=label, color=color)
    recall_ax.axvline(
        RECALL_TARGET, color="#d62728", linestyle="--", linewidth=1, label=f"target {RECALL_TARGET}"
    )
    recall_ax.set_xlim(0, 1)
    recall_ax.set_yticks(y, labels, fontsize=8)
    recall_ax.set_xlabel("recall of the topic on held-back messages")
    recall_ax.legend(loc="best", fontsize=7, framealpha=0.9)

    moves = [100 * (row["other_accuracy_after"] - row["other_accuracy_before"]) for row in rows]
    colors = ["#d62728" if abs(m) > MOVE_TARGET_POINTS else "#31a354" for m in moves]
    move_ax.barh(y, moves, 0.6, color=colors)
    for bound in (-MOVE_TARGET_POINTS, MOVE_TARGET_POINTS):
        move_ax.axvline(bound, color="#d62728", linestyle="--", linewidth=1)
    move_ax.axvline(0, color="black", linewidth=0.6)
    move_ax.set_xlabel("change in accuracy on the other topics (points)")
    for label in move_ax.get_yticklabels():
        label.set_visible(False)
    for tick, row in zip(recall_ax.get_yticklabels(), rows, strict=True):
        if not row["encoder_saw_topic"]:
            tick.set_fontweight("bold")
    fig.suptitle(
        title or "KB edit efficacy: an expert publishes 20 exemplars of a topic the head lacks", fontsize=10
    )
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
