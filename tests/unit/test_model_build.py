"""Build pipeline on a tiny random BERT: prune, distil, export, quantize; pruning/vocab invariants.

Nothing here trains the real model or needs /work/shared/data.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors  # noqa: E402

from worker.cli import main  # noqa: E402
from worker.model_build.artifact import verify_artifact  # noqa: E402
from worker.model_build.build import BuildOptions, PruneTarget, _load_tasks, run_build  # noqa: E402
from worker.model_build.checkpoint import load_checkpoint  # noqa: E402
from worker.model_build.data import (  # noqa: E402
    load_labelled,
    split_calibration,
    split_dataset,
    stratified_split,
)
from worker.model_build.evaluate import OnnxClassifier, score  # noqa: E402
from worker.model_build.fusion_fit import fit, load_context  # noqa: E402
from worker.model_build.memory import strip_memory_head  # noqa: E402
from worker.model_build.onnx_export import count_ops  # noqa: E402
from worker.model_build.prune import gate_importance, prune_ffn, prune_heads, prune_vocab  # noqa: E402
from worker.model_build.session import open_session  # noqa: E402
from worker.model_build.tokenizer_files import encode_batch, runtime_tokenizer  # noqa: E402
from worker.model_build.train import TrainConfig  # noqa: E402
from worker.model_build.vocab import kept_token_ids, write_pruned_tokenizer  # noqa: E402

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = {
    "negative": ["shares", "plunge", "miss", "cut", "loss", "slump", "downgrade", "weak", "falls"],
    "neutral": ["company", "reports", "meeting", "scheduled", "today", "announces", "update", "holds"],
    "positive": ["beats", "soar", "upgrade", "record", "profit", "rally", "strong", "jumps", "gains"],
}
TOPICS = {
    "Earnings": ["earnings", "quarter", "revenue", "eps", "guidance"],
    "Fed": ["fed", "rates", "powell", "inflation", "hike"],
    "Energy": ["oil", "opec", "crude", "gas", "barrel"],
}


def _write_tokenizer(path: Path) -> Path:
    words = sorted({w for ws in (*WORDS.values(), *TOPICS.values()) for w in ws} | {"stock", "the", "and"})
    chars = sorted({c for w in words for c in w} | set("0123456789$%.,"))
    vocab = SPECIALS + [f"[unused{i}]" for i in range(20)] + chars + [f"##{c}" for c in chars] + words
    tokenizer = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer.add_special_tokens(SPECIALS)
    tokenizer.save(str(path))
    return path


def _write_data(tmp: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    sentiment, topic = tmp / "sentiment.jsonl", tmp / "topic.jsonl"
    with sentiment.open("w") as out:
        for i in range(90):
            label = list(WORDS)[i % 3]
            text = " ".join(rng.choice(WORDS[label], 3)) + " stock"
            out.write(json.dumps({"id": f"s{i}", "text": text, "sentiment": label}) + "\n")
    with topic.open("w") as out:
        for i in range(90):
            label = list(TOPICS)[i % 3]
            text = "the " + " ".join(rng.choice(TOPICS[label], 3))
            out.write(
                json.dumps(
                    {"id": f"t{i}", "text": text, "sentiment": None, "topic": label, "label_orig": i % 3}
                )
                + "\n"
            )
    return sentiment, topic


def _tiny_bert(vocab_size: int):  # type: ignore[no-untyped-def]
    config = transformers.BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    return transformers.BertModel(config, add_pooling_layer=False)


def _tiny_build_options(tmp_path: Path, **changes: Any) -> BuildOptions:
    """A build of the tiny random BERT on the synthetic data written to ``tmp_path``, plus ``changes``."""
    tokenizer = _write_tokenizer(tmp_path / "tokenizer.json")
    sentiment, topic = _write_data(tmp_path)
    vocab_size = Tokenizer.from_file(str(tokenizer)).get_vocab_size()
    options = BuildOptions(
        sentiment_data=sentiment,
        topic_data=topic,
        out_dir=tmp_path / "artifact",
        work_dir=tmp_path / "work",
        max_len=16,
        teacher=TrainConfig(epochs=2, batch_size=8, lr=1e-3, head_lr=3e-3),
        student=TrainConfig(epochs=1, batch_size=8, lr=1e-3, head_lr=3e-3),
        prune=PruneTarget(layers=1, heads=2, ffn=16, importance_batches=2, layer_batches=2),
        base_encoder=_tiny_bert(vocab_size),
        base_tokenizer=tokenizer,
    )
    return replace(options, **changes)


def test_build_end_to_end_on_tiny_bert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("worker.model_build.fusion_fit.CACHE_DIR", tmp_path / "fusion-cache")
    options = _tiny_build_options(
        tmp_path,
        teachers=2,
        teacher_refine=TrainConfig(epochs=1, batch_size=8, lr=5e-4, task_repeats={"sentiment": 2}),
        speed_rounds=1,
        calibration_fraction=0.2,
    )
    sentiment, topic = options.sentiment_data, options.topic_data
    options = replace(options, argv=["model", "build", "--sentiment-data", str(sentiment)])
    vocab_size = options.base_encoder.config.vocab_size
    manifest = run_build(options)

    artifact = verify_artifact(tmp_path / "artifact")  # every file matches its sha256 and size
    arch = manifest["architecture"]
    assert (arch["num_layers"], arch["num_heads"], arch["intermediate_size"]) == (1, 2, 16)
    assert arch["vocab_size"] < vocab_size  # the [unused] rows were dropped
    assert manifest["parameters"]["pruned"] < manifest["parameters"]["dense"]
    assert manifest["labels"]["topic"] == ["Earnings", "Fed", "Energy"]
    assert manifest["build_command"].startswith("finsignal model build")
    for name in ("int8", "fp16"):
        check = manifest["export_checks"][name]
        assert check["embedding_min_cosine"] > 0.98
        assert min(check["argmax_agreement"].values()) >= 0.75
    assert manifest["export_checks"]["fp32_fused"]["embedding_max_abs_diff"] < 1e-4
    # The CPU file runs LayerNorm unfused (ORT's CPU SkipLayerNormalization is slow); CUDA keeps the fusion.
    assert count_ops(artifact.onnx_path("cpu"), "SkipLayerNormalization") == 0
    assert count_ops(artifact.onnx_path("cpu"), "LayerNormalization") == 2 * arch["num_layers"]
    assert count_ops(artifact.onnx_path("cuda"), "SkipLayerNormalization") == 2 * arch["num_layers"]
    # Both INT8 files carry fixed activation scales, calibrated on training texts (no per-batch quantizer).
    for folder in (tmp_path / "artifact", tmp_path / "work" / "teacher-artifact"):
        checked = verify_artifact(folder)
        assert checked.activation_scales == "fixed"
        assert count_ops(checked.onnx_path("cpu"), "DynamicQuantizeLinear") == 0
    scales = manifest["cpu_graph"]["activation_scales"]
    assert scales["calibration_texts"] == 126  # every train row (< 1,024)
    # Every integer MatMul of the encoder was fused, plus the memory head's similarity (added after).
    assert scales["fused_matmuls"] + 1 == count_ops(artifact.onnx_path("cpu"), "MatMulIntegerToFloat") > 1
    assert count_ops(artifact.onnx_path("cpu"), "MatMulInteger") == 0
    metrics = manifest["metrics"]
    for stage in ("teacher_dev", "student_torch_dev", "int8_onnx_dev", "teacher_int8_onnx_dev"):
        assert set(metrics[stage]) == {"sentiment", "topic"}
        assert metrics[stage]["topic"]["n"] == 12  # round(15% of 30) = 4 per class
    # 30 rows a class: 4 to dev, then 5 of the remaining 26 held out for the fusion gate fit.
    assert metrics["calibration_split"]["fraction_of_train"] == 0.2
    assert metrics["train_rows"] == {"sentiment": 63, "topic": 63}
    assert len(metrics["teacher_members_dev"]) == 2
    assert set(metrics["teacher_ensemble_dev"]) == {"sentiment", "topic"}
    assert (tmp_path / "work" / "teacher-1-refined" / "model.pt").is_file()
    speed = metrics["speed_int8_cpu"]["models"]
    assert set(speed) == {"dense_teacher_int8", "pruned_int8"}
    assert all(figures["messages_per_s"] > 0 for figures in speed.values())

    # Both artifacts carry the topic memory head over the 63 train rows; the INT8 graph's mixed logits
    # agree with the numpy reference, and the build scored the files with and without it.
    for folder in (tmp_path / "artifact", tmp_path / "work" / "teacher-artifact"):
        memory = verify_artifact(folder).manifest["memory"]
        assert (memory["task"], memory["points"]) == ("topic", 63)
        assert count_ops(verify_artifact(folder).onnx_path("cpu"), "TopK") == 1
    assert manifest["metrics"]["memory_check"]["argmax_agreement"] >= 0.9
    assert manifest["metrics"]["memory_check"]["energy_max_abs_diff"] < 1e-3
    assert set(manifest["metrics"]["int8_onnx_dev_without_memory"]) == {"sentiment", "topic"}

    # The shipped INT8 file agrees with the torch checkpoint on fresh texts (the head's own logits: the
    # memory head is checked above).
    model, _ = load_checkpoint(tmp_path / "work" / "student")
    texts = ["oil crude barrel", "fed rates hike", "shares plunge", "record profit beats"]
    ids, mask = encode_batch(runtime_tokenizer(artifact.tokenizer_path, 16), texts)
    with torch.no_grad():
        out = model(torch.from_numpy(ids), torch.from_numpy(mask))
    head_only = open_session(strip_memory_head(artifact.onnx_path("cpu")))
    (head_logits,) = head_only.run(["topic_logits"], {"input_ids": ids, "attention_mask": mask})
    assert np.abs(head_logits - out.logits["topic"].numpy()).max() < 0.1
    classifier = OnnxClassifier(tmp_path / "artifact")
    onnx_logits = classifier.logits(texts, "topic")
    for i, text in enumerate(texts):  # each row as it would be alone: batch-mates change nothing
        np.testing.assert_allclose(classifier.logits([text], "topic")[0], onnx_logits[i], atol=1e-5)
    report = score(classifier, load_labelled(topic, "topic"), "topic")
    assert report["n"] == 90 and 0.0 <= report["accuracy"] <= 1.0

    # The fusion fit finds the held-out rows through the manifest and fits the gate on them.
    ctx = load_context(tmp_path / "artifact", sentiment, topic, None, None, seed=0)
    assert ctx.fit_split == "calibration"
    for task in ("sentiment", "topic"):  # the same partition as the build's: 63 + 15 + 12 rows
        sizes = [len(getattr(ctx, split)[task].labels) for split in ("train", "calibration", "dev")]
        assert sizes == [63, 15, 12]
    # The fit mixes the memory's vote itself, each train row's own point left out of it.
    assert ctx.memory is not None and len(ctx.memory.keys) == 63
    train = ctx.train["topic"]
    assert train.topic_head_logits is not None and train.memory_rows is not None
    with_self = ctx.memory.mixed(train.embedding, train.topic_head_logits)
    assert not np.allclose(with_self, train.topic_logits)
    np.testing.assert_allclose(
        ctx.memory.mixed(train.embedding, train.topic_head_logits, own_rows=train.memory_rows),
        train.topic_logits,
    )
    params, info = fit(ctx, seed=0)
    assert np.isfinite(list(info["train_loss_by_temperature"].values())).all()
    assert str(params.temperature) in info["train_loss_by_temperature"]

    # --resume reuses checkpoints only when trained on the same rows: another calibration share retrains.
    capsys.readouterr()
    rerun = replace(options, resume=True, speed_rounds=0)
    run_build(rerun)
    log = capsys.readouterr().err
    assert "teacher: reusing" in log and "student: reusing" in log
    manifest = run_build(replace(rerun, calibration_fraction=0.0))
    assert "reusing" not in capsys.readouterr().err
    assert manifest["metrics"]["train_rows"] == {"sentiment": 78, "topic": 78}


def test_exclude_topic_leaves_it_out_of_training_and_the_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("worker.model_build.fusion_fit.CACHE_DIR", tmp_path / "fusion-cache")
    options = _tiny_build_options(tmp_path, exclude_topics=("Energy",), speed_rounds=0)
    full = _load_tasks(replace(options, exclude_topics=()))["topic"]
    train, dev = _load_tasks(options)["topic"]
    assert train.label_names == dev.label_names == ["Earnings", "Fed"]
    assert not any("oil" in text or "opec" in text for text in train.texts + dev.texts)
    # The other topics keep exactly the dev rows of a full build (the split is made before the cut).
    kept_dev = [t for t, label in zip(full[1].texts, full[1].labels, strict=True) if label != 2]
    assert dev.texts == kept_dev and len(train) == 52
    manifest = run_build(options)
    assert manifest["labels"]["topic"] == ["Earnings", "Fed"]
    assert manifest["excluded_topics"] == ["Energy"]
    assert manifest["metrics"]["int8_onnx_dev"]["topic"]["n"] == 8

    # eval-fusion measures KB edits on the topic the encoder never saw: no head column, no KB point of it,
    # then its held-out train rows published as exemplars (13: half of its 26 train rows).
    sentiment, topic = options.sentiment_data, options.topic_data
    plot = tmp_path / "edits.png"
    fusion_args = [
        "--sentiment-data",
        str(sentiment),
        "--topic-data",
        str(topic),
        "--per-topic",
        "--plot",
        str(plot),
    ]
    capsys.readouterr()
    assert main(["model", "eval-fusion", "--model-dir", str(tmp_path / "artifact"), *fusion_args]) == 0
    report = json.loads(capsys.readouterr().out)
    edits = report["kb_edit_efficacy"]
    energy = edits["per_topic"]["Energy"]
    assert energy["encoder_saw_topic"] is False and energy["n_dev"] == 4
    assert energy["recall_before"] == 0.0  # nothing can name it: not in the head, not in the KB
    assert energy["recall_after"] > 0.0  # the published exemplars make it a label the fusion outputs
    assert edits["per_topic"]["Fed"]["encoder_saw_topic"] is True
    exposure = edits["by_encoder_exposure"]
    assert (exposure["seen"]["topics"], exposure["unseen"]["topics"]) == (2, 1)
    assert exposure["unseen"]["recall_after_mean"] == energy["recall_after"]
    assert report["dev"]["topic"]["n"] == 8  # the other topics' dev rows, as in the build
    assert report["plot"] == str(plot) and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fewer = [
        "model",
        "eval-fusion",
        "--model-dir",
        str(tmp_path / "artifact"),
        *fusion_args[:4],
        "--per-topic",
    ]
    assert main([*fewer, "--exemplars", "1"]) == 0
    one = json.loads(capsys.readouterr().out)["kb_edit_efficacy"]
    assert one["exemplars"] == 1 and one["per_topic"]["Energy"]["recall_after"] <= energy["recall_after"]
    with pytest.raises(SystemExit) as refused:  # argparse: exit status 2, naming the flag
        main([*fewer, "--exemplars", "0"])
    assert refused.value.code == 2 and "--exemplars" in capsys.readouterr().err

    args = ["model", "build", "--sentiment-data", str(sentiment), "--topic-data", str(topic)]
    out = ["--out", str(tmp_path / "x"), "--work-dir", str(tmp_path / "w")]
    assert main([*args, *out, "--exclude-topic", "Crypto"]) == 2
    err = capsys.readouterr().err
    assert "--exclude-topic" in err and "Crypto" in err and "Earnings" in err


def test_retrieval_projection_is_trained_exported_and_part_of_the_resume_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = _tiny_build_options(tmp_path, teacher_refine=None, speed_rounds=0, retrieval_projection=True)
    manifest = run_build(options)
    assert manifest["retrieval_projection"] is True

    model, meta = load_checkpoint(tmp_path / "work" / "student")
    assert meta["retrieval"] is True and model.retrieval is not None
    # Trained: the projection left the identity it started from.
    assert not torch.allclose(model.retrieval.weight, torch.eye(model.retrieval.weight.shape[0]))
    texts = ["oil crude barrel", "fed rates hike", "shares plunge", "record profit beats"]
    artifact = verify_artifact(tmp_path / "artifact")
    ids, mask = encode_batch(runtime_tokenizer(artifact.tokenizer_path, 16), texts)
    with torch.no_grad():
        out = model(torch.from_numpy(ids), torch.from_numpy(mask))
    expected = torch.nn.functional.normalize(out.embedding, dim=-1).numpy()
    unprojected = torch.nn.functional.normalize(out.pooled, dim=-1).numpy()
    classifier = OnnxClassifier(tmp_path / "artifact")
    onnx_embedding = classifier.session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]
    cosine = (onnx_embedding * expected).sum(-1)
    assert cosine.min() > 0.98  # the ONNX embedding is the projected one (INT8)
    assert np.abs(onnx_embedding - expected).max() < np.abs(onnx_embedding - unprojected).max()

    # A teacher trained without the projection is not reused for a build with it (and back).
    capsys.readouterr()
    run_build(replace(options, resume=True))
    assert "teacher: reusing" in capsys.readouterr().err
    run_build(replace(options, resume=True, retrieval_projection=False))
    assert "reusing" not in capsys.readouterr().err


def test_self_distil_trains_a_second_teacher_that_the_student_learns_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refine = TrainConfig(epochs=1, batch_size=8, lr=5e-4, head_lr=1e-3)
    options = _tiny_build_options(tmp_path, teacher_refine=refine, speed_rounds=0, self_distil_epochs=1.0)
    manifest = run_build(options)
    work = tmp_path / "work"
    first, _ = load_checkpoint(work / "teacher-refined")
    second, meta = load_checkpoint(work / "teacher-generation2")
    refined, refined_meta = load_checkpoint(work / "teacher-generation2-refined")
    assert meta["generation1"] == [str(work / "teacher-refined")]
    for config in (meta["train_config"], refined_meta["train_config"]):
        assert config["kd_other_weight"] == 1.0 and config["hidden_weight"] == 0.0
    assert refined_meta["phase1_config"] == meta["train_config"]
    # A fresh fine-tune, not a copy of the first teacher; then refined in a phase of its own.
    first_w = first.encoder.embeddings.word_embeddings.weight
    second_w = second.encoder.embeddings.word_embeddings.weight
    assert not torch.allclose(first_w, second_w)
    assert not torch.allclose(second_w, refined.encoder.embeddings.word_embeddings.weight)
    _student, student_meta = load_checkpoint(work / "student")
    assert student_meta["teacher"] == str(work / "teacher-generation2-refined")
    metrics = manifest["metrics"]
    assert metrics["self_distil_epochs"] == 1.0
    assert set(metrics["teacher_generation1_dev"]) == {"sentiment", "topic"}
    assert metrics["teacher_generation1_dev"] != metrics["teacher_dev"]

    capsys.readouterr()
    run_build(replace(options, resume=True))
    err = capsys.readouterr().err
    assert "teacher generation 2: reusing" in err and "teacher generation 2 refine: reusing" in err
    run_build(replace(options, resume=True, self_distil_epochs=2.0))
    err = capsys.readouterr().err
    assert "teacher: reusing" in err and "teacher generation 2: reusing" not in err


def test_teacher_loss_weights_set_both_teacher_phases_only(tmp_path: Path) -> None:
    from worker.model_build.build import with_teacher_loss_weights

    options = BuildOptions(sentiment_data=tmp_path / "s", topic_data=tmp_path / "t", out_dir=tmp_path)
    assert options.teacher.emb_weight == 0.5  # the shipped build's settings
    assert options.teacher.contrastive_weight == 0.0
    changed = with_teacher_loss_weights(options, geometry=0.0)
    assert changed.teacher.emb_weight == 0.0
    assert changed.teacher_refine is not None and changed.teacher_refine.emb_weight == 0.0
    assert changed.teacher.contrastive_weight == 0.0  # not given: kept
    assert changed.student == options.student  # the student keeps its own geometry loss
    assert changed.teacher.epochs == options.teacher.epochs
    both = with_teacher_loss_weights(options, contrastive=0.25)
    assert both.teacher.contrastive_weight == 0.25 and both.teacher.emb_weight == 0.5
    assert both.teacher_refine is not None and both.teacher_refine.contrastive_weight == 0.25
    assert with_teacher_loss_weights(options) == options
    with pytest.raises(ValueError, match="--teacher-geometry-weight"):
        with_teacher_loss_weights(options, geometry=-1.0)
    with pytest.raises(ValueError, match="--teacher-contrastive-weight"):
        with_teacher_loss_weights(options, contrastive=-0.1)


def test_supervised_contrastive_rewards_label_clusters_and_pulls_positives_together() -> None:
    import torch

    from worker.model_build.train import supervised_contrastive

    clustered = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    assert float(supervised_contrastive(clustered, labels, 0.1)) < 1e-3
    assert float(supervised_contrastive(clustered, torch.tensor([0, 1, 0, 1]), 0.1)) > 5.0
    # No text has a same-label batch-mate: nothing to pull, loss 0 (not NaN).
    assert float(supervised_contrastive(torch.randn(3, 4), torch.tensor([0, 1, 2]), 0.1)) == 0.0
    # A gradient step moves same-label texts closer together.
    torch.manual_seed(0)
    points = torch.randn(6, 8, requires_grad=True)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])

    def within_cosine(x: torch.Tensor) -> float:
        z = torch.nn.functional.normalize(x, dim=-1)
        sims = z @ z.T
        same = (labels[:, None] == labels[None, :]) & ~torch.eye(6, dtype=torch.bool)
        return float(sims[same].mean())

    before = within_cosine(points.detach())
    supervised_contrastive(points, labels, 0.5).backward()
    with torch.no_grad():
        stepped = points - 0.5 * points.grad
    assert within_cosine(stepped) > before


def test_contrastive_weight_changes_teacher_training_only_when_set() -> None:
    from worker.model_build.model import MultiTaskModel
    from worker.model_build.train import TaskData, _step_loss

    model = MultiTaskModel(_tiny_bert(50), {"sentiment": 3, "topic": 4}).eval()  # no dropout
    data = TaskData([[1, 2, 3], [4, 5], [6, 7, 8], [9, 10]], np.array([0, 0, 1, 1]), ["a", "b", "c", "d"])
    tasks = {"topic": data, "sentiment": data}

    def loss(task: str, weight: float) -> float:
        config = TrainConfig(contrastive_weight=weight)
        return float(_step_loss(model, tasks, task, [0, 1, 2, 3], config, None).detach())

    assert loss("topic", 0.5) > loss("topic", 0.0)  # the term is added on topic batches
    assert loss("sentiment", 0.5) == pytest.approx(loss("sentiment", 0.0))  # and only there


def test_build_cli_student_shape_flags_reach_the_prune_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import worker.model_build.build as build
    from worker.cli import main

    seen: list[BuildOptions] = []
    monkeypatch.setattr(build, "run_build", seen.append)
    args = [
        "model",
        "build",
        "--sentiment-data",
        "s.jsonl",
        "--topic-data",
        "t.jsonl",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 0
    assert seen[-1].prune == PruneTarget()  # no flag: the shipped shape (4 layers, 6 heads, 512 neurons)
    assert main([*args, "--prune-layers", "5", "--prune-ffn", "768"]) == 0
    assert (seen[-1].prune.layers, seen[-1].prune.heads, seen[-1].prune.ffn) == (5, 6, 768)
    with pytest.raises(SystemExit):
        main([*args, "--prune-heads", "0"])
    # The help states the defaults (cli.py cannot import torch-side PruneTarget): keep them in step.
    with pytest.raises(SystemExit):
        main(["model", "build", "--help"])
    shape = PruneTarget()
    assert f"default {shape.layers} layers, {shape.heads} heads per layer, {shape.ffn} FFN" in " ".join(
        capsys.readouterr().out.split()
    )


def _hidden(encoder, ids: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        return encoder(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state


def test_pruned_heads_and_neurons_equal_gated_model() -> None:
    encoder = _tiny_bert(50).eval()
    ids = torch.randint(5, 50, (3, 7))
    keep_heads, keep_neurons = [0, 3], list(range(0, 64, 2))
    layer = encoder.encoder.layer[0]
    head_gate = torch.zeros(4 * 8)
    for h in keep_heads:
        head_gate[h * 8 : (h + 1) * 8] = 1
    neuron_gate = torch.zeros(64)
    neuron_gate[keep_neurons] = 1
    handles = [
        layer.attention.output.dense.register_forward_pre_hook(lambda m, a: (a[0] * head_gate,)),
        layer.output.dense.register_forward_pre_hook(lambda m, a: (a[0] * neuron_gate,)),
    ]
    expected = _hidden(encoder, ids)
    for handle in handles:
        handle.remove()
    prune_heads(layer, keep_heads)
    prune_ffn(layer, keep_neurons)
    assert layer.attention.self.query.out_features == 16
    assert torch.allclose(_hidden(encoder, ids), expected, atol=1e-5)


def test_gate_importance_shapes_and_signal() -> None:
    encoder = _tiny_bert(50)
    ids = torch.randint(5, 50, (4, 6))
    batches = [ids, ids.flip(0)]
    importance = gate_importance(encoder, batches, lambda b: _hidden_with_grad(encoder, b).pow(2).mean())
    assert importance.heads.shape == (2, 4)
    assert np.allclose(np.linalg.norm(importance.heads, axis=1), 1.0)
    assert [n.shape for n in importance.neurons] == [(64,), (64,)]
    assert all(n.sum() > 0 for n in importance.neurons)


def _hidden_with_grad(encoder, ids: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return encoder(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state


def test_vocab_pruning_keeps_corpus_tokenization(tmp_path: Path) -> None:
    src = _write_tokenizer(tmp_path / "tokenizer.json")
    corpus = ["shares plunge today", "oil crude rally", "fed hike 25"]
    keep = kept_token_ids(src, corpus)
    dst = write_pruned_tokenizer(src, tmp_path / "pruned.json", keep)
    old, new = Tokenizer.from_file(str(src)), Tokenizer.from_file(str(dst))
    assert new.get_vocab_size() == len(keep) < old.get_vocab_size()
    for text in [*corpus, "zzz unseen words"]:
        old_tokens, new_tokens = old.encode(text).tokens, new.encode(text).tokens
        assert new_tokens == old_tokens  # single characters kept, so unseen words still split the same
        # ids are remapped consistently: new id i is old id keep[i]
        assert [int(keep[i]) for i in new.encode(text).ids] == old.encode(text).ids
    assert new.token_to_id("[PAD]") == 0
    encoder = _tiny_bert(old.get_vocab_size()).eval()
    ids_old = torch.tensor([old.encode(corpus[0]).ids])
    expected = _hidden(encoder, ids_old)
    prune_vocab(encoder, keep)
    assert torch.allclose(_hidden(encoder, torch.tensor([new.encode(corpus[0]).ids])), expected, atol=1e-5)


def test_dev_split_is_fixed_and_stratified() -> None:
    labels = np.repeat(np.arange(3), [100, 40, 20])
    train_a, dev_a = stratified_split(labels)
    train_b, dev_b = stratified_split(labels)
    assert np.array_equal(dev_a, dev_b) and np.array_equal(train_a, train_b)
    assert not set(train_a) & set(dev_a) and len(train_a) + len(dev_a) == len(labels)
    assert np.bincount(labels[dev_a]).tolist() == [15, 6, 3]


def test_calibration_split_is_fixed_disjoint_and_stratified(tmp_path: Path) -> None:
    sentiment, _ = _write_data(tmp_path)
    train, dev = split_dataset(load_labelled(sentiment, "sentiment"))
    fit_a, calibration_a = split_calibration(train, 0.2)
    fit_b, calibration_b = split_calibration(train, 0.2)
    assert calibration_a.texts == calibration_b.texts and fit_a.texts == fit_b.texts
    assert len(fit_a) + len(calibration_a) == len(train)
    assert np.bincount(calibration_a.labels).tolist() == [5, 5, 5]
    assert sorted(fit_a.texts + calibration_a.texts) == sorted(train.texts)  # a partition of train
    everything, none = split_calibration(train, 0.0)
    assert len(everything) == len(train) and len(none) == 0
    with pytest.raises(ValueError, match="calibration fraction"):
        split_calibration(train, 0.6)


def test_epoch_batches_cover_every_row_and_oversample() -> None:
    import random

    from worker.model_build.train import TaskData, epoch_batches

    tasks = {
        "a": TaskData([[1] * (i % 5 + 1) for i in range(10)], np.zeros(10, dtype=np.int64), ["x"]),
        "b": TaskData([[1, 2]] * 7, np.zeros(7, dtype=np.int64), ["x"]),
    }
    batches = epoch_batches(tasks, 4, random.Random(0), {"a": 2})
    seen = {"a": [], "b": []}
    for task, rows in batches:
        assert 0 < len(rows) <= 4
        seen[task].extend(rows)
    assert sorted(seen["a"]) == sorted(list(range(10)) * 2)
    assert sorted(seen["b"]) == list(range(7))


def test_geometry_kept_scores_identity_high_and_noise_low() -> None:
    from worker.model_build.train import geometry_kept

    rng = np.random.default_rng(0)
    original = rng.normal(size=(60, 16))
    same = geometry_kept(original * 3.0, original)  # scale does not change geometry
    assert same["embedding_cosine_to_original"] == pytest.approx(1.0)
    assert same["embedding_pairwise_spearman_vs_original"] == pytest.approx(1.0)
    assert same["embedding_knn10_overlap_vs_original"] == pytest.approx(1.0)
    noise = geometry_kept(rng.normal(size=(60, 16)), original)
    assert noise["embedding_pairwise_spearman_vs_original"] < 0.3
    assert noise["embedding_knn10_overlap_vs_original"] < 0.5


def test_teacher_ensemble_averages_logits_and_keeps_first_hidden_states() -> None:
    from worker.model_build.model import MultiTaskModel, TeacherEnsemble

    members = []
    for seed in (1, 2):
        encoder = _tiny_bert(40)  # seeded with 0: make the members differ below
        torch.manual_seed(seed)
        with torch.no_grad():
            for weight in encoder.parameters():
                weight.add_(0.05 * torch.randn_like(weight))
        members.append(MultiTaskModel(encoder, {"sentiment": 3, "topic": 4}).eval())
    ensemble = TeacherEnsemble(members).eval()
    ids = torch.randint(5, 40, (3, 7))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        out = ensemble(ids, mask, hidden_states=True)
        first, second = (member(ids, mask, hidden_states=True) for member in members)
    for task in ("sentiment", "topic"):
        assert torch.allclose(out.logits[task], (first.logits[task] + second.logits[task]) / 2, atol=1e-6)
        assert not torch.allclose(first.logits[task], second.logits[task])  # the mean is not trivial
    assert out.hidden_states is not None and first.hidden_states is not None
    assert second.hidden_states is not None
    assert torch.equal(out.hidden_states[-1], first.hidden_states[-1])
    assert not torch.allclose(out.hidden_states[-1], second.hidden_states[-1])
    assert torch.equal(out.pooled, first.pooled)
