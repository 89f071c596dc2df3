"""`finsignal kb ...` against a real Redis."""

from __future__ import annotations

import argparse
import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from kb_sync import cli as kb_cli
from kb_sync.loader import load_default_kb


def run_kb(argv: list[str]) -> int:
    # Only the kb command, so this test does not depend on the other sub-commands' modules.
    parser = argparse.ArgumentParser(prog="finsignal")
    subparsers = parser.add_subparsers(dest="command", required=True)
    kb_cli.register(subparsers)
    args = parser.parse_args(["kb", *argv])
    return int(args.handler(args))


@pytest.fixture
def kb_flags(redis_url: str, unique_name: Callable[[str], str]) -> list[str]:
    return ["--redis-url", redis_url, "--kb-namespace", unique_name("kb")]


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def row(entry_id: str, **changes: object) -> dict[str, object]:
    return {"id": entry_id, "kind": "term", "text": f"text {entry_id}", "sentiment": "negative",
            "group": "macro", "author": "t", **changes}  # fmt: skip


def test_publish_show_history_rollback_diff(
    kb_flags: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_kb(["publish", *kb_flags, "--author", "alice", "--message", "starter"]) == 0
    assert f"published KB version 1 ({_default_kb_size()} entries)" in capsys.readouterr().out

    delta = write_jsonl(
        tmp_path / "delta.jsonl",
        [{"op": "upsert", **row("new:1", topic="Stablecoin Depeg", sentiment=None)},
         {"op": "remove", "id": "starter:sent:neg:1"}],
    )  # fmt: skip
    assert run_kb(["publish", str(delta), "--delta", *kb_flags, "--author", "bob"]) == 0
    assert f"published KB version 2 ({_default_kb_size()} entries)" in capsys.readouterr().out

    assert run_kb(["show", "--json", *kb_flags]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == 2 and shown["author"] == "bob"
    ids = {e["id"] for e in shown["entries"]}
    assert "new:1" in ids and "starter:sent:neg:1" not in ids

    assert run_kb(["show", "--version", "1", *kb_flags]) == 0
    table = capsys.readouterr().out
    assert "KB version 1" in table and "starter:sent:neg:1" in table

    assert run_kb(["diff", "1", "2", "--json", *kb_flags]) == 0
    changes = json.loads(capsys.readouterr().out)
    assert [e["id"] for e in changes["added"]] == ["new:1"]
    assert [e["id"] for e in changes["removed"]] == ["starter:sent:neg:1"]
    assert run_kb(["diff", "1", "2", *kb_flags]) == 0
    assert "added (1)" in capsys.readouterr().out

    assert run_kb(["rollback", "1", "--author", "carol", *kb_flags]) == 0
    assert "KB version 3 now serves the content of version 1" in capsys.readouterr().out

    assert run_kb(["history", "--json", *kb_flags]) == 0
    history = json.loads(capsys.readouterr().out)
    assert [(h["version"], h["author"], h["action"]) for h in history] == [
        (1, "alice", "publish"), (2, "bob", "delta"), (3, "carol", "rollback")
    ]  # fmt: skip
    assert run_kb(["history", *kb_flags]) == 0
    assert "rollback to v1" in capsys.readouterr().out

    assert run_kb(["show", "--json", *kb_flags]) == 0
    restored = json.loads(capsys.readouterr().out)["entries"]
    assert restored == [e.to_dict() for e in load_default_kb()]


def test_refused_file_exits_1_with_line_and_field_and_changes_nothing(
    kb_flags: list[str], redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write_jsonl(tmp_path / "bad.jsonl", [row("a"), row("b", sentiment="bearish"), row("c", text=" ")])
    assert run_kb(["publish", str(bad), *kb_flags]) == 1
    err = capsys.readouterr().err
    assert "line 2: field 'sentiment'" in err and "line 3: field 'text'" in err
    namespace = kb_flags[kb_flags.index("--kb-namespace") + 1]
    client = redis.Redis.from_url(redis_url)
    assert list(client.scan_iter(match=f"{namespace}:*")) == []
    client.close()


def test_delta_that_empties_the_kb_is_refused(
    kb_flags: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_kb(["publish", str(write_jsonl(tmp_path / "kb.jsonl", [row("only")])), *kb_flags]) == 0
    delta = write_jsonl(tmp_path / "d.jsonl", [{"op": "remove", "id": "only"}])
    assert run_kb(["publish", str(delta), "--delta", *kb_flags]) == 1
    assert "leave the KB empty" in capsys.readouterr().err
    assert run_kb(["show", "--json", *kb_flags]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 1


def test_show_without_kb_and_unreachable_redis(
    kb_flags: list[str], unique_name: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_kb(["show", *kb_flags]) == 1
    assert "no KB has been published" in capsys.readouterr().err
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    assert run_kb(["history", "--redis-url", f"redis://u:secret@127.0.0.1:{dead}/0"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach Redis at redis://u:***@127.0.0.1" in err and "secret" not in err


def _default_kb_size() -> int:
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "kb_sync" / "data" / "default_kb.jsonl"
    return sum(1 for line in path.read_text().splitlines() if line.strip())
