"""Fixed INT8 activation scales (`finsignal model calibrate`): a tiny dynamic-INT8 graph made here.

Torch-free. The graph embeds tokens, quantizes them with DynamicQuantizeLinear and multiplies by INT8
weights, as the real export's MatMulInteger blocks do; so a row's output depends on its batch-mates
before calibration and not after.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from worker.cli import main
from worker.config import DEFAULT_MODEL_DIR
from worker.model_build.artifact import verify_artifact, write_manifest
from worker.model_build.calibrate import (
    CalibrationError,
    calibration_feeds,
    fix_activation_scales,
    sample_texts,
    uint8_scale,
)
from worker.model_build.onnx_export import count_ops
from worker.model_build.session import open_session

DIM = 8


def _dynamic_int8_graph(path: Path, vocab_size: int) -> Path:
    """input_ids -> embedding -> DynamicQuantizeLinear -> MatMulInteger -> float ``embedding`` output."""
    rng = np.random.default_rng(0)
    table = rng.normal(size=(vocab_size, DIM)).astype(np.float32)
    table[0] = 0.0
    weight = rng.integers(-127, 128, size=(DIM, DIM)).astype(np.int8)
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["x"]),
        helper.make_node("DynamicQuantizeLinear", ["x"], ["x_q", "x_scale", "x_zp"], name="dq"),
        helper.make_node("MatMulInteger", ["x_q", "w", "x_zp", "w_zp"], ["acc"]),
        helper.make_node("Cast", ["acc"], ["acc_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["acc_f", "x_scale"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, None)],
        [
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(np.array(0, np.int8), "w_zp"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    """An artifact folder (shipped tokenizer) whose CPU file is the tiny dynamic-INT8 graph."""
    folder = tmp_path / "artifact"
    folder.mkdir()
    shutil.copy(DEFAULT_MODEL_DIR / "tokenizer.json", folder / "tokenizer.json")
    manifest = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())
    vocab = json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"]
    _dynamic_int8_graph(folder / "model.int8.onnx", len(vocab))
    manifest = {k: manifest[k] for k in ("name", "version", "labels", "architecture")}
    manifest |= {"onnx": {"cpu": "model.int8.onnx"}, "outputs": ["embedding"], "metrics": {}}
    write_manifest(folder, manifest, ["model.int8.onnx", "tokenizer.json"])
    return folder


def _run(path: Path, folder: Path, texts: list[str]) -> np.ndarray:
    feed = calibration_feeds(folder / "tokenizer.json", texts, 64, batch_size=len(texts))[0]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # calibration_feeds sorts by length
    out = open_session(path).run(["embedding"], feed)[0][:, 1, :]  # first word piece
    return out[np.argsort(order)]


def test_uint8_scale_matches_what_dynamic_quantize_linear_computes() -> None:
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"])
    graph = helper.make_graph(
        [node],
        "dql",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [
            helper.make_tensor_value_info("s", TensorProto.FLOAT, []),
            helper.make_tensor_value_info("z", TensorProto.UINT8, []),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = open_session(model.SerializeToString())
    for values in ([-1.5, 0.2, 3.0], [0.5, 2.0], [-4.0, -0.1], [-0.25, 7.75]):
        x = np.array(values, np.float32)
        scale, zero_point = session.run(["s", "z"], {"x": x})
        mine = uint8_scale(float(x.min()), float(x.max()))
        assert np.isclose(mine[0], scale, rtol=1e-6) and mine[1] == zero_point, values


def test_fixed_scales_make_each_row_independent_of_its_batch(artifact: Path, tmp_path: Path) -> None:
    path = artifact / "model.int8.onnx"
    message, loud = "Acme cuts guidance", "Breaking: oil surges as OPEC extends cuts again and again"
    before_alone = _run(path, artifact, [message])[0]
    before_mixed = _run(path, artifact, [message, loud])[0]
    assert np.abs(before_alone - before_mixed).max() > 1e-3  # dynamic: the loud text rescales the message

    texts = [message, loud, "Fed holds rates", "shares slump after earnings miss"] * 4
    summary = fix_activation_scales(path, calibration_feeds(artifact / "tokenizer.json", texts, 64))
    assert summary["mode"] == "fixed" and summary["quantizers"] == 1 and summary["calibration_texts"] == 16
    assert count_ops(path, "DynamicQuantizeLinear") == 0 and count_ops(path, "QuantizeLinear") == 1
    after_alone = _run(path, artifact, [message])[0]
    np.testing.assert_array_equal(after_alone, _run(path, artifact, [message, loud])[0])
    np.testing.assert_array_equal(after_alone, _run(path, artifact, [loud, "ok", message])[2])
    # Still a faithful INT8 product: close to the float computation it stands for.
    graph = onnx.load(str(path)).graph
    table, weight = (numpy_helper.to_array(i) for i in graph.initializer[:2])
    token = calibration_feeds(artifact / "tokenizer.json", [message], 64)[0]["input_ids"][0, 1]
    exact = table[token] @ weight.astype(np.float32)
    assert np.abs(after_alone - exact).max() < 0.1 * np.abs(exact).max()

    with pytest.raises(CalibrationError, match="no DynamicQuantizeLinear"):
        fix_activation_scales(path, calibration_feeds(artifact / "tokenizer.json", texts, 64))


def test_no_calibration_texts_is_refused(artifact: Path) -> None:
    with pytest.raises(CalibrationError, match="no calibration texts"):
        fix_activation_scales(artifact / "model.int8.onnx", [])


def test_sample_texts_is_fixed_and_bounded() -> None:
    texts = [f"text {i}" for i in range(5000)]
    assert sample_texts(texts, 1024) == sample_texts(texts, 1024)
    assert len(sample_texts(texts, 1024)) == 1024 and len(set(sample_texts(texts, 1024))) == 1024
    assert sample_texts(texts[:10], 1024) == texts[:10]


def test_calibrate_command_rewrites_the_file_and_the_manifest(
    artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "texts.jsonl"
    data.write_text("".join(json.dumps({"text": f"shares of Acme move {i}%"}) + "\n" for i in range(50)))
    assert main(["model", "calibrate", "--model-dir", str(artifact), "--data", str(data)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["activation_scales"]["calibration_texts"] == 50
    checked = verify_artifact(artifact)  # the manifest pins the rewritten file's new sha256
    assert checked.activation_scales == "fixed"
    scales = checked.manifest["cpu_graph"]["activation_scales"]
    assert scales["texts_from"].startswith("texts.jsonl") and len(scales["dynamic_file_sha256"]) == 64

    # Again: nothing dynamic is left; the error names the file and what to do, and nothing changes.
    before = (artifact / "manifest.json").read_text()
    assert main(["model", "calibrate", "--model-dir", str(artifact), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert str(artifact / "model.int8.onnx") in err and "re-export" in err
    assert (artifact / "manifest.json").read_text() == before


def test_calibrate_command_names_bad_data(
    artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\nnot json\n')
    assert main(["model", "calibrate", "--model-dir", str(artifact), "--data", str(bad)]) == 2
    assert f"{bad}:2" in capsys.readouterr().err
    assert verify_artifact(artifact).activation_scales == "dynamic"
    # The same reader serves `model speed`: the bad line is named there too, not a traceback.
    assert main(["model", "speed", "--data", str(bad), "--baseline", str(artifact)]) == 2
    assert f"{bad}:2" in capsys.readouterr().err


def test_shipped_model_has_fixed_scales() -> None:
    artifact = verify_artifact(DEFAULT_MODEL_DIR)
    assert artifact.activation_scales == "fixed"
    cpu = artifact.onnx_path("cpu")
    assert count_ops(cpu, "DynamicQuantizeLinear") == 0
    # Every integer MatMul runs as ORT's fused kernel, as in the dynamic file (same speed): the encoder's
    # and heads' 16, plus the memory head's similarity.
    assert count_ops(cpu, "MatMulInteger") == 0 and count_ops(cpu, "MatMulIntegerToFloat") == 16 + 1
