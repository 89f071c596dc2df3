"""`finsignal kb explain` against a real Redis and the shipped encoder."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from kb_sync import cli as kb_cli

NEW_TOPIC = "Stablecoin Depeg"
MESSAGE = "Stablecoin issuer halts redemptions as its token loses the dollar peg"


def run_kb(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="finsignal")
    subparsers = parser.add_subparsers(dest="command", required=True)
    kb_cli.register(subparsers)
    args = parser.parse_args(["kb", *argv])
    return int(args.handler(args))


def test_explain_names_a_kb_only_topic_with_evidence_and_caches_embeddings(
    redis_url: str, unique_name: Callable[[str], str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--redis-url", redis_url, "--kb-namespace", unique_name("kb")]
    rows = [
        {"id": "crypto:depeg", "kind": "exemplar", "text": MESSAGE, "topic": NEW_TOPIC,
         "sentiment": "negative", "group": "crypto", "author": "t"},
        {"id": "rates:hike", "kind": "exemplar", "text": "The Fed raises rates by 50 basis points",
         "topic": "Fed | Central Banks", "sentiment": "negative", "group": "rates", "author": "t"},
        {"id": "eq:beat", "kind": "exemplar", "text": "Shares jump after earnings beat estimates",
         "topic": "Earnings", "sentiment": "positive", "group": "equities", "author": "t"},
    ]  # fmt: skip
    kb_file = tmp_path / "kb.jsonl"
    kb_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run_kb(["publish", str(kb_file), *flags]) == 0
    # A topic the model was never trained on, with one exemplar: publish advises more.
    assert f"topic '{NEW_TOPIC}' is not one the model was trained on" in capsys.readouterr().err

    assert run_kb(["explain", MESSAGE, "--json", "--kb-top-groups", "2", *flags]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kb_version"] == 1 and report["kb_entries"] == 3
    assert report["without_kb"]["topic"]["label"] != NEW_TOPIC
    assert report["with_kb"]["topic"] == {
        "label": NEW_TOPIC,
        "probability": pytest.approx(report["with_kb"]["topic"]["probability"]),
        "kb_only": True,
    }
    assert report["gates"]["topic"] > 0.5
    assert report["routed_groups"][0] == "crypto" and len(report["routed_groups"]) == 2
    top = report["evidence_by_group"]["crypto"][0]
    assert top["id"] == "crypto:depeg" and top["cosine"] > 0.99
    assert report["embedding_cache"] == {"hits": 0, "misses": 3}

    # A second explain finds every KB embedding in Redis; the table output names the evidence.
    assert run_kb(["explain", MESSAGE, *flags]) == 0
    table = capsys.readouterr().out
    assert "crypto:depeg" in table and NEW_TOPIC in table and "group crypto" in table
    assert run_kb(["explain", MESSAGE, "--json", *flags]) == 0
    assert json.loads(capsys.readouterr().out)["embedding_cache"] == {"hits": 3, "misses": 0}


def test_explain_without_a_published_kb_fails_clearly(
    redis_url: str, unique_name: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--redis-url", redis_url, "--kb-namespace", unique_name("kb")]
    assert run_kb(["explain", "anything", *flags]) == 1
    assert "no KB has been published" in capsys.readouterr().err
