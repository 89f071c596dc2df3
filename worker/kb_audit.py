"""`finsignal kb audit --data FILE.jsonl [--kb FILE]`: which KB points fix and which break predictions.

Offline (no Redis, no broker): an expert checks a KB file against labelled messages before publishing
it. Each message is classified with and without the KB exactly as the worker fuses; every prediction the
KB changes is charged to the attended point that carried the new label with the most attention, so the
report can say "point X turned 7 right answers wrong" and the expert can fix or remove X.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from worker.cli import add_settings_flags, positive_int, settings_from_args
from worker.fusion import TASKS, Fusion, KnowledgeIndex
from worker.fusion_cli import FUSION_SETTINGS

BATCH = 64


def register_kb(kb_subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = kb_subparsers.add_parser(
        "audit", help="which KB points fix and which break predictions on a labelled JSONL file (offline)"
    )
    audit.add_argument(
        "--data", type=Path, required=True, help="JSONL with 'text' and a 'sentiment' and/or 'topic' label"
    )
    audit.add_argument(
        "--kb", type=Path, default=None, help="whole-KB file to audit (default: the starter KB)"
    )
    audit.add_argument("--task", choices=TASKS, default=None, help="one task (default: each the file labels)")
    audit.add_argument("--top", type=positive_int, default=10, help="points listed per table (default 10)")
    audit.add_argument("--json", action="store_true", help="print one JSON object")
    audit.add_argument(
        "--suggest",
        type=Path,
        default=None,
        metavar="DELTA.jsonl",
        help="write the messages the KB got wrong, with their labels, as a delta to review and "
        "`kb publish --delta`",
    )
    audit.add_argument(
        "--suggest-limit", type=positive_int, default=20, help="suggestions per task and kind (default 20)"
    )
    add_settings_flags(audit, only=FUSION_SETTINGS)
    audit.set_defaults(handler=_audit)


@dataclass
class TaskAudit:
    """Per message: the head's label, the fused label, the truth, the point charged (-1: none) and the
    most attended point (-1: none)."""

    head: np.ndarray
    fused: np.ndarray
    truth: np.ndarray
    charged: np.ndarray
    top_point: np.ndarray


def audit_task(
    encoder: Any, fusion: Fusion, index: KnowledgeIndex, texts: list[str], truth: np.ndarray, task: str
) -> TaskAudit:
    """Classify ``texts`` with and without the KB; labels are positions in ``index``'s label order."""
    from tqdm.auto import tqdm

    point_label = index.point_topic if task == "topic" else index.point_sentiment
    head, fused, charged, top_point = [], [], [], []
    for start in tqdm(range(0, len(texts), BATCH), desc=f"audit {task}", unit="batch", disable=None):
        out = encoder.encode(texts[start : start + BATCH])
        logits = out.topic_logits if task == "topic" else out.sentiment_logits
        probs, _, readout, _ = fusion.fuse_arrays(
            out.embedding, out.sentiment_logits, out.topic_logits, index
        )
        with_kb = probs[task].argmax(axis=1)
        head.append(logits.argmax(axis=1))
        fused.append(with_kb)
        charge = np.full(len(with_kb), -1, dtype=np.int64)
        top_point.append(readout.points[:, 0] if readout is not None else charge.copy())
        if readout is not None:
            points = readout.points  # highest attention first; -1 = empty slot
            carries = (points >= 0) & (point_label[np.maximum(points, 0)] == with_kb[:, None])
            first = carries.argmax(axis=1)
            found = carries.any(axis=1)
            charge[found] = points[found, first[found]]
        charged.append(charge)
    return TaskAudit(
        np.concatenate(head), np.concatenate(fused), truth, np.concatenate(charged), np.concatenate(top_point)
    )


SUGGESTION_KINDS = {
    "broke": "the KB turned the head's right answer wrong",
    "new_label_missed": "labelled with a KB-only label the fusion did not output",
    "new_label_wrong": "given a KB-only label it does not have",
}


def suggestions(
    result: TaskAudit, texts: list[str], index: KnowledgeIndex, task: str, limit: int
) -> dict[str, list[dict[str, Any]]]:
    """Delta upserts an expert may review and publish: the messages the KB got wrong, labelled right.

    Up to ``limit`` per kind (file order): where the KB broke a right answer (a counter-example), where a
    message of a KB-only topic was missed (one more exemplar), and where a KB-only topic was given to a
    message of another label (a counter-example). Each goes to the group of its most attended point.
    """
    from worker.schemas import load_schema

    max_chars = int(load_schema("kb_entry")["properties"]["text"]["maxLength"])  # a point's text cap
    labels = index.topics if task == "topic" else index.sentiments
    n_head = index.n_head_topics if task == "topic" else len(labels)
    wrong = result.fused != result.truth
    masks = {
        "broke": wrong & (result.fused != result.head) & (result.head == result.truth),
        "new_label_missed": wrong & (result.truth >= n_head),
        "new_label_wrong": wrong & (result.fused >= n_head),
    }
    out: dict[str, list[dict[str, Any]]] = {}
    for kind, mask in masks.items():
        out[kind] = []
        for row in np.flatnonzero(mask)[:limit]:
            point = int(result.top_point[row])
            text = texts[row][:max_chars]
            predicted = labels[int(result.fused[row])]
            out[kind].append(
                {
                    "op": "upsert",
                    "id": f"audit:{task}:{hashlib.sha256(text.encode()).hexdigest()[:12]}",
                    "kind": "exemplar",
                    "text": text,
                    task: labels[int(result.truth[row])],
                    "group": index.entries[point].group if point >= 0 else "macro",
                    "author": "kb audit",
                    "note": f"kb audit: {SUGGESTION_KINDS[kind]} (predicted {predicted})",
                }
            )
    return out


def summarise(result: TaskAudit, index: KnowledgeIndex, task: str, top: int) -> dict[str, Any]:
    """Accuracy with / without the KB, fixed and broken counts, and the points that did it."""
    changed = result.fused != result.head
    fixed = changed & (result.fused == result.truth)
    broken = changed & (result.head == result.truth)
    per_point: dict[int, dict[str, int]] = {}
    for kind, mask in (("fixed", fixed), ("broken", broken), ("other_changes", changed & ~fixed & ~broken)):
        for point in result.charged[mask]:
            counts = per_point.setdefault(int(point), {"fixed": 0, "broken": 0, "other_changes": 0})
            counts[kind] += 1

    def row(point: int) -> dict[str, Any]:
        entry = index.entries[point] if point >= 0 else None
        return {
            "id": entry.id if entry else None,
            "group": entry.group if entry else None,
            "label": getattr(entry, task) if entry else None,
            "text": entry.text if entry else "(no attended point carried the new label)",
            **per_point[point],
        }

    ranked = sorted(per_point, key=lambda p: (per_point[p]["fixed"] - per_point[p]["broken"], p))
    n = len(result.truth)
    return {
        "n": n,
        "accuracy_no_kb": float((result.head == result.truth).mean()) if n else 0.0,
        "accuracy_with_kb": float((result.fused == result.truth).mean()) if n else 0.0,
        "changed": int(changed.sum()),
        "fixed": int(fixed.sum()),
        "broken": int(broken.sum()),
        "points_that_broke": [row(p) for p in ranked if per_point[p]["broken"] > 0][:top],
        "points_that_fixed": [row(p) for p in reversed(ranked) if per_point[p]["fixed"] > 0][:top],
    }


def run_audit(
    settings: Any,
    data: Path,
    kb_path: Path | None,
    task: str | None,
    top: int,
    suggest: Path | None = None,
    suggest_limit: int = 20,
) -> dict[str, Any]:
    """The audit report (plain JSON types); raises DataError / KBFileError / ArtifactError on bad input."""
    from kb_sync.loader import DEFAULT_KB_PATH, load_kb_file
    from kb_sync.model import KBSnapshot
    from worker.classifier import serving_fusion
    from worker.encoder import Encoder
    from worker.model_build.data import labelled_tasks, load_labelled

    kb_file = load_kb_file(kb_path or DEFAULT_KB_PATH)
    tasks = [task] if task else labelled_tasks(data)
    encoder = Encoder.from_settings(settings)
    snapshot = KBSnapshot(version=0, entries=kb_file.entries, published_at="", author="kb audit")
    vectors = encoder.embed([e.text for e in kb_file.entries])
    index = KnowledgeIndex.build(snapshot, vectors, encoder.topics, encoder.sentiments)
    fusion = serving_fusion(settings, encoder)
    report: dict[str, Any] = {
        "data": str(data),
        "kb": str(kb_path or DEFAULT_KB_PATH),
        "kb_points": len(kb_file.entries),
        "model": {"name": encoder.name, "sha256": encoder.sha256},
        "fusion_params": "fitted" if fusion.params.meta else "zero-shot defaults",
        "tasks": {},
    }
    suggested: dict[str, dict[str, Any]] = {}  # id -> upsert line
    for name in tasks:
        # Labels the head lacks may still be KB-only labels of this KB (index.topics extends the head).
        labels = index.topics if name == "topic" else index.sentiments
        rows = load_labelled(data, name, list(labels))
        result = audit_task(encoder, fusion, index, rows.texts, rows.labels, name)
        report["tasks"][name] = summarise(result, index, name, top)
        if suggest is not None:
            by_kind = suggestions(result, rows.texts, index, name, suggest_limit)
            report["tasks"][name]["suggested"] = {kind: len(lines) for kind, lines in by_kind.items()}
            suggested.update((line["id"], line) for lines in by_kind.values() for line in lines)
    if suggest is not None:
        import orjson

        suggest.parent.mkdir(parents=True, exist_ok=True)
        suggest.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in suggested.values()))
        report["suggestions"] = {"path": str(suggest), "points": len(suggested)}
    return report


def _audit(args: argparse.Namespace) -> int:
    from kb_sync.loader import KBFileError
    from worker.model_build.artifact import ArtifactError
    from worker.model_build.data import DataError

    settings = settings_from_args(args)
    try:
        report = run_audit(
            settings, args.data, args.kb, args.task, args.top, args.suggest, args.suggest_limit
        )
    except (DataError, KBFileError, ArtifactError, OSError) as exc:
        print(f"finsignal kb audit: {exc}", file=sys.stderr)
        return 2
    if args.json:
        import orjson

        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _print(report)
    return 0


def _print(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(
        f"KB {report['kb']} ({report['kb_points']} points) on {report['data']}, "
        f"model {report['model']['name']}, fusion {report['fusion_params']}"
    )
    for task, figures in report["tasks"].items():
        console.print(
            f"[bold]{task}[/bold]: {figures['n']} messages, accuracy {figures['accuracy_no_kb']:.4f} without "
            f"the KB -> {figures['accuracy_with_kb']:.4f} with it; the KB changed {figures['changed']} "
            f"predictions: {figures['fixed']} fixed, {figures['broken']} broken"
        )
        for title, key in (
            ("points that broke right answers", "points_that_broke"),
            ("points that fixed wrong answers", "points_that_fixed"),
        ):
            if not figures[key]:
                continue
            table = Table(title=f"{task}: {title}")
            for column in ("broken", "fixed", "other", "id", "group", "label", "text"):
                table.add_column(column, overflow="fold")
            for item in figures[key]:
                table.add_row(
                    str(item["broken"]),
                    str(item["fixed"]),
                    str(item["other_changes"]),
                    item["id"] or "-",
                    item["group"] or "-",
                    item["label"] or "-",
                    item["text"],
                )
            console.print(table)
    if "suggestions" in report:
        suggestions = report["suggestions"]
        console.print(
            f"wrote {suggestions['points']} suggested points to {suggestions['path']}: review them, then "
            f"`finsignal kb publish --delta {suggestions['path']}`"
        )
