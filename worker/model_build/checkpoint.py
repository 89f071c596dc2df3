"""Save and restore (possibly pruned) multi-task models: state dict + the structure to rebuild it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from worker.model_build.model import MultiTaskModel
from worker.model_build.prune import apply_structure, structure_of

MODEL_FILE = "model.pt"
META_FILE = "meta.json"


def save_checkpoint(model: MultiTaskModel, out_dir: Path, meta: dict[str, Any]) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    full = {
        **meta,
        "config": model.encoder.config.to_dict(),  # type: ignore[union-attr]
        "structure": structure_of(model.encoder),
        "label_counts": {task: int(head[-1].out_features) for task, head in model.heads.items()},  # type: ignore[index]
        "retrieval": model.retrieval is not None,
    }
    tmp = out_dir / (MODEL_FILE + ".tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, out_dir / MODEL_FILE)  # a crash mid-save never leaves a half-written checkpoint
    (out_dir / META_FILE).write_text(json.dumps(full, indent=2) + "\n")
    return out_dir


def load_checkpoint(path: Path) -> tuple[MultiTaskModel, dict[str, Any]]:
    from transformers import BertConfig, BertModel

    path = Path(path)
    meta_path, model_path = path / META_FILE, path / MODEL_FILE
    for needed in (meta_path, model_path):
        if not needed.is_file():
            raise FileNotFoundError(f"checkpoint file missing: {needed}")
    meta = json.loads(meta_path.read_text())
    config = BertConfig.from_dict(meta["config"])
    config._attn_implementation = "eager"
    encoder = BertModel(config, add_pooling_layer=False)
    apply_structure(encoder, meta["structure"])
    model = MultiTaskModel(encoder, meta["label_counts"], retrieval=bool(meta.get("retrieval", False)))
    model.load_state_dict(torch.load(model_path, map_location="cpu", weights_only=True))
    return model.eval(), meta
