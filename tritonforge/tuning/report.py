"""tune-repo's report: per model, a table for the terminal (each candidate's requests/s and p99 at
every concurrency measured) and an HTML page with the curves (requests/s and p99 against the
connections, one line per candidate, the chosen one and the current config marked, the
latency budget drawn), plus the figures as JSON."""
from __future__ import annotations

import html
import json

from .objective import Measured
from .tune import TuneResult

COLOURS = ("#555", "#999", "#7a5", "#a7c", "#c96", "#5aa", "#aa5", "#68c")


def _mark(result: TuneResult, m: Measured) -> str:
    return "current" if m is result.current else ("chosen" if m is result.winner and result.changed else "")


def _connections(result: TuneResult) -> list[int]:
    return sorted({c for m in result.measured for c in m.points} | set(result.objective.measured_at))


def table(result: TuneResult) -> str:
    conns = _connections(result)
    rows = [("candidate", *(h for c in conns for h in (f"req/s @{c}", f"p99 ms @{c}")), "wrk CPU", "")]
    for m in result.measured:
        figures = []
        for c in conns:
            p = m.at(c)
            figures += [f"{p.requests_per_s:,.0f}", f"{p.p99_ms:.1f}"] if p else ["-", "-"]
        note = _mark(result, m)
        problem = result.objective.problem(m)
        if m.error:
            note = f"skipped: {m.error}"
        elif problem and not note:
            note = problem
        rows.append((m.candidate.describe(), *figures, f"{100 * m.client_cpu_share:.0f}%" if m.points else "-", note))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(0, f"{result.model}: objective: {result.objective.describe()} (@N: at N connections)")
    if result.changed:
        verdict = f"{result.model}: wrote {result.written}: {result.why}"
    else:
        verdict = f"{result.model}: kept the current config: {result.why}"
    skipped = f", {result.skipped} more left out to keep the budget" if result.skipped else ""
    return "\n".join(lines + [verdict, f"{result.model}: {len(result.measured)} measurements{skipped}, "
                                       f"{result.seconds:.0f} s of a {result.budget_s:g} s budget"])


def _plot(result: TuneResult, title: str, value, unit: str, line: float | None = None,
          width: int = 520, height: int = 300) -> str:
    """One SVG line chart: ``value(point)`` against the connections (evenly spaced), a line per candidate."""
    conns = _connections(result)
    series = [(m, [(i, value(m.at(c))) for i, c in enumerate(conns) if m.at(c)]) for m in result.measured if m.points]
    if not series:
        return "<p>no candidate measured</p>"
    pad = 50
    top = max([v for _, pts in series for _, v in pts] + ([line] if line else [])) * 1.1 or 1

    def x(i):
        return pad + (width - 2 * pad) * (i / max(1, len(conns) - 1))

    def y(v):
        return height - pad - (height - 2 * pad) * v / top

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
             f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{html.escape(title)}</text>',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="black"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>',
             f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">connections</text>',
             f'<text x="14" y="{height / 2}" transform="rotate(-90 14 {height / 2})" text-anchor="middle">{unit}, 0 - {top:,.1f}</text>']
    parts += [f'<text x="{x(i):.1f}" y="{height - pad + 14}" text-anchor="middle">{c}</text>' for i, c in enumerate(conns)]
    if line:
        parts.append(f'<line x1="{pad}" y1="{y(line):.1f}" x2="{width - pad}" y2="{y(line):.1f}" stroke="#d33" '
                     f'stroke-dasharray="4 3"><title>latency budget {line:g} ms</title></line>')
    others = 0
    for m, pts in series:
        mark = _mark(result, m)
        colour = {"chosen": "#d33", "current": "#36c"}.get(mark) or COLOURS[others % len(COLOURS)]
        others += not mark
        label = html.escape(f"{m.candidate.describe()}{' (' + mark + ')' if mark else ''}")
        path = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="{3 if mark else 1.5}">'
                     f'<title>{label}</title></polyline>')
        parts += [f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"><title>{label}: {v:,.1f} {unit}</title></circle>'
                  for i, v in pts]
    parts.append("</svg>")
    return "\n".join(parts)


def page(results: list[TuneResult]) -> str:
    sections = []
    for result in results:
        budget = result.objective.latency_budget_ms if result.objective.kind == "throughput" else None
        sections.append(
            f"<h2>{html.escape(result.model)} ({html.escape(result.target)})</h2>\n"
            f"<p>Objective: {html.escape(result.objective.describe())}. {html.escape(result.why)}.</p>\n"
            "<p>One line per candidate: red, the chosen config; blue, the current one; the dashed line, the latency budget.</p>\n"
            + _plot(result, "requests/s by connections", lambda p: p.requests_per_s, "requests/s") + "\n"
            + _plot(result, "p99 latency by connections", lambda p: p.p99_ms, "p99 ms", line=budget)
            + f"\n<pre>{html.escape(table(result))}</pre>")
    return ("<!doctype html><meta charset='utf-8'><title>tune-repo</title>"
            "<h1>tune-repo: each candidate's curve, per model</h1>\n" + "\n".join(sections))


def as_json(results: list[TuneResult]) -> str:
    return json.dumps([{
        "model": r.model, "target": r.target, "objective": r.objective.describe(), "changed": r.changed, "why": r.why,
        "written": str(r.written) if r.written else None, "seconds": round(r.seconds, 1), "budget_s": r.budget_s,
        "skipped": r.skipped,
        "candidates": [{"candidate": m.candidate.describe(), "mark": _mark(r, m), "error": m.error or None,
                        "problem": r.objective.problem(m), "seconds": round(m.seconds, 2), "curve": m.curve()}
                       for m in r.measured],
    } for r in results], indent=1) + "\n"
