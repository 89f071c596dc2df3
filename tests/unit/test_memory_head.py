"""The k-NN memory head (`worker/model_build/memory.py`) on a tiny hand-made graph, against numpy.

Torch-free. The graph maps a float input to a unit ``embedding`` and ``topic_logits`` (a linear head), as
the real export's outputs are; the head is appended to it as `model memory` / `model build` append it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from worker.model_build.memory import (
    MemoryHeadError,
    MemorySpec,
    MemoryVotes,
    append_memory_head,
    memory_probs,
    mixed_logits,
    strip_memory_head,
)
from worker.model_build.session import open_session

DIM, CLASSES = 16, 4


def _graph(rng: np.random.Generator) -> onnx.ModelProto:
    head = rng.normal(size=(DIM, CLASSES)).astype(np.float32) * 3
    nodes = [
        helper.make_node("LpNormalization", ["x"], ["embedding"], axis=-1, p=2),
        helper.make_node("MatMul", ["embedding", "head"], ["topic_logits"], name="head"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", DIM])],
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", DIM]),
            helper.make_tensor_value_info("topic_logits", TensorProto.FLOAT, ["batch", CLASSES]),
        ],
        [numpy_helper.from_array(head, "head")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _run(model: onnx.ModelProto, x: np.ndarray, *names: str) -> list[np.ndarray]:
    return open_session(model.SerializeToString()).run(list(names), {"x": x})


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _logsumexp(x: np.ndarray) -> np.ndarray:
    return np.log(np.exp(x - x.max(axis=1, keepdims=True)).sum(axis=1)) + x.max(axis=1)


@pytest.fixture
def memory() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keys in four label clusters; queries: copies of keys (close) and random directions (far)."""
    rng = np.random.default_rng(3)
    centres = _unit(rng.normal(size=(CLASSES, DIM)))
    labels = np.repeat(np.arange(CLASSES), 10)
    keys = _unit(centres[labels] + 0.15 * rng.normal(size=(len(labels), DIM)))
    queries = np.concatenate([keys[::5] * 2.0, rng.normal(size=(8, DIM))]).astype(np.float32)
    return keys, labels, queries


@pytest.mark.parametrize("int8", [False, True])
def test_the_graph_head_matches_the_numpy_reference(
    memory: tuple[np.ndarray, np.ndarray, np.ndarray], int8: bool
) -> None:
    keys, labels, queries = memory
    spec = MemorySpec(neighbours=5, temperature=0.05, weight=0.5, similar_from=0.5, similar_at=0.9)
    plain = _graph(np.random.default_rng(0))
    embedding, head = _run(plain, queries, "embedding", "topic_logits")
    model = _graph(np.random.default_rng(0))
    append_memory_head(model, keys, labels, CLASSES, spec, (-1.0, 1.0) if int8 else None)
    (got,) = _run(model, queries, "topic_logits")

    votes, nearest = memory_probs(embedding, keys, labels, CLASSES, spec)
    want = mixed_logits(head, votes, spec.share(nearest))
    np.testing.assert_allclose(_softmax(got), _softmax(want), atol=0.03 if int8 else 1e-4)
    np.testing.assert_allclose(_logsumexp(got), _logsumexp(head), atol=1e-4)  # the energy is the head's
    # A copy of a key is close: the vote takes its full share and picks the key's label.
    close = np.arange(len(keys[::5]))
    assert (spec.share(nearest[close]) == spec.weight).all()
    assert (got[close].argmax(1) == labels[::5]).mean() == 1.0
    # Far from every key, the vote takes no share: the logits are the head's own.
    far = nearest < spec.similar_from
    assert far.any()
    np.testing.assert_allclose(got[far], head[far], atol=1e-4)


def test_strip_restores_the_head_logits(
    memory: tuple[np.ndarray, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    keys, labels, queries = memory
    (head,) = _run(_graph(np.random.default_rng(0)), queries, "topic_logits")
    model = _graph(np.random.default_rng(0))
    append_memory_head(model, keys, labels, CLASSES, MemorySpec(neighbours=5), (-1.0, 1.0))
    path = tmp_path / "with_memory.onnx"
    onnx.save(model, str(path))
    (mixed,) = _run(model, queries, "topic_logits")
    assert np.abs(mixed - head).max() > 0.1  # the memory changed something
    stripped = onnx.load_from_string(strip_memory_head(path))
    assert not [n for n in stripped.graph.node if n.name.startswith("memory/")]
    (again,) = _run(stripped, queries, "topic_logits")
    np.testing.assert_allclose(again, head, atol=1e-6)
    with pytest.raises(MemoryHeadError, match="already has a memory head"):
        append_memory_head(model, keys, labels, CLASSES, MemorySpec(), None)


def test_memory_votes_leave_out_a_rows_own_point_and_a_new_topics_points(
    memory: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    keys, labels, _ = memory
    spec = MemorySpec(neighbours=3, temperature=0.02, weight=1.0, similar_from=0.0, similar_at=0.5)
    votes = MemoryVotes(keys, labels, CLASSES, spec)
    head = np.zeros((len(keys), CLASSES), np.float32)  # a head with no opinion: the vote decides
    relabelled = MemoryVotes(keys, (labels + 1) % CLASSES, CLASSES, spec)
    # With its own point in the memory a key votes for its own label; left out, its cluster still does.
    own = np.arange(len(keys))
    assert (votes.mixed(keys, head).argmax(1) == labels).all()
    assert (votes.mixed(keys, head, own_rows=own).argmax(1) == labels).mean() > 0.9
    # A single odd point: its own label only wins while it can vote for itself.
    odd = labels.copy()
    odd[0] = 3
    lone = MemoryVotes(keys, odd, CLASSES, spec)
    assert lone.mixed(keys[:1], head[:1]).argmax() == 3
    assert lone.mixed(keys[:1], head[:1], own_rows=np.array([0])).argmax() == labels[0]
    # Without a label's points (a topic played as new), its rows are voted to other labels.
    rows = labels == 2
    assert (relabelled.mixed(keys[rows], head[rows], without_label=3).argmax(1) != 3).all()


@pytest.mark.parametrize(
    ("changes", "flag"),
    [
        ({"neighbours": 0}, "--memory-neighbours"),
        ({"temperature": 0.0}, "--memory-temperature"),
        ({"weight": 1.5}, "--memory-weight"),
        ({"similar_from": 0.9, "similar_at": 0.8}, "similarity ramp"),
    ],
)
def test_bad_settings_name_the_flag(changes: dict[str, float], flag: str) -> None:
    with pytest.raises(MemoryHeadError, match=flag):
        MemorySpec(**changes).check()  # type: ignore[arg-type]
