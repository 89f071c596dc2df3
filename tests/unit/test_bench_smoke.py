"""Smoke test of `finsignal bench --quick` on rows 3, 4 and 6 (no broker, no torch baselines timed).

Timings are not asserted (the machine is shared); the test checks that the harness runs end to end,
that every figure it reports is a positive number, and that the table, JSON, plots and Markdown appear.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.report import BEGIN, END
from worker.cli import main

pytestmark = pytest.mark.slow


def test_quick_bench_rows_3_4_6(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "BENCH.md"
    doc.write_text("# My intro\n\nHand-written text that must survive.\n", encoding="utf-8")
    code = main(
        ["bench", "--quick", "--rows", "3,4,6", "--name", "smoke", "--out-dir", str(tmp_path),
         "--markdown", str(doc)]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "finsignal bench: smoke" in printed
    assert "issue 7 targets" in printed

    result = json.loads((tmp_path / "smoke.json").read_text())
    rows = {row["row"]: row for row in result["rows"]}
    assert {"3", "3s", "4", "4p", "4e", "6"} <= set(rows)
    assert "1a" not in rows and "5" not in rows  # only the rows asked for (4 is implied by 6)
    for key in ("3", "3s", "4", "4p", "4e", "6"):
        assert rows[key]["msgs_per_s"] > 0, key
        assert rows[key]["mean_tokens"] > 0, key
    # the pruned encoder must be cheaper per message than the dense one on the same texts
    assert rows["4e"]["mean_tokens"] <= rows["3"]["mean_tokens"]
    peak = result["peak"]
    assert peak["int8_peak_gops"] > 0 and peak["fp32_peak_gflops"] > 0
    assert 0 < peak["fraction_int8"] < 1.5  # a fraction of a measured peak, not a made-up number
    assert peak["padded_mflop_per_msg"] >= peak["useful_mflop_per_msg"] > 0
    assert result["ratios"]["encoder_fraction_of_int8_peak"] == pytest.approx(peak["fraction_int8"])
    assert result["ratios"]["e2e_vs_finbert_per_message"] is None  # rows 1 and 5 were not run
    for sweep in result["sweeps"].values():
        assert sweep and all(v > 0 for v in sweep.values())

    for path in result["plots"].values():
        assert Path(path).stat().st_size > 1000
    text = doc.read_text()
    assert text.startswith("# My intro") and "must survive" in text
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert "| 4e |" in text


def test_bench_refuses_unknown_rows(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--rows", "3,9"]) == 2
    assert "unknown row(s) 9" in capsys.readouterr().err


@pytest.mark.parametrize("procs", ["0,2", "one,two", ""])
def test_bench_refuses_bad_process_counts(procs: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--rows", "3", "--scaling", "--procs", procs]) == 2
    assert "--procs" in capsys.readouterr().err


def test_scaling_rows_sort_by_process_count() -> None:
    from bench.harness import _row_order

    rows = ["6", "5d2", "5x16", "5p", "5x2", "4", "5w", "5x1", "5d1", "5x4", "5"]
    assert sorted(rows, key=_row_order) == [
        "4", "5", "5p", "5w", "5x1", "5x2", "5x4", "5x16", "5d1", "5d2", "6"
    ]  # fmt: skip
