"""Rendering of the demo: the live screen (rich), plain progress lines (non-TTY) and the summary."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from worker.alerts.payload import format_alert_line
from worker.demo.tally import Summary, Tally

SENTIMENT_STYLE = {"negative": "bold red", "neutral": "yellow", "positive": "bold green"}
_ALERT_LINES = 6


def live_screen(tally: Tally, *, sent: int, lines_in: int, now: float, phase: str) -> RenderableType:
    """Counters, the latest signals and the alerts panel, redrawn a few times a second."""
    counters = Text.assemble(
        ("in ", "dim"),
        (f"{sent}/{lines_in}", "bold"),
        ("   signals ", "dim"),
        (str(tally.signals), "bold green"),
        ("   DLQ ", "dim"),
        (str(tally.dlq_total), "bold magenta"),
        (f" {dlq_breakdown(tally.dlq)}" if tally.dlq else "", "magenta"),
        ("   alerts ", "dim"),
        (str(len(tally.alerts)), "bold red" if tally.alerts else "bold"),
        ("   ", ""),
        (f"{tally.rate(now):.0f} msgs/s", "bold cyan"),
        (f"   {phase}", "italic dim"),
    )
    table = Table(expand=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("time", no_wrap=True, width=8)
    table.add_column("key", no_wrap=True, max_width=22, overflow="ellipsis")
    table.add_column("topic", no_wrap=True, max_width=22, overflow="ellipsis")
    table.add_column("sentiment", no_wrap=True)
    table.add_column("p", justify="right", no_wrap=True)
    table.add_column("top evidence", no_wrap=True, overflow="ellipsis", ratio=1)
    for row in tally.recent:
        table.add_row(
            row.event_time,
            row.key,
            row.topic,
            Text(row.sentiment, style=SENTIMENT_STYLE.get(row.sentiment, "")),
            f"{row.probability:.2f}",
            row.evidence,
        )
    alert_lines = [
        Text(format_alert_line(a.payload), style="red" if a.status == "firing" else "green", no_wrap=True)
        for a in tally.alerts[-_ALERT_LINES:]
    ]
    alerts = Panel(
        Group(*alert_lines) if alert_lines else Text("no alert yet", style="dim"),
        title="news.alerts",
        border_style="red" if tally.alerts else "dim",
    )
    return Group(
        Panel(counters, title="finsignal demo", border_style="cyan"),
        Panel(table, title="news.signals (latest)", border_style="green"),
        alerts,
    )


def progress_line(tally: Tally, *, sent: int, lines_in: int, now: float) -> str:
    """One line for logs and pipes, printed every few seconds instead of a redraw."""
    dlq = f" ({dlq_breakdown(tally.dlq)})" if tally.dlq else ""
    return (
        f"demo: in {sent}/{lines_in}  signals {tally.signals}  DLQ {tally.dlq_total}{dlq}  "
        f"alerts {len(tally.alerts)}  {tally.rate(now):.0f} msgs/s"
    )


def dlq_breakdown(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items()))


def summary_lines(summary: Summary, source: str) -> list[str]:
    """The closing summary: plain text, one figure per line (the test reads these lines)."""
    firing = [a for a in summary.alerts if a.status == "firing"]
    resolved = [a for a in summary.alerts if a.status == "resolved"]
    alert_text = ", ".join(f"{a.key} ({a.severity})" for a in firing) or "none"
    if resolved:
        alert_text += f"; {len(resolved)} resolved"

    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f} ms"

    lines = [
        "finsignal demo: summary",
        f"  messages in      {summary.lines_in} ({source})",
        f"  signals out      {summary.signals}",
        f"  DLQ records      {summary.dlq_total}"
        + (f" ({dlq_breakdown(summary.dlq)})" if summary.dlq else ""),
        f"  alerts firing    {len(firing)}: {alert_text}",
        f"  throughput       {summary.throughput:.1f} msgs/s ({summary.accounted} messages in "
        f"{summary.elapsed_s:.1f} s, from the first record sent to the last output)",
        f"  end-to-end       p50 {ms(summary.latency_p50_ms)}, p99 {ms(summary.latency_p99_ms)} "
        "(timings.end_to_end_ms of the signals)",
    ]
    if summary.duplicates:
        lines.append(f"  duplicates       {summary.duplicates} (at-least-once redelivery; counted once)")
    if summary.complete:
        lines.append("  result           every message accounted for (signals + DLQ = messages in)")
    else:
        missing = summary.lines_in - summary.accounted
        lines.append(
            f"  result           INCOMPLETE: {summary.accounted} of {summary.lines_in} accounted for "
            f"({missing:+d} missing); raise --timeout or check the worker log (--log-level INFO)"
        )
    return lines
