"""`finsignal alerts eval` on a small run, and metrics that survive a re-import."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from worker.cli import build_parser, main


def test_eval_prints_the_figures(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    png = tmp_path / "trial.png"
    code = main(["alerts", "eval", "--trials", "5", "--hours", "2", "--seed", "3", "--plot", str(png)])
    out = capsys.readouterr().out
    assert code == 0
    assert "detected within 120 s (5 trials)" in out
    assert "false alerts per 1,000 key-hours" in out
    assert "identical" in out
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_eval_takes_engine_settings_as_flags(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["alerts", "eval", "--trials", "2", "--hours", "1", "--alert-fire-score", "1.0"])
    assert code == 2  # fire score below the resolve score: a config error, not a crash
    assert "alert_resolve_score" in capsys.readouterr().err


def test_tail_flags() -> None:
    args = build_parser().parse_args(
        ["alerts", "tail", "--from-beginning", "--max", "3", "--alerts-topic", "a"]
    )
    assert args.from_beginning and args.max_alerts == 3 and args.alerts_topic == "a"


def test_metrics_module_reimports_without_duplicates() -> None:
    import worker.alerts.metrics as metrics

    before = metrics.ALERTS
    again = importlib.reload(metrics)
    assert again.ALERTS is before  # the registered collector is reused, not registered twice
    again.ALERTS.labels("warning").inc()
    again.LATE_EVENTS.inc()
