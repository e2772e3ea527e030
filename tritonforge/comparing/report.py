"""compare-models' report: tables for the terminal, a JSON document, an HTML page with plots.

    print(text(result)); write_json(result, Path("compare.json")); write_html(result, Path("compare.html"))

The HTML page embeds two PNGs drawn with matplotlib: the histogram of per-row score differences
(each candidate against the baseline) and each model's latency percentiles at the measured
concurrency, over each protocol measured. Files are written beside their destination and renamed into place, so a reader
never sees half a report.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import tempfile
from pathlib import Path

from .compare import Comparison, quality_drop, speedup
from .cost import GENERATORS

GENERATOR_TEXT = {"http": "wrk over HTTP, one request per connection",
                  "grpc": "h2load over gRPC, the calls multiplexed on one HTTP/2 connection"}


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _figure(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def text(result: Comparison) -> str:
    base = result.baseline
    target = f", target '{result.target}'" if result.target else ""
    lines = [f"compare-models: {result.rows} rows of {result.source}{target}; answers over {result.protocol} "
             f"at {result.url}; baseline {base.entry.label}", ""]
    agreed = {a.candidate: a for a in result.agreements}
    classifier = base.answers.kind == "classifier"
    quality_heads = (("accuracy", "log-loss", "AUC") if classifier else ("MAE", "RMSE")) if result.target else ()
    rows = [("model", "kind", *quality_heads, "same answer", "max |diff|", "mean |diff|")]
    for report in result.models:
        q = report.quality
        figures = ()
        if q is not None:
            figures = (_figure(q.accuracy), _figure(q.log_loss), _figure(q.auc)) if classifier else (_figure(q.mae, ".4g"), _figure(q.rmse, ".4g"))
        a = agreed.get(report.entry.label) if report is not base else None
        agreement = ("baseline", "-", "-") if a is None else (f"{100 * a.same_label:.1f}%", _figure(a.max_diff, ".4f"), _figure(a.mean_diff, ".4f"))
        rows.append((report.entry.label, report.answers.kind, *figures, *agreement))
    lines += ["quality and agreement (differences: " + ("class scores" if classifier else "predictions") + ")"] + _table(rows)
    if result.cost_protocols:
        rows = [("model", "protocol", "req/s", "p50 ms", "p99 ms", "errors", "gen CPU", "vs baseline")]
        for protocol in result.cost_protocols:
            for report in result.models:
                c = report.costs[protocol]
                ratio = speedup(base, report, protocol)
                rows.append((report.entry.label, protocol, f"{c.requests_per_s:,.0f}", f"{c.p50_ms:.2f}", f"{c.p99_ms:.2f}",
                             str(c.errors), f"{100 * c.client_cpu_share:.0f}%", "baseline" if report is base else f"{ratio:.2f}x"))
        generators = ", ".join(GENERATOR_TEXT[p] for p in result.cost_protocols)
        lines += ["", f"cost ({generators}; binary tensors, {result.concurrency} requests in flight, {result.duration_s:g} s "
                      "each, one after the other; gen CPU = the load generator's share of this machine)"] + _table(rows)
    for a in result.agreements:
        if not a.worst:
            lines += ["", f"{a.candidate} answers every row as {base.entry.label} does"]
            continue
        lines += ["", f"rows where {a.candidate} differs most from {base.entry.label}"]
        head = ("row", base.entry.label, a.candidate, "|diff|") + ((result.target,) if result.target else ())
        lines += _table([head] + [(str(w.row), w.baseline, w.candidate, _figure(w.difference, ".4f"))
                                  + ((w.target or "",) if result.target else ()) for w in a.worst])
    lines += ["", verdict_line(result)]
    return "\n".join(lines)


def verdict_line(result: Comparison) -> str:
    if not result.judged:
        return "verdict: not judged (no --max-disagreement, --min-speedup or --max-quality-drop given)"
    parts = [f"{v.candidate} {'passes' if v.passed else 'FAILS'} ({', '.join(v.reasons)})" for v in result.verdicts]
    return f"verdict: {'PASS' if result.passed else 'FAIL'}: " + "; ".join(parts)


def as_dict(result: Comparison) -> dict:
    base = result.baseline
    return {
        "data": {"source": result.source, "rows": result.rows, "target": result.target},
        "protocol": result.protocol, "url": result.url, "baseline": base.entry.label,
        "cost_settings": {"protocols": list(result.cost_protocols), "generators": {p: GENERATORS[p] for p in result.cost_protocols},
                          "concurrency": result.concurrency, "duration_s": result.duration_s},
        "models": [{
            "name": r.entry.name, "version": r.entry.version or None, "entry": r.entry.label, "signature": r.signature,
            "kind": r.answers.kind, "output": r.answers.output, "classes": list(r.answers.classes) or None,
            "quality": r.quality.as_dict() if r.quality else None,
            "cost": r.cost.as_dict() if r.cost else None,  # the first protocol's, as in "costs"
            "costs": {p: c.as_dict() for p, c in r.costs.items()},
            "speedup": speedup(base, r), "speedups": {p: speedup(base, r, p) for p in r.costs},
            "quality_drop": quality_drop(base, r),
        } for r in result.models],
        "agreement": [_finite(a.as_dict()) for a in result.agreements],
        "verdict": {"judged": result.judged, "passed": result.passed,
                    "candidates": [{"candidate": v.candidate, "passed": v.passed, "reasons": list(v.reasons)} for v in result.verdicts]},
    }


def _finite(value):
    """JSON has no NaN: a figure that could not be computed is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_atomically(path: Path, data: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staged = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(data)
        os.chmod(staged, 0o644)
        os.replace(staged, path)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise
    return path


def write_json(result: Comparison, path: Path) -> Path:
    return write_atomically(path, json.dumps(_finite(as_dict(result)), indent=1) + "\n")


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def plots(result: Comparison) -> list[tuple[str, str]]:
    """(caption, base64 PNG) pairs: the score-difference histogram and the latency percentiles."""
    import matplotlib

    matplotlib.use("Agg")  # no display here; and a report must not open windows
    import matplotlib.pyplot as plt

    out = []
    figure, axes = plt.subplots(figsize=(7, 3.5))
    for a in result.agreements:
        values = [d for d in a.differences if math.isfinite(d)]
        if values:
            axes.hist(values, bins=30, alpha=0.6, label=f"{a.candidate} vs {result.baseline.entry.label}")
    axes.set_xlabel("|score difference| per row" if result.baseline.answers.kind == "classifier" else "|prediction difference| per row")
    axes.set_ylabel("rows")
    axes.legend()
    out.append(("Per-row difference from the baseline", _png(figure)))
    plt.close(figure)
    if result.cost_protocols:
        figure, axes = plt.subplots(figsize=(7, 3.5))
        for protocol in result.cost_protocols:
            for r in result.models:
                c = r.costs[protocol]
                axes.plot([50, 90, 99], [c.p50_ms, c.p90_ms, c.p99_ms], marker="o", linestyle="-" if protocol == "http" else "--",
                          label=f"{r.entry.label} over {protocol}: {c.requests_per_s:,.0f} req/s")
        axes.set_xlabel(f"percentile ({result.concurrency} requests in flight)")
        axes.set_ylabel("latency (ms)")
        axes.set_xticks([50, 90, 99])
        axes.legend()
        out.append(("Latency by percentile, each model at the same concurrency", _png(figure)))
        plt.close(figure)
    return out


def page(result: Comparison) -> str:
    figures = "\n".join(f"<h2>{html.escape(caption)}</h2>\n<img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
                        for caption, data in plots(result))
    return ("<!doctype html><meta charset='utf-8'><title>compare-models</title>\n"
            f"<h1>compare-models: {html.escape(', '.join(r.entry.label for r in result.models))}</h1>\n"
            f"<pre>{html.escape(text(result))}</pre>\n{figures}\n")


def write_html(result: Comparison, path: Path) -> Path:
    return write_atomically(path, page(result))
