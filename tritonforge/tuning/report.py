"""tune-repo's report: a table for the terminal and an HTML page with throughput against p99
(every candidate a point, the Pareto front joined, the winner ringed)."""
from __future__ import annotations

import html

from .tune import Measured, TuneResult


def table(result: TuneResult) -> str:
    rows = [("candidate", "req/s", "p50 ms", "p99 ms", "conns", "wrk CPU", "")]
    for m in result.measured:
        mark = "current" if m is result.current else ("chosen" if m is result.winner else "")
        if m.error:
            rows.append((m.candidate.describe(), "-", "-", "-", "-", "-", f"skipped: {m.error}"))
        else:
            rows.append((m.candidate.describe(), f"{m.throughput:,.0f}", f"{m.p50_ms:.1f}", f"{m.p99_ms:.1f}",
                         str(m.concurrency), f"{100 * m.client_cpu_share:.0f}%", mark))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    gain = (f"{100 * (result.winner.throughput / result.current.throughput - 1):+.0f}% over the current config"
            if result.current.throughput else "the current config met no budget")
    verdict = (f"{result.model}: wrote {result.written} ({gain}); {result.why}"
               if result.changed else f"{result.model}: kept the current config: {result.why}")
    return "\n".join(lines + [verdict, f"{result.model}: {len(result.measured)} candidates in {result.seconds:.0f} s"])


def pareto(points: list[Measured]) -> list[Measured]:
    """Candidates no other beats on both throughput (higher) and p99 (lower)."""
    good = [m for m in points if not m.error]
    return sorted((m for m in good if not any(o.throughput >= m.throughput and o.p99_ms <= m.p99_ms and
                                              (o.throughput > m.throughput or o.p99_ms < m.p99_ms) for o in good)),
                  key=lambda m: m.p99_ms)


def svg(result: TuneResult, width: int = 640, height: int = 360) -> str:
    good = [m for m in result.measured if not m.error]
    if not good:
        return "<p>no candidate measured</p>"
    pad = 50
    max_x = max(m.p99_ms for m in good) * 1.1 or 1
    max_y = max(m.throughput for m in good) * 1.1 or 1

    def x(m):
        return pad + (width - 2 * pad) * m.p99_ms / max_x

    def y(m):
        return height - pad - (height - 2 * pad) * m.throughput / max_y

    front = pareto(good)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="black"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>',
             f'<text x="{width / 2}" y="{height - 15}" text-anchor="middle">p99 latency (ms), 0 - {max_x:.1f}</text>',
             f'<text x="15" y="{height / 2}" transform="rotate(-90 15 {height / 2})" text-anchor="middle">requests/s, 0 - {max_y:,.0f}</text>']
    if len(front) > 1:
        path = " ".join(f"{x(m):.1f},{y(m):.1f}" for m in front)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#2a7" stroke-width="2"/>')
    for m in good:
        colour = "#d33" if m is result.winner else ("#36c" if m is result.current else "#555")
        parts.append(f'<circle cx="{x(m):.1f}" cy="{y(m):.1f}" r="{6 if m is result.winner else 4}" fill="{colour}">'
                     f'<title>{html.escape(m.candidate.describe())}: {m.throughput:,.0f} req/s, p99 {m.p99_ms:.1f} ms</title></circle>')
    parts.append("</svg>")
    return "\n".join(parts)


def page(results: list[TuneResult]) -> str:
    sections = []
    for result in results:
        sections.append(f"<h2>{html.escape(result.model)} ({html.escape(result.target)})</h2>\n"
                        f"<p>{html.escape(result.why)}. Red: chosen; blue: the current config; green: the Pareto front.</p>\n"
                        f"{svg(result)}\n<pre>{html.escape(table(result))}</pre>")
    return ("<!doctype html><meta charset='utf-8'><title>tune-repo</title>"
            "<h1>tune-repo: throughput against p99, per model</h1>\n" + "\n".join(sections))
