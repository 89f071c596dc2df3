"""bench/provider_check.py: the GPU script's guard against measuring the CPU by mistake."""

from __future__ import annotations

import onnxruntime as ort
import pytest

from bench.provider_check import check, main
from worker.config import ConfigError


def test_cpu_check_reports_the_session_provider_and_a_batch_time() -> None:
    report = check("cpu", batch_size=8, rounds=2)
    assert report["session_providers"][0] == "CPUExecutionProvider"  # type: ignore[index]
    assert report["model"] == "model.int8.onnx"
    assert float(report["batch_ms"]) > 0 and float(report["msgs_per_s"]) > 0  # type: ignore[arg-type]


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="only meaningful without CUDA"
)
def test_cuda_check_without_cuda_stops_and_names_the_fix() -> None:
    with pytest.raises(ConfigError, match="install onnxruntime-gpu in place of onnxruntime"):
        check("cuda", batch_size=2, rounds=1)


def test_command_exits_non_zero_with_one_line_when_the_provider_is_missing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("only meaningful without CUDA")
    assert main(["cuda"]) == 3
    assert capsys.readouterr().err.startswith("provider_check: provider cuda:")
    assert main(["cpu"]) == 0


def test_sweep_times_each_setting_and_cpu_agrees_with_itself() -> None:
    from bench.common import load_texts
    from bench.provider_check import agreement, sweep

    texts = load_texts(48)
    same = agreement("cpu", texts)
    assert same["n"] == 48
    assert same["sentiment_argmax_agreement"] == same["topic_argmax_agreement"] == 1.0
    assert same["embedding_cosine_min"] > 0.999
    rows = sweep("cpu", texts, batch_sizes=(16, 48), token_budgets=(512,), min_seconds=0.01)
    assert [(r["batch_size"], r["io_binding"]) for r in rows] == [
        (16, True),
        (48, True),
        (16, False),
        (48, False),
    ]
    assert all(r["msgs_per_s"] > 0 and r["max_batch_tokens"] == 512 for r in rows)


def test_gpu_profile_splits_host_and_session_time(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from bench.offline import gpu_profile

    monkeypatch.setattr("sys.argv", ["gpu_profile", "cpu", "16"])
    assert gpu_profile.main() == 0
    report = json.loads(capsys.readouterr().out)
    assert report["provider"] == "CPUExecutionProvider" and report["batch"] == 16
    for key in ("tokenize_msgs_per_s", "session_s_io_binding_True", "encode_msgs_per_s"):
        assert report[key] > 0
    assert report["nodes"] and all(k.startswith("CPUExecutionProvider:") for k in report["nodes"])
