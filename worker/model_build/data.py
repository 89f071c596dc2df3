"""Labelled JSONL data and the fixed stratified dev split (torch-free).

Each line is an object with ``text`` and the label field (``sentiment`` or ``topic``); lines with a
null label are skipped (the topic file has ``sentiment: null``). Bad lines raise a ``DataError``
naming the file and line, so nothing is dropped silently.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SENTIMENT_LABELS = ["negative", "neutral", "positive"]
DEV_FRACTION = 0.15
DEV_SEED = 20240601  # fixed: the dev split must never move between runs
# A second split, carved out of train: rows the encoder never trains on, so the KB fusion gate can be
# fitted where the head is as (un)sure as on new text. Its fraction is a build option in the manifest.
CALIBRATION_SEED = 20261129


class DataError(ValueError):
    """A data file is missing or malformed; the message names the file and line."""


class UnknownLabelsError(DataError):
    """Labels asked for by name (e.g. topics to leave out) that the data does not have."""


@dataclass(frozen=True)
class LabelledTexts:
    texts: list[str]
    labels: np.ndarray  # int64 indices into label_names
    label_names: list[str]

    def subset(self, indices: np.ndarray) -> LabelledTexts:
        return LabelledTexts([self.texts[i] for i in indices], self.labels[indices], self.label_names)

    def in_label_order(self, names: Sequence[str]) -> LabelledTexts:
        """These rows with labels re-indexed to ``names`` (a model's label order, a superset of ours)."""
        unknown = sorted(set(self.label_names) - set(names))
        if unknown:
            raise UnknownLabelsError(f"labels {unknown} are not among the model's labels {list(names)}")
        index = np.array([list(names).index(name) for name in self.label_names], dtype=np.int64)
        return LabelledTexts(self.texts, index[self.labels] if len(self) else self.labels, list(names))

    def __len__(self) -> int:
        return len(self.texts)

    def without_labels(self, names: Sequence[str]) -> LabelledTexts:
        """The rows whose label is not one of ``names``; labels re-indexed over the names left."""
        unknown = sorted(set(names) - set(self.label_names))
        if unknown:
            raise UnknownLabelsError(f"labels {unknown} are not in the data (labels: {self.label_names})")
        dropped = set(names)
        kept = [name for name in self.label_names if name not in dropped]
        new_index = {self.label_names.index(name): i for i, name in enumerate(kept)}
        rows = np.flatnonzero(np.isin(self.labels, list(new_index)))
        labels = np.asarray([new_index[int(label)] for label in self.labels[rows]], dtype=np.int64)
        return LabelledTexts([self.texts[i] for i in rows], labels, kept)


def read_texts(paths: Sequence[Path]) -> list[str]:
    """The ``text`` field of every non-blank line of each JSONL file, in order."""
    texts: list[str] = []
    for path in paths:
        for number, row in _rows(path):
            text = row.get("text")
            if not isinstance(text, str):
                raise DataError(f"{path}:{number}: needs a string field 'text'")
            texts.append(text)
    if not texts:
        raise DataError(f"no texts in {', '.join(map(str, paths))}")
    return texts


def guess_task(path: Path) -> str:
    """``topic`` if the file has topic labels, else ``sentiment`` (for commands taking one ``--task``)."""
    tasks = labelled_tasks(path)
    return "topic" if "topic" in tasks else tasks[0]


def labelled_tasks(path: Path) -> list[str]:
    """The tasks ("sentiment", "topic") with at least one label in the JSONL file ``path``."""
    found: set[str] = set()
    for _, row in _rows(path):
        found.update(task for task in ("sentiment", "topic") if row.get(task) is not None)
    if not found:
        raise DataError(f"{path}: no line has a 'sentiment' or 'topic' label; pass --task")
    return sorted(found)


def load_labelled(path: Path, task: str, label_names: list[str] | None = None) -> LabelledTexts:
    """Read ``text`` + ``task`` label; ``label_names`` fixes the class order (else derived)."""
    texts: list[str] = []
    raw: list[str] = []
    order: dict[str, int] = {}
    for number, row in _rows(path):
        label = row.get(task)
        if label is None:
            continue
        text = row.get("text")
        if not isinstance(text, str) or not isinstance(label, str):
            raise DataError(f"{path}:{number}: needs string fields 'text' and '{task}'")
        texts.append(text)
        raw.append(label)
        if isinstance(row.get("label_orig"), int):
            order.setdefault(label, row["label_orig"])
    if not texts:
        raise DataError(f"{path}: no lines with a '{task}' label")
    if label_names is None:
        if task == "sentiment":
            label_names = list(SENTIMENT_LABELS)
        else:  # the source's label id order when present (stable across runs), else alphabetical
            label_names = sorted(set(raw), key=lambda name: (order.get(name, 1 << 30), name))
    index = {name: i for i, name in enumerate(label_names)}
    unknown = sorted(set(raw) - set(index))
    if unknown:
        raise DataError(f"{path}: labels {unknown} are not among the model's {task} labels {label_names}")
    return LabelledTexts(texts, np.asarray([index[label] for label in raw], dtype=np.int64), label_names)


def stratified_split(
    labels: np.ndarray, fraction: float = DEV_FRACTION, seed: int = DEV_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """(train, dev) index arrays: ``fraction`` of every class goes to dev, chosen with a fixed seed."""
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    dev: list[np.ndarray] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = members[rng.permutation(len(members))]
        n_dev = int(round(len(members) * fraction))
        dev.append(members[:n_dev])
        train.append(members[n_dev:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(dev))


def split_dataset(data: LabelledTexts) -> tuple[LabelledTexts, LabelledTexts]:
    train, dev = stratified_split(data.labels)
    return data.subset(train), data.subset(dev)


@dataclass(frozen=True)
class TaskSplits:
    """A build's partition of one task's file: what the model trained on, was scored on, never saw."""

    train: LabelledTexts
    dev: LabelledTexts
    calibration: LabelledTexts  # held out of training for the fusion gate fit (empty: none)
    # Rows of each excluded label, per split name ("train", "dev", "calibration"); label_names of each
    # part keep the full data's labels, so a row's label still names its topic.
    excluded: dict[str, dict[str, LabelledTexts]]


def task_splits(
    path: Path, task: str, calibration_fraction: float = 0.0, exclude: Sequence[str] = ()
) -> TaskSplits:
    """Load ``path`` and split it exactly as ``model build`` does.

    The dev and calibration splits are drawn on every label first, so leaving labels out (``exclude``)
    keeps the other labels' rows where a full build puts them.
    """
    train, dev = split_dataset(load_labelled(path, task))
    train, calibration = split_calibration(train, calibration_fraction)
    parts = {"train": train, "dev": dev, "calibration": calibration}
    if not exclude:
        return TaskSplits(train, dev, calibration, {})
    kept = {split: part.without_labels(exclude) for split, part in parts.items()}
    excluded = {
        name: {
            split: part.subset(np.flatnonzero(part.labels == part.label_names.index(name)))
            for split, part in parts.items()
        }
        for name in exclude
    }
    return TaskSplits(kept["train"], kept["dev"], kept["calibration"], excluded)


def model_task_splits(path: Path, task: str, manifest: dict[str, Any]) -> TaskSplits:
    """``task_splits`` with the partition a model's build used (its manifest's calibration share and
    excluded topics), the kept rows' labels in the model's order."""
    fraction = float(manifest.get("metrics", {}).get("calibration_split", {}).get("fraction_of_train", 0.0))
    excluded = manifest.get("excluded_topics", []) if task == "topic" else []
    parts = task_splits(path, task, fraction, excluded)
    names = (manifest.get("labels") or {}).get(task)
    if not names:
        return parts
    try:
        train, dev, calibration = (
            part.in_label_order(names) for part in (parts.train, parts.dev, parts.calibration)
        )
    except UnknownLabelsError as exc:
        raise DataError(f"{path}: {exc}") from exc
    return TaskSplits(train, dev, calibration, parts.excluded)


def split_calibration(train: LabelledTexts, fraction: float) -> tuple[LabelledTexts, LabelledTexts]:
    """(fit, calibration) parts of a train split; ``fraction`` 0 keeps every row for fitting."""
    if not 0.0 <= fraction < 0.5:
        raise ValueError(f"calibration fraction must be in [0, 0.5), got {fraction}")
    if fraction == 0.0:
        return train, train.subset(np.zeros(0, dtype=np.int64))
    fit, calibration = stratified_split(train.labels, fraction, CALIBRATION_SEED)
    return train.subset(fit), train.subset(calibration)


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of the JSONL file ``path``; bad lines raise."""
    with _open(path) as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                yield number, _parse(line, path, number)


def _open(path: Path):  # type: ignore[no-untyped-def]
    try:
        return Path(path).open(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read data file {path}: {exc.strerror}") from exc


def _parse(line: str, path: Path, number: int) -> dict:  # type: ignore[type-arg]
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
    if not isinstance(row, dict):
        raise DataError(f"{path}:{number}: each line must be a JSON object")
    return row
