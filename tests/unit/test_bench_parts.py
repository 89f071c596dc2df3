"""The bench's arithmetic: FLOP counts, padding, token-budget splits, the Markdown section swap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from bench.onnx_rows import token_budget_parts
from bench.peak import flops_per_message, gemm_shapes, padded_flops
from bench.report import BEGIN, END, update_markdown

ARCH = {"hidden_size": 384, "num_layers": 4, "num_heads": 6, "head_size": 32, "intermediate_size": 512}


def test_flops_are_the_gemms_plus_attention() -> None:
    # Linear part: 2 FLOPs per weight per token, summed over the GEMM shapes the peak is measured on.
    weights = sum(k * n for _, k, n in gemm_shapes(ARCH, 1))
    attention_width = ARCH["num_heads"] * ARCH["head_size"]
    for n in (1, 17, 64):
        linear = 2 * n * weights * ARCH["num_layers"]
        attention = 4 * n * n * attention_width * ARCH["num_layers"]
        assert float(flops_per_message(n, ARCH)) == linear + attention


@given(st.lists(st.integers(min_value=3, max_value=64), min_size=1, max_size=300))
def test_padded_flops_never_below_useful(lengths: list[int]) -> None:
    arr = np.array(lengths)
    useful = float(flops_per_message(arr, ARCH).sum())
    padded = padded_flops(arr, ARCH, batch_size=64, budget=8192)
    assert padded >= useful * (1 - 1e-9)
    if len(set(lengths)) == 1:
        assert np.isclose(padded, useful)  # nothing to pad when every text has one length


@given(st.lists(st.integers(min_value=1, max_value=128), min_size=1, max_size=200), st.integers(128, 4096))
def test_token_budget_parts_cover_in_order_within_budget(lengths: list[int], budget: int) -> None:
    ordered = np.sort(np.array(lengths))
    parts = token_budget_parts(ordered, budget)
    covered = [i for p in parts for i in range(len(ordered))[p]]
    assert covered == list(range(len(ordered)))
    for p in parts:
        rows = ordered[p]
        assert len(rows) == 1 or len(rows) * rows.max() <= budget


def test_markdown_section_is_replaced_and_intro_kept(tmp_path: Path) -> None:
    doc = tmp_path / "B.md"
    update_markdown(doc, f"{BEGIN}\nfirst\n{END}", "# Intro\n\nwords\n")
    doc.write_text(doc.read_text().replace("words", "edited words"))
    update_markdown(doc, f"{BEGIN}\nsecond\n{END}", "# Intro\n\nwords\n")
    text = doc.read_text()
    assert "edited words" in text and "second" in text and "first" not in text
    assert text.count(BEGIN) == 1
