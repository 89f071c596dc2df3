"""`finsignal kb explain "text"`: the prediction with and without the current KB, the gate, and evidence.

Loads the KB from Redis, embeds it through the Redis embedding cache (so a second call embeds nothing),
runs the shipped encoder on the text and fuses exactly as the worker does.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from worker.cli import add_settings_flags, settings_from_args
from worker.config import Settings
from worker.fusion import FusionResult, KnowledgeIndex

# What classifying with the KB needs (`kb explain`, `kb audit`); explain adds where the KB lives.
FUSION_SETTINGS = [
    "kb_top_m",
    "kb_top_groups",
    "model_dir",
    "provider",
    "intra_op_threads",
    "max_tokens",
    "log_level",
]
EXPLAIN_SETTINGS = [
    "redis_url",
    "redis_password",
    "redis_password_file",
    "kb_namespace",
    "kb_max_entries",
    *FUSION_SETTINGS,
]


def register_kb(kb_subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    explain = kb_subparsers.add_parser(
        "explain", help="classify a text with and without the KB and show the evidence per expert group"
    )
    explain.add_argument("text", help="the message to explain")
    explain.add_argument("--version", type=int, default=None, dest="kb_version", help="KB version (current)")
    explain.add_argument("--json", action="store_true", help="print one JSON object")
    add_settings_flags(explain, only=EXPLAIN_SETTINGS)
    explain.set_defaults(handler=_explain)


def _explain(args: argparse.Namespace) -> int:
    from kb_sync.cli import _with_store  # the kb CLI's Redis error handling; imported late (it imports us)

    settings = settings_from_args(args)

    def run(store: Any) -> int:
        snapshot = store.load(args.kb_version)
        report = explain(settings, store.client, snapshot, args.text)
        if args.json:
            import orjson

            sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            _print(report)
        return 0

    return _with_store(settings, run, "explain")


def explain(settings: Settings, client: Any, snapshot: Any, text: str) -> dict[str, Any]:
    """The explain report (plain JSON types) for ``text`` under ``snapshot``."""
    from kb_sync.embed_cache import EmbeddingCache
    from worker.classifier import serving_fusion
    from worker.encoder import Encoder

    encoder = Encoder.from_settings(settings)
    cache = EmbeddingCache(client, settings.kb_namespace, encoder.sha256, encoder.dim)
    vectors = cache.embed_entries(snapshot.entries, encoder.embed)
    index = KnowledgeIndex.build(snapshot, vectors, encoder.topics, encoder.sentiments)
    fusion = serving_fusion(settings, encoder)
    out = encoder.encode([text])
    (with_kb,) = fusion.fuse(out.embedding, out.sentiment_logits, out.topic_logits, index)
    (without,) = fusion.fuse(out.embedding, out.sentiment_logits, out.topic_logits, None)
    by_group: dict[str, list[dict[str, Any]]] = {group: [] for group in with_kb.routed_groups}
    cosine = (vectors @ out.embedding[0]).astype(float)
    position = {entry.id: i for i, entry in enumerate(snapshot.entries)}
    for item in with_kb.evidence:
        by_group[item["group"]].append({**item, "cosine": round(float(cosine[position[item["id"]]]), 4)})
    return {
        "text": text,
        "kb_version": snapshot.version,
        "kb_entries": len(snapshot),
        "model": {"name": encoder.name, "version": encoder.version, "sha256": encoder.sha256},
        "fusion_params": "fitted" if fusion.params.meta else "zero-shot defaults",
        "truncated": bool(out.truncated[0]),
        "with_kb": _prediction(with_kb),
        "without_kb": _prediction(without),
        "gate": with_kb.gate,
        "gates": with_kb.gates,
        "routed_groups": with_kb.routed_groups,
        "evidence_by_group": by_group,
        "embedding_cache": {"hits": cache.hits, "misses": cache.misses},
    }


def _prediction(result: FusionResult) -> dict[str, Any]:
    label = max(result.sentiment, key=result.sentiment.__getitem__)
    return {
        "sentiment": {
            "label": label,
            "probability": result.sentiment[label],
            "probabilities": result.sentiment,
        },
        "topic": {
            "label": result.topics[0][0],
            "probability": result.topics[0][1],
            "kb_only": result.topic_kb_only,
        },
        "topics": [{"label": t, "probability": p} for t, p in result.topics],
    }


def _print(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # piped: don't fold ids and texts at rich's default 80 columns
        console = Console(width=160)
    console.print(
        f"KB version [bold]{report['kb_version']}[/bold] ({report['kb_entries']} points), "
        f"model {report['model']['name']} {report['model']['version']}, fusion {report['fusion_params']}"
    )
    table = Table(title="prediction")
    for column in ("", "sentiment", "topic", "top topics"):
        table.add_column(column)
    for name in ("without_kb", "with_kb"):
        p = report[name]
        kb_only = " (KB-only)" if p["topic"]["kb_only"] else ""
        table.add_row(
            name.replace("_", " "),
            f"{p['sentiment']['label']} {p['sentiment']['probability']:.2f}",
            f"{p['topic']['label']}{kb_only} {p['topic']['probability']:.2f}",
            ", ".join(f"{t['label']} {t['probability']:.2f}" for t in p["topics"]),
        )
    console.print(table)
    gates = report["gates"]
    console.print(
        f"gate (weight of the KB read-out): sentiment {gates['sentiment']:.3f}, topic {gates['topic']:.3f}; "
        f"routed groups: {', '.join(report['routed_groups']) or '-'}"
    )
    for group, items in report["evidence_by_group"].items():
        points = Table(title=f"group {group}")
        for column in ("attention", "cosine", "id", "kind", "topic", "sentiment", "weight", "text"):
            points.add_column(column, overflow="fold")
        for item in items:
            points.add_row(
                f"{item['attention']:.3f}",
                f"{item['cosine']:.3f}",
                item["id"],
                item["kind"],
                item["topic"] or "-",
                item["sentiment"] or "-",
                f"{item['weight']:g}",
                item["text"],
            )
        if not items:
            points.add_row("-", "-", "(no point of this group among the top attended)", "", "", "", "", "")
        console.print(points)
