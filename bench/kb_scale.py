"""KB scale (issue 4): classify throughput with a 1,000- vs a 100,000-point KB, and a live 1,000-point reload.

(a) ``Classifier.classify_texts`` on the bench texts (bench/data/texts.jsonl) in batches of
    ``max_batch_size``, with a 1,000-point and a 100,000-point KB, in alternating rounds of the same run;
    the ratio of the throughputs is the target (>= 0.90). The fusion share of a batch is timed on its own
    too, since that is the only part whose cost depends on the KB.
(b) On a real Redis: a 100,000-point KB is served (embedding cache warm), a thread keeps classifying
    batches, and ``finsignal kb publish --delta`` (a separate process, as an operator would run it)
    changes 1,000 points, ``--reloads`` times in a row (other points each time). Reported per reload: time
    from the publish notice to the new version serving, and whether the large groups' inverted lists were
    kept or fitted again; batch times (p50 / p99 / max) before vs during the reloads (target: reload
    < 10 s, no batch waits on it).

Synthetic points paraphrase the default KB by templates (prefix x suffix x company); their embeddings are
computed once with the shipped encoder and kept under ``.cache/kb-scale/`` so reruns are fast.

Usage: python bench/kb_scale.py [--rounds 4] [--reloads 3] [--skip-reload] [--skip-throughput]
       [--json-out PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/kb_scale.py` from a checkout
    sys.path.insert(0, str(ROOT))

from kb_sync.embed_cache import EmbeddingCache  # noqa: E402
from kb_sync.loader import load_default_kb  # noqa: E402
from kb_sync.model import KBEntry, KBSnapshot  # noqa: E402
from worker.config import Settings, load_settings  # noqa: E402
from worker.encoder import Encoder  # noqa: E402

TEXTS_PATH = ROOT / "bench" / "data" / "texts.jsonl"
CACHE_DIR = ROOT / ".cache" / "kb-scale"
ENTITIES_PATH = ROOT / "kb_sync" / "data" / "entities.json"
SMALL, LARGE, CHANGED = 1_000, 100_000, 1_000
TEMPLATE_VERSION = "1"  # bump when the templates change: the cached vectors are keyed by it

PREFIXES = (
    "",
    "Report: ",
    "Breaking: ",
    "Update: ",
    "Analysts say ",
    "Sources say ",
    "Market wrap: ",
    "Exclusive: ",
    "Desk note: ",
    "Morning call: ",
    "Flash: ",
    "Traders note ",
    "Headline: ",
    "Chatter: ",
    "Wire: ",
    "Late news: ",
)
SUFFIXES = (
    "",
    " (via Reuters)",
    " according to people familiar with the matter",
    " in early trading",
    ", {company} watchers said",
    " as {company} investors react",
    " ahead of the open",
    ", a filing showed",
    " after the close",
    " amid heavy volume",
    ", {company} desk notes",
    " per a research note",
    " on Tuesday",
    " this week",
    ", traders said",
    " at midday",
)


# --- synthetic KB -------------------------------------------------------------------------------------


def _companies() -> list[str]:
    data = json.loads(ENTITIES_PATH.read_text())
    return [str(e["name"]) for e in data["entities"]]


def synthetic_entries(n: int) -> tuple[KBEntry, ...]:
    """n points: the default KB first, then templated paraphrases of it (same labels, group, weight)."""
    base = load_default_kb()
    companies = _companies()
    per_pass = len(PREFIXES) * len(SUFFIXES)
    out: list[KBEntry] = []
    for i in range(n):
        entry = base[i % len(base)]
        variant = i // len(base)
        if variant == 0:
            out.append(entry)
            continue
        prefix = PREFIXES[variant % len(PREFIXES)]
        suffix = SUFFIXES[(variant // len(PREFIXES)) % len(SUFFIXES)]
        company = companies[(variant + i) % len(companies)]
        text = f"{prefix}{entry.text}{suffix.format(company=company)}"
        if variant >= per_pass:  # past the template grid: a company mention keeps texts distinct
            text = f"{text} ({companies[(variant // per_pass + i) % len(companies)]})"
        out.append(replace(entry, id=f"syn:{variant}:{entry.id}", text=text[:1000], author="kb-scale"))
    return tuple(out)


def changed_entries(entries: Sequence[KBEntry], count: int, round_: int = 0) -> tuple[KBEntry, ...]:
    """``count`` points spread over the KB with a reworded text (so their embeddings are new); each
    round rewords other points."""
    step = max(1, len(entries) // count)
    suffix = " (revised)" if round_ == 0 else f" (revised, round {round_ + 1})"
    return tuple(replace(e, text=f"{e.text}{suffix}") for e in entries[round_ % step :: step][:count])


def embeddings_for(encoder: Encoder, entries: Sequence[KBEntry], what: str) -> np.ndarray:
    """Vectors of ``entries`` from .cache/kb-scale/ (keyed by model and texts), embedding only once."""
    digest = hashlib.sha256(
        (encoder.sha256 + TEMPLATE_VERSION + "\x00".join(e.text for e in entries)).encode()
    ).hexdigest()[:20]
    path = CACHE_DIR / f"{what}-{len(entries)}-{digest}.npy"
    if path.is_file():
        return np.load(path)
    print(f"embedding {len(entries)} {what} points once (cached in {path.relative_to(ROOT)}) ...", flush=True)
    start = time.perf_counter()
    parts = []
    chunk = 2048
    for lo in range(0, len(entries), chunk):
        parts.append(encoder.embed([e.text for e in entries[lo : lo + chunk]], batch_size=128))
        done = min(lo + chunk, len(entries))
        print(f"  {done}/{len(entries)} ({done / (time.perf_counter() - start):.0f}/s)", flush=True)
    vectors = np.concatenate(parts).astype(np.float32)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def warm_cache(
    client: Any, settings: Settings, encoder: Encoder, entries: Sequence[KBEntry], vectors: np.ndarray
) -> None:
    cache = EmbeddingCache(client, settings.kb_namespace, encoder.sha256, encoder.dim)
    cache.put_many({e.content_hash: v for e, v in zip(entries, vectors, strict=True)})


# --- (a) throughput -----------------------------------------------------------------------------------


def load_texts(limit: int | None) -> list[str]:
    texts = [orjson.loads(line)["text"] for line in TEXTS_PATH.read_bytes().splitlines() if line.strip()]
    return texts[:limit] if limit else texts


def _batches(texts: list[str], size: int) -> list[list[str]]:
    return [texts[i : i + size] for i in range(0, len(texts), size)]


def throughput(classifiers: dict[str, Any], texts: list[str], batch: int, rounds: int) -> dict[str, Any]:
    """Per KB: messages/s and fuse ms / batch. Every batch runs on both KBs back to back (order
    alternating), so a load swing on a shared machine hits both sides alike; a round is one pass."""
    batches = _batches(texts, batch)
    for clf in classifiers.values():  # warm-up: per-index bias cache, BLAS and ORT threads
        for b in batches[:3]:
            clf.classify_texts(b)
    names = list(classifiers)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        spent = dict.fromkeys(names, 0.0)
        for i, b in enumerate(batches):
            for name in names if (i + r) % 2 == 0 else names[::-1]:
                start = time.perf_counter()
                classifiers[name].classify_texts(b)
                spent[name] += time.perf_counter() - start
        for name in names:
            rates[name].append(len(texts) / spent[name])
        print(
            f"  round {r + 1}: " + ", ".join(f"{n}-point KB {rates[n][-1]:.0f} msg/s" for n in names),
            flush=True,
        )
    # Fusion alone on fixed encoder outputs (the part whose cost depends on the KB), interleaved too.
    encoder = next(iter(classifiers.values())).encoder
    outputs = [encoder.encode(b) for b in batches[:20]]
    fuse: dict[str, list[float]] = {name: [] for name in classifiers}
    for r in range(5):
        for i, out in enumerate(outputs):
            for name in names if (i + r) % 2 == 0 else names[::-1]:
                clf = classifiers[name]
                start = time.perf_counter()
                clf.fusion.fuse(out.embedding, out.sentiment_logits, out.topic_logits, clf.index)
                fuse[name].append(1000 * (time.perf_counter() - start))
    small, large = list(classifiers)
    recall = recall_vs_exact(classifiers[large], outputs)
    report: dict[str, Any] = {
        "texts": len(texts),
        "batch": batch,
        "rounds": rounds,
        "msg_per_s": {name: len(v) / sum(1 / x for x in v) for name, v in rates.items()},
        "msg_per_s_rounds": rates,
        "ratio_per_round": [a / b for a, b in zip(rates[large], rates[small], strict=True)],
        "fuse_ms_per_batch_median": {name: statistics.median(v) for name, v in fuse.items()},
        "fuse_ms_per_batch_p90": {name: float(np.percentile(v, 90)) for name, v in fuse.items()},
    }
    report["ratio_large_over_small"] = report["msg_per_s"][large] / report["msg_per_s"][small]
    report["recall_at_m_vs_exact"] = recall
    return report


def recall_vs_exact(clf: Any, outputs: Sequence[Any]) -> dict[str, float]:
    """Share of the exact top-m points (every list of the routed groups scored in float32) that the
    served search returns, over the given encoder outputs."""
    from worker.fusion import Fusion, KnowledgeIndex

    index = clf.index
    snapshot = KBSnapshot(version=index.version, entries=index.entries, published_at="", author="")
    vectors = index.vectors_at(np.arange(index.size))
    exact_index = KnowledgeIndex.build(
        snapshot, vectors, index.topics[: index.n_head_topics], index.sentiments, reduced_dim=0
    )
    served = clf.fusion
    exact = Fusion(
        served.params,
        served.head_topics,
        served.sentiments,
        top_m=served.top_m,
        top_groups=served.top_groups,
        nprobe=10**6,
    )
    hits = total = 0
    for out in outputs:
        got = served.read(out.embedding, index).points
        want = exact.read(out.embedding, exact_index).points
        for g, w in zip(got, want, strict=True):
            w_set = set(w[w >= 0].tolist())
            hits += len(w_set & set(g.tolist()))
            total += len(w_set)
    return {
        "recall": hits / max(total, 1),
        "messages": sum(len(o.embedding) for o in outputs),
        "nprobe": served.nprobe,
        "shortlist": served.shortlist,
        "reduced_dim": index.reduced_dim,
    }


# --- (b) live reload ----------------------------------------------------------------------------------


class BatchLoop:
    """Classifies batches in a thread until stopped; records (start, end, kb_version) per batch."""

    def __init__(self, classify: Callable[[list[str]], Any], batches: list[list[str]]) -> None:
        self.classify = classify
        self.batches = batches
        self.records: list[tuple[float, float, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="classify-loop", daemon=True)

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            start = time.monotonic()
            result = self.classify(self.batches[i % len(self.batches)])
            self.records.append((start, time.monotonic(), result.kb_version))
            i += 1


def _stats(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(max(ms)),
    }


def reload_run(
    settings: Settings,
    encoder: Encoder,
    entries: tuple[KBEntry, ...],
    vectors: np.ndarray,
    texts: list[str],
    baseline_s: float,
    rounds: int,
) -> dict[str, Any]:
    import redis

    from kb_sync.store import KBStore, redis_client
    from kb_sync.watcher import KBWatcher
    from worker.classifier import Classifier

    client = redis_client(settings, socket_timeout_s=60.0)
    store = KBStore(client, settings.kb_namespace, max_entries=settings.kb_max_entries)
    warm_cache(client, settings, encoder, entries, vectors)
    v1 = store.publish(entries, author="kb-scale", message=f"{len(entries)} synthetic points")

    classifier = Classifier(settings, encoder=encoder, cache_client=lambda: redis_client(settings))
    watcher = KBWatcher(
        lambda: redis_client(settings, socket_timeout_s=60.0),
        settings.kb_namespace,
        settings.kb_poll_interval_s,
        on_snapshot=classifier.set_kb,
        max_entries=settings.kb_max_entries,
    )
    start = time.monotonic()
    watcher.start()
    if not watcher.wait_for_version(v1, timeout=300):
        raise RuntimeError(f"KB v{v1} not served within 300 s: {watcher.last_error}")
    cold_load_s = time.monotonic() - start
    print(f"  v{v1} ({len(entries)} points, cache warm) served after {cold_load_s:.1f} s", flush=True)

    notices: list[tuple[float, int]] = []
    sub = redis.Redis.from_url(settings.redis_url)
    pubsub = sub.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"{settings.kb_namespace}:events")
    listening = threading.Event()
    listening.set()

    def listen() -> None:
        while listening.is_set():
            message = pubsub.get_message(timeout=0.05)
            if message is not None:
                notices.append((time.monotonic(), int(orjson.loads(message["data"])["version"])))

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()

    loop = BatchLoop(classifier.classify_texts, _batches(texts, settings.max_batch_size))
    loop.thread.start()
    time.sleep(baseline_s)
    reloads = []
    current = entries
    for round_ in range(rounds):
        changed = changed_entries(current, CHANGED, round_)
        by_id = {e.id: e for e in changed}
        current = tuple(by_id.get(e.id, e) for e in current)
        reloads.append(_one_reload(settings, store, classifier, watcher, loop, changed, notices))
        r = reloads[-1]
        print(
            f"  reload {round_ + 1}: notice -> serving {r['notice_to_serving_s']:.2f} s "
            f"(publish command {r['publish_command_s']:.1f} s)",
            flush=True,
        )
        time.sleep(3.0)  # a few batches on the new version
    loop.stop.set()
    loop.thread.join(30)
    watcher.stop()
    listening.clear()
    listener.join(1)
    pubsub.close()
    sub.close()

    records = loop.records
    first_cmd = reloads[0]["_cmd_start"]
    windows = [(r["_notice"], r["_served"]) for r in reloads]
    before = [1000 * (e - s) for s, e, _ in records if e < first_cmd]
    during = [1000 * (e - s) for s, e, _ in records if any(e >= a and s <= b for a, b in windows)]
    after = [1000 * (e - s) for s, e, _ in records if s > windows[-1][1]]
    keys = list(client.scan_iter(f"{settings.kb_namespace}*"))
    if keys:
        client.delete(*keys)
    client.close()
    seconds = [r["notice_to_serving_s"] for r in reloads]
    return {
        "kb_points": len(entries),
        "changed_points": CHANGED,
        "rounds": rounds,
        "cold_load_s": cold_load_s,
        "reloads": [{k: v for k, v in r.items() if not k.startswith("_")} for r in reloads],
        "reload_s_notice_to_serving": statistics.median(seconds),
        "reload_s_notice_to_serving_max": max(seconds),
        "batches_before": _stats(before),
        "batches_during_reload": _stats(during),
        "batches_after": _stats(after),
    }


def _one_reload(
    settings: Settings,
    store: Any,
    classifier: Any,
    watcher: Any,
    loop: BatchLoop,
    changed: tuple[KBEntry, ...],
    notices: list[tuple[float, int]],
) -> dict[str, Any]:
    """Publish one delta with ``finsignal kb publish --delta`` and time it until the new version serves."""
    with tempfile.TemporaryDirectory() as tmp:
        delta = Path(tmp) / "delta.jsonl"
        delta.write_bytes(b"".join(orjson.dumps({"op": "upsert", **e.to_dict()}) + b"\n" for e in changed))
        cmd_start = time.monotonic()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "worker",
                "kb",
                "publish",
                str(delta),
                "--delta",
                "--author",
                "kb-scale",
                "--redis-url",
                settings.redis_url,
                "--kb-namespace",
                settings.kb_namespace,
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
        cmd_s = time.monotonic() - cmd_start
    if proc.returncode != 0:
        loop.stop.set()
        raise RuntimeError(f"kb publish failed: {proc.stderr}")
    version = store.current_version()
    while classifier.kb_version != version:
        if time.monotonic() - cmd_start > 120:
            loop.stop.set()
            raise RuntimeError(f"KB v{version} not served within 120 s: {watcher.last_error}")
        time.sleep(0.005)
    served = time.monotonic()
    notice = next((t for t, v in notices if v == version), float("nan"))
    index = classifier.index
    return {
        "version": version,
        "publish_command_s": cmd_s,
        "notice_to_serving_s": served - notice,
        "command_start_to_serving_s": served - cmd_start,
        "lists_kept_groups": len(index.kept_groups),
        "lists_refit_groups": len(index.refit_groups),
        "_cmd_start": cmd_start,
        "_notice": notice,
        "_served": served,
    }


# --- main ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="alternating timed rounds per KB size (a)")
    parser.add_argument("--texts", type=int, default=None, help="bench texts used (default: all)")
    parser.add_argument("--baseline-s", type=float, default=8.0, help="batches timed before the publish (b)")
    parser.add_argument("--reloads", type=int, default=3, help="successive 1,000-point reloads timed (b)")
    parser.add_argument("--skip-throughput", action="store_true", help="only (b)")
    parser.add_argument("--skip-reload", action="store_true", help="only (a)")
    parser.add_argument("--json-out", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args()

    from kb_sync.store import redis_client
    from worker.classifier import Classifier
    from worker.embedded import start_redis

    settings = load_settings(kb_namespace=f"kb-scale:{int(time.time())}", kb_poll_interval_s=1.0)
    encoder = Encoder.from_settings(settings)
    encoder.warm_up()
    entries = synthetic_entries(LARGE)
    vectors = embeddings_for(encoder, entries, "points")
    texts = load_texts(args.texts)
    report: dict[str, Any] = {"encoder": encoder.name, "intra_op_threads": settings.intra_op_threads}

    with start_redis() as server:
        settings = load_settings(
            redis_url=server.url, kb_namespace=settings.kb_namespace, kb_poll_interval_s=1.0
        )
        if not args.skip_throughput:
            print(f"(a) classify throughput, {SMALL} vs {LARGE} points, {len(texts)} texts", flush=True)
            client = redis_client(settings, socket_timeout_s=60.0)
            warm_cache(client, settings, encoder, entries, vectors)
            classifiers = {}
            for n in (SMALL, LARGE):
                clf = Classifier(settings, encoder=encoder, cache_client=lambda: redis_client(settings))
                start = time.perf_counter()
                clf.set_kb(KBSnapshot(version=n, entries=entries[:n], published_at="", author="kb-scale"))
                print(f"  {n}-point index built (cache warm) in {time.perf_counter() - start:.1f} s")
                classifiers[str(n)] = clf
            report["throughput"] = throughput(classifiers, texts, settings.max_batch_size, args.rounds)
            client.delete(f"{settings.kb_namespace}:emb:{encoder.sha256}")
            client.close()
            del classifiers
        if not args.skip_reload:
            print(f"(b) reload changing {CHANGED} of {LARGE} points while classifying", flush=True)
            report["reload"] = reload_run(
                settings, encoder, entries, vectors, texts, args.baseline_s, args.reloads
            )

    print_report(report)
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def print_report(report: dict[str, Any]) -> None:
    t = report.get("throughput")
    if t:
        small, large = (str(SMALL), str(LARGE))
        print(
            f"\n(a) classify_texts on {t['texts']} bench texts, batch {t['batch']}, {t['rounds']} rounds each"
        )
        for n in (small, large):
            print(
                f"  {int(n):>7} points: {t['msg_per_s'][n]:7.0f} msg/s (all rounds); "
                f"fusion {t['fuse_ms_per_batch_median'][n]:.2f} ms/batch "
                f"(p90 {t['fuse_ms_per_batch_p90'][n]:.2f})"
            )
        per_round = ", ".join(f"{x:.3f}" for x in t["ratio_per_round"])
        print(f"  throughput ratio {LARGE}/{SMALL}: {t['ratio_large_over_small']:.3f} (target >= 0.90)")
        print(f"  ratio per round: {per_round}")
        rc = t["recall_at_m_vs_exact"]
        print(
            f"  top-m recall vs an exact scan of the routed groups: {rc['recall']:.3f} "
            f"({rc['messages']} texts; nprobe {rc['nprobe']}, PCA {rc['reduced_dim']} dims, "
            f"shortlist {rc['shortlist']})"
        )
    r = report.get("reload")
    if r:
        print(
            f"\n(b) reload: {r['changed_points']} of {r['kb_points']} points changed, cache warm for the rest"
        )
        print(f"  cold load of the {r['kb_points']}-point KB (all cache hits): {r['cold_load_s']:.1f} s")
        for i, one in enumerate(r["reloads"]):
            print(
                f"  reload {i + 1}: publish notice -> serving {one['notice_to_serving_s']:.2f} s "
                f"(command start -> serving {one['command_start_to_serving_s']:.2f} s; `kb publish --delta` "
                f"{one['publish_command_s']:.1f} s; lists kept / refit in {one['lists_kept_groups']} / "
                f"{one['lists_refit_groups']} groups)"
            )
        print(
            f"  median notice -> serving {r['reload_s_notice_to_serving']:.2f} s, max "
            f"{r['reload_s_notice_to_serving_max']:.2f} s (target < 10 s)"
        )
        for name in ("batches_before", "batches_during_reload", "batches_after"):
            s = r[name]
            if s["n"]:
                print(
                    f"  {name.replace('_', ' '):<22} n={s['n']:>4}  p50 {s['p50_ms']:6.1f} ms  "
                    f"p99 {s['p99_ms']:6.1f} ms  max {s['max_ms']:6.1f} ms"
                )


if __name__ == "__main__":
    raise SystemExit(main())
