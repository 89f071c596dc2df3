"""Write a model artifact folder (docs/INTERNALS.md "Model artifact") from a torch encoder.

``export_dense`` exports the base all-MiniLM-L6-v2 as a zero-shot embedding model (no heads);
``export_artifact`` is the shared path used by it and by the trained/pruned build.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from worker.model_build.artifact import TOKENIZER_NAME, write_manifest
from worker.model_build.calibrate import calibration_feeds, fix_activation_scales
from worker.model_build.onnx_export import (
    ExportWrapper,
    check_export,
    convert_fp16,
    export_onnx,
    optimize_onnx,
    quantize_int8,
)
from worker.model_build.tokenizer_files import encode_batch, runtime_tokenizer, save_runtime_tokenizer

INT8_NAME = "model.int8.onnx"
FP16_NAME = "model.fp16.onnx"

# Checked against torch after export: short financial texts of varied length.
CHECK_TEXTS = [
    "$AAPL beats on earnings, raises guidance",
    "Fed holds rates steady; Powell signals patience as inflation cools",
    "Oil slumps 5% after OPEC+ fails to agree on output cuts, dragging energy stocks lower",
    "Credit Suisse shares plunge to record low",
    "Bitcoin",
    "Treasury yields climb as traders price in another hike; the 10-year tops 4.5% for the first time "
    "since 2007 while the dollar strengthens against the yen and the euro",
    "Company X names new CFO",
    "Gold steady",
]


def architecture_of(encoder: Any, max_tokens: int) -> dict[str, int]:
    config = encoder.config  # type: ignore[attr-defined]
    layers = encoder.encoder.layer  # type: ignore[attr-defined]
    heads = [layer.attention.self.num_attention_heads for layer in layers]
    head_size = int(layers[0].attention.self.attention_head_size) if len(layers) else 0
    ffn = [layer.intermediate.dense.out_features for layer in layers]
    return {
        "hidden_size": int(config.hidden_size),
        "num_layers": len(layers),
        "num_heads": int(heads[0]) if heads else 0,
        "head_size": head_size,
        "intermediate_size": int(ffn[0]) if ffn else 0,
        "vocab_size": int(encoder.embeddings.word_embeddings.num_embeddings),  # type: ignore[attr-defined]
        "max_tokens": int(max_tokens),
    }


def count_parameters(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def export_artifact(
    out_dir: Path,
    encoder: nn.Module,
    tokenizer_src: Path,
    manifest: dict[str, Any],
    heads: dict[str, nn.Module] | None = None,
    retrieval: nn.Module | None = None,
    max_tokens: int = 128,
    fp16: bool = True,
    check_texts: list[str] | None = None,
    calibration_texts: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Export, fuse, quantize/convert, check against torch, write tokenizer + manifest.

    ``manifest`` holds the caller's fields (name, labels, metrics, ...); files, onnx, architecture,
    export checks and parameter counts are added here. ``calibration_texts``: the INT8 file gets fixed
    activation scales measured on them (``calibrate.py``: outputs independent of batch-mates); without
    them its scales stay dynamic. Returns the manifest written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wrapper = ExportWrapper(encoder.eval(), heads, retrieval).eval()
    arch = architecture_of(encoder, max_tokens)
    tokenizer_dst = out_dir / TOKENIZER_NAME
    if Path(tokenizer_src).resolve() != tokenizer_dst.resolve():
        save_runtime_tokenizer(Path(tokenizer_src), tokenizer_dst, max_tokens)
    ids, mask = encode_batch(runtime_tokenizer(tokenizer_dst, max_tokens), check_texts or CHECK_TEXTS)

    files = [TOKENIZER_NAME, INT8_NAME]
    checks: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="finsignal-export-") as tmp:
        fp32 = export_onnx(wrapper, Path(tmp) / "model.fp32.onnx", arch["vocab_size"])
        fused = optimize_onnx(
            fp32, Path(tmp) / "model.fused.onnx", arch["num_heads"], arch["num_heads"] * arch["head_size"]
        )
        checks["fp32_fused"] = check_export(wrapper, fused, ids, mask).as_dict()
        quantize_int8(fused, out_dir / INT8_NAME)
        scales: dict[str, Any] = {"mode": "dynamic"}
        if calibration_texts:
            feeds = calibration_feeds(tokenizer_dst, calibration_texts, max_tokens)
            scales = fix_activation_scales(out_dir / INT8_NAME, feeds)
        checks["int8"] = check_export(wrapper, out_dir / INT8_NAME, ids, mask).as_dict()
        if fp16:
            convert_fp16(fused, out_dir / FP16_NAME)
            checks["fp16"] = check_export(wrapper, out_dir / FP16_NAME, ids, mask).as_dict()
            files.append(FP16_NAME)
        elif (out_dir / FP16_NAME).exists():
            (out_dir / FP16_NAME).unlink()  # never leave a stale file the manifest does not describe

    full = {
        "name": manifest.get("name", out_dir.name),
        "version": manifest.get("version", "0.0.0"),
        "base_model": manifest.get("base_model", "sentence-transformers/all-MiniLM-L6-v2"),
        "onnx": {"cpu": INT8_NAME, **({"cuda": FP16_NAME} if fp16 else {})},
        "labels": manifest.get("labels", {}),
        "outputs": wrapper.output_names,
        "architecture": arch,
        "parameters": manifest.get("parameters", {"encoder": count_parameters(encoder)}),
        **{k: v for k, v in manifest.items() if k not in {"name", "version", "base_model", "labels"}},
        "export_checks": checks,
    }
    full["cpu_graph"] = {**(full.get("cpu_graph") or {}), "activation_scales": scales}
    return write_manifest(out_dir, full, files)


def export_dense(
    out_dir: Path,
    max_tokens: int = 128,
    fp16: bool = True,
    calibration_texts: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The base all-MiniLM-L6-v2 as a zero-shot artifact: output ``embedding`` only."""
    from worker.model_build.base_model import BASE_MODEL_NAME, base_tokenizer_path, load_base_encoder

    encoder = load_base_encoder()
    return export_artifact(
        out_dir,
        encoder,
        base_tokenizer_path(),
        {
            "name": "all-minilm-l6-v2-dense",
            "version": "1.0.0",
            "base_model": BASE_MODEL_NAME,
            "labels": {},
            "parameters": {"dense": count_parameters(encoder)},
            "pruning": None,
            "metrics": {},
            "build_command": f"finsignal model export --dense --out {out_dir}",
        },
        max_tokens=max_tokens,
        fp16=fp16,
        calibration_texts=calibration_texts,
    )


def copy_artifact(src: Path, dst: Path) -> None:
    """Copy only the files a manifest lists (plus the manifest) into ``dst``."""
    manifest = json.loads((Path(src) / "manifest.json").read_text())
    Path(dst).mkdir(parents=True, exist_ok=True)
    for name in [*manifest["files"], "manifest.json"]:
        shutil.copy2(Path(src) / name, Path(dst) / name)


def sample_inputs(tokenizer_path: Path, texts: list[str], max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    return encode_batch(runtime_tokenizer(tokenizer_path, max_tokens), texts)
