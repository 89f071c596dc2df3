"""The shipped encoder (models/finsignal-encoder): manifest integrity, eval, clear load errors.

Torch-free: eval runs on the ONNX artifact with onnxruntime + tokenizers only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from worker.cli import main
from worker.config import DEFAULT_MODEL_DIR
from worker.model_build.artifact import ArtifactError, sha256_file, verify_artifact
from worker.model_build.data import load_labelled
from worker.model_build.evaluate import OnnxClassifier, score
from worker.model_build.metrics import classification_report

DATA = Path(__file__).resolve().parent.parent / "data"
SENTIMENT = DATA / "model_eval_sentiment.jsonl"
TOPIC = DATA / "model_eval_topic.jsonl"


def test_manifest_pins_every_shipped_file() -> None:
    manifest = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())
    assert set(manifest["onnx"].values()) <= set(manifest["files"])
    assert "tokenizer.json" in manifest["files"]
    for name, entry in manifest["files"].items():
        path = DEFAULT_MODEL_DIR / name
        assert path.stat().st_size == entry["bytes"], name
        assert sha256_file(path) == entry["sha256"], name
    assert manifest["labels"]["sentiment"] == ["negative", "neutral", "positive"]
    assert len(manifest["labels"]["topic"]) == 20
    assert manifest["files"]["model.int8.onnx"]["bytes"] < 20_000_000
    assert manifest["files"]["model.fp16.onnx"]["bytes"] < 40_000_000
    assert manifest["parameters"]["pruned"] < manifest["parameters"]["dense"]
    verify_artifact(DEFAULT_MODEL_DIR)


def test_shipped_model_outputs_match_the_contract() -> None:
    classifier = OnnxClassifier(DEFAULT_MODEL_DIR)
    assert classifier.outputs == ["embedding", "sentiment_logits", "topic_logits"]
    texts = ["Oil slumps as OPEC+ talks collapse", "Fed holds rates", "x"]
    from worker.model_build.tokenizer_files import encode_batch

    ids, mask = encode_batch(classifier.tokenizer, texts)
    embedding, sentiment, topic = classifier.session.run(None, {"input_ids": ids, "attention_mask": mask})
    assert embedding.shape[0] == 3 and embedding.dtype == np.float32
    assert np.allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-3)
    assert sentiment.shape == (3, 3) and topic.shape == (3, 20)


@pytest.mark.parametrize(("path", "task", "n_classes"), [(SENTIMENT, "sentiment", 3), (TOPIC, "topic", 20)])
def test_eval_on_small_labelled_file_beats_chance(path: Path, task: str, n_classes: int) -> None:
    classifier = OnnxClassifier(DEFAULT_MODEL_DIR)
    report = score(classifier, load_labelled(path, task, classifier.artifact.labels[task]), task)
    assert report["n"] == sum(1 for line in path.read_text().splitlines() if line.strip())
    assert report["accuracy"] > 2.0 / n_classes  # well above chance on clear-cut examples
    assert 0.0 < report["macro_f1"] <= 1.0


def test_eval_command_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "confusion.png"
    code = main(["model", "eval", "--data", str(SENTIMENT), "--json", "--plot", str(plot)])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "sentiment"  # guessed from the file
    assert {"accuracy", "macro_f1", "n", "model_sha256", "per_class", "confusion_matrix"} <= set(report)
    assert report["model_sha256"] == sha256_file(DEFAULT_MODEL_DIR / "manifest.json")
    assert (report["onnx_file"], report["int8_activation_scales"]) == ("model.int8.onnx", "fixed")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _copy_artifact(tmp_path: Path) -> Path:
    dst = tmp_path / "model"
    dst.mkdir()
    manifest = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())
    for name in ["manifest.json", "tokenizer.json", manifest["onnx"]["cpu"]]:
        shutil.copy2(DEFAULT_MODEL_DIR / name, dst / name)
    return dst


def test_corrupt_model_file_names_the_path(tmp_path: Path) -> None:
    model_dir = _copy_artifact(tmp_path)
    onnx_path = model_dir / "model.int8.onnx"
    data = bytearray(onnx_path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different content
    onnx_path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256") as excinfo:
        OnnxClassifier(model_dir)
    assert str(onnx_path) in str(excinfo.value)


def test_truncated_or_missing_files_name_the_path(tmp_path: Path) -> None:
    model_dir = _copy_artifact(tmp_path)
    tokenizer = model_dir / "tokenizer.json"
    tokenizer.write_bytes(tokenizer.read_bytes()[:100])
    with pytest.raises(ArtifactError, match="bytes") as excinfo:
        OnnxClassifier(model_dir)
    assert str(tokenizer) in str(excinfo.value)
    (model_dir / "model.int8.onnx").unlink()
    with pytest.raises(ArtifactError, match="missing") as excinfo:
        OnnxClassifier(model_dir)
    assert str(model_dir / "model.int8.onnx") in str(excinfo.value)
    (model_dir / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="not found") as excinfo:
        verify_artifact(model_dir)
    assert str(model_dir / "manifest.json") in str(excinfo.value)


def test_eval_command_reports_bad_model_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["model", "eval", "--data", str(SENTIMENT), "--model-dir", str(tmp_path / "nope")])
    assert code == 2
    assert str(tmp_path / "nope" / "manifest.json") in capsys.readouterr().err


def test_eval_command_reports_bad_data_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok", "sentiment": "positive"}\n{not json\n')
    code = main(["model", "eval", "--data", str(bad), "--task", "sentiment"])
    assert code == 2
    assert f"{bad}:2" in capsys.readouterr().err


def test_classification_report_by_hand() -> None:
    truth = np.array([0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 1, 1, 1, 2, 0])
    report = classification_report(truth, predicted, ["a", "b", "c"])
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert report["per_class"]["b"]["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["per_class"]["c"]["recall"] == 0.5
    f1 = [2 * 0.5 * 0.5 / 1.0, 2 * (2 / 3) * 1 / (2 / 3 + 1), 2 * 1 * 0.5 / 1.5]
    assert report["macro_f1"] == pytest.approx(float(np.mean(f1)), abs=1e-6)
