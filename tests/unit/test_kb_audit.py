"""`finsignal kb audit`: offline, with the shipped encoder; charges each changed prediction to a KB point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worker.cli import main

OIL = "Oil prices climb as OPEC extends its output cuts into next year"
DEPEG = "Stablecoin issuer halts redemptions as its token loses the dollar peg"
MESSAGES = [
    {"text": OIL, "topic": "Energy | Oil", "sentiment": "positive"},
    {"text": DEPEG, "topic": "Stablecoin Depeg", "sentiment": "negative"},
    {"text": "The Fed raises rates by 50 basis points", "topic": "Fed | Central Banks"},
    {
        "text": "Shares jump after quarterly earnings beat estimates",
        "topic": "Earnings",
        "sentiment": "positive",
    },
]
KB = [
    # An expert's slip: a near-copy of the oil headline filed under the wrong topic.
    {"id": "bad:oil", "kind": "exemplar", "text": OIL + ".", "topic": "Dividend", "group": "equities",
     "author": "t"},
    # A topic the head has never had: only the KB can name it.
    {"id": "crypto:depeg", "kind": "exemplar", "text": DEPEG, "topic": "Stablecoin Depeg",
     "sentiment": "negative", "group": "crypto", "author": "t"},
    {"id": "rates:cut", "kind": "exemplar", "text": "The central bank cuts its policy rate",
     "topic": "Fed | Central Banks", "group": "rates", "author": "t"},
]  # fmt: skip


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_audit_charges_broken_and_fixed_predictions_to_the_points_that_made_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "labelled.jsonl", MESSAGES)
    kb = write_jsonl(tmp_path / "kb.jsonl", KB)
    assert main(["kb", "audit", "--data", str(data), "--kb", str(kb), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kb_points"] == 3 and set(report["tasks"]) == {"sentiment", "topic"}

    topic = report["tasks"]["topic"]
    assert topic["n"] == 4
    assert [p["id"] for p in topic["points_that_broke"]] == ["bad:oil"]
    assert topic["points_that_broke"][0]["label"] == "Dividend"
    assert topic["points_that_fixed"][0]["id"] == "crypto:depeg"  # a KB-only label the head cannot output
    assert (topic["broken"], topic["fixed"]) == (1, 1)
    assert topic["accuracy_with_kb"] - topic["accuracy_no_kb"] == pytest.approx(0.0)
    assert report["tasks"]["sentiment"]["n"] == 3  # rows without a sentiment label are not scored

    # The table names the culprit too.
    assert main(["kb", "audit", "--data", str(data), "--kb", str(kb), "--task", "topic"]) == 0
    table = capsys.readouterr().out
    assert "bad:oil" in table and "1 broken" in table and "sentiment" not in table.split("\n")[1]


def test_audit_refuses_labels_neither_the_model_nor_the_kb_has(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "labelled.jsonl", [{"text": "x", "topic": "Weather"}])
    assert main(["kb", "audit", "--data", str(data), "--task", "topic"]) == 2
    err = capsys.readouterr().err
    assert "Weather" in err and "Earnings" in err
    assert main(["kb", "audit", "--data", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err


def test_audit_suggests_a_reviewable_delta_that_repairs_what_the_kb_broke(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kb_sync.loader import load_kb_file

    # A message labelled with the KB-only topic that no point of it resembles: the fusion misses it.
    missed = "Board raises the quarterly dividend by five percent"
    data = write_jsonl(
        tmp_path / "labelled.jsonl", [*MESSAGES, {"text": missed, "topic": "Stablecoin Depeg"}]
    )
    kb = write_jsonl(tmp_path / "kb.jsonl", KB)
    delta = tmp_path / "suggested.jsonl"
    args = ["kb", "audit", "--data", str(data), "--kb", str(kb), "--task", "topic", "--suggest", str(delta)]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tasks"]["topic"]["suggested"] == {"broke": 1, "new_label_missed": 1, "new_label_wrong": 0}
    parsed = load_kb_file(delta, delta=True)  # a valid delta for `kb publish --delta`
    assert report["suggestions"]["points"] == len(parsed.upserts) == 2
    oil = [e for e in parsed.upserts if e.text == OIL]
    assert len(oil) == 1 and oil[0].topic == "Energy | Oil" and oil[0].group == "equities"
    assert "turned the head's right answer wrong" in (oil[0].note or "")
    assert [e.topic for e in parsed.upserts if e.text == missed] == ["Stablecoin Depeg"]

    # Applying the suggestions repairs the message the expert's slip broke.
    lines = [json.loads(line) for line in delta.read_text().splitlines()]
    points = KB + [{k: v for k, v in line.items() if k != "op"} for line in lines]
    repaired = write_jsonl(tmp_path / "kb2.jsonl", points)
    assert main(["kb", "audit", "--data", str(data), "--kb", str(repaired), "--task", "topic", "--json"]) == 0
    after = json.loads(capsys.readouterr().out)["tasks"]["topic"]
    assert after["broken"] == 0 and after["accuracy_with_kb"] > report["tasks"]["topic"]["accuracy_with_kb"]
