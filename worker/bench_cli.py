"""`finsignal bench`: the throughput harness of issue 7 (rows 1-6 in one run; see BENCHMARKS.md).

The harness lives in the source checkout's ``bench/`` (texts, torch baselines, plots), so this command
needs a checkout and the train extra (torch, transformers); ``--rows 3,4,6`` runs without torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType

from worker.cli import add_settings_flags, settings_from_args
from worker.config import REPO_ROOT

BENCH_SETTINGS = [
    "model_dir",
    "intra_op_threads",
    "intra_op_spinning",
    "inference_streams",
    "max_batch_size",
    "max_batch_tokens",
    "max_batch_delay_ms",
    "max_tokens",
    "kb_top_m",
    "kb_top_groups",
    "producer_linger_ms",
    "log_level",
]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="throughput benchmark: baselines, finsignal, end to end and the machine's limit (issue 7)",
        description=(
            "Run the rows of issue 7 back to back on bench/data/texts.jsonl: FinBERT-class pipeline "
            "(random weights), dense MiniLM in PyTorch and ONNX INT8, finsignal's encoder + fusion, "
            "end to end through embedded Tansu + Redis, and the encoder's fraction of a measured "
            "matmul peak. Prints a table, writes bench/results/<name>.json, PNG plots and the "
            "generated section of BENCHMARKS.md."
        ),
    )
    parser.add_argument("--quick", action="store_true", help="small N everywhere (CI smoke, ~1-2 min)")
    parser.add_argument(
        "--rows",
        default="1,2,3,4,5,6",
        help="comma-separated rows to run (4 is added when 5 or 6 is asked for) [default: all]",
    )
    parser.add_argument("--scaling", action="store_true", help="also run 1 vs 2 worker processes")
    parser.add_argument(
        "--drain",
        action="store_true",
        help="also time --procs worker processes draining a produced backlog (their rate, not the replay's)",
    )
    parser.add_argument(
        "--procs",
        default="1,2",
        metavar="N,N,...",
        help="worker process counts for --scaling and --drain; the first is the base of ratios [1,2]",
    )
    parser.add_argument("--name", default=None, help="result name: bench/results/<name>.json [quick|full]")
    parser.add_argument("--out-dir", type=Path, default=None, help="folder for the JSON and PNG plots")
    parser.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help="Markdown file whose generated section is rewritten [default: BENCHMARKS.md, none with --quick]",
    )
    parser.add_argument("--no-markdown", action="store_true", help="do not touch any Markdown file")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    add_settings_flags(parser, only=BENCH_SETTINGS)
    parser.set_defaults(handler=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    rows = tuple(r.strip() for r in args.rows.split(",") if r.strip())
    unknown = [r for r in rows if r not in {"1", "2", "3", "4", "5", "6"}]
    if unknown:
        print(f"finsignal bench: --rows: unknown row(s) {', '.join(unknown)}; use 1-6", file=sys.stderr)
        return 2
    try:
        harness = _bench_module("bench.harness")
    except RuntimeError as exc:
        print(f"finsignal bench: {exc}", file=sys.stderr)
        return 2
    try:
        procs = tuple(int(p) for p in args.procs.split(",") if p.strip())
    except ValueError:
        procs = ()
    if not procs or min(procs) < 1:
        print(
            f"finsignal bench: --procs: {args.procs!r} is not a list of counts >= 1, e.g. 1,2,4",
            file=sys.stderr,
        )
        return 2
    markdown = None
    if not args.no_markdown:
        markdown = args.markdown or (None if args.quick else REPO_ROOT / "BENCHMARKS.md")
    options = harness.Options(
        quick=args.quick,
        rows=rows,
        scaling=args.scaling,
        procs=procs,
        drain=args.drain,
        name=args.name,
        out_dir=args.out_dir or harness.RESULTS_DIR,
        markdown=markdown,
        plots=not args.no_plots,
    )
    command = "finsignal " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else "finsignal bench"
    harness.run(settings, options, command=command)
    return 0


def _bench_module(name: str) -> ModuleType:
    """Import from the checkout's bench/ (not part of the wheel: it carries data and torch baselines)."""
    if not (REPO_ROOT / "bench" / "harness.py").is_file():
        raise RuntimeError(
            f"the bench harness is not here ({REPO_ROOT / 'bench'}): run `finsignal bench` from a source "
            "checkout of finsignal with the train extra installed (pip install -e '.[dev,train]')"
        )
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    return importlib.import_module(name)
