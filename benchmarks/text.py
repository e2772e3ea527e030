"""The text ensemble against its bare model, and the tokenizer step against the Python backend's
floor, on serve-repo, with a native load generator, as ratios measured in one run.

    python benchmarks/text.py                          # 3 alternating rounds of 4 s a figure
    python benchmarks/text.py --rows 8 --out docs/TEXT_BENCHMARK.md

Model: the text example (examples/train_text.py: a 2-layer BERT, 32 hidden units, max 32 tokens),
built by build-repo. Load: ``wrk``, one thread, 32 connections,
KServe v2 binary tensors, ``--rows`` rows a request. Figures, in rows/s:

- ``review_text_ensemble`` fed strings, against ``review_text`` fed the same texts' token ids
  (the issue's goal: >= 0.6x);
- the tokenizer step alone (``review_text_preprocess``, strings in, token arrays out), against the
  Python backend's floor: the same step config running a model.py that reads its input and
  answers stored token rows without tokenizing (goal: the step costs <= 1.25x the floor);
- the ensemble with that empty step: the most any Python step can let the ensemble reach.

Each round loads every figure once, in the opposite order to the round before; a cell is its
figure's median round, a ratio the median of the rounds' ratios with their range; beside each
figure, the server's CPU time per request (its whole process tree) and wrk's share of the CPU.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from harness import tree_cpu_seconds  # noqa: E402
from speed import CONNECTIONS, EMPTY_STEP, Figure, ServeRepo, fmt, median_figure, ratio  # noqa: E402
from train_text import HELD_OUT, NAME, train_text_example  # noqa: E402
from tritonforge.builder import BuildOptions, build_repository  # noqa: E402
from tritonforge.loadtests.native import run_wrk  # noqa: E402

BARE, STEP, ENSEMBLE = NAME, f"{NAME}_preprocess", f"{NAME}_ensemble"
FLOOR_STEP, FLOOR_ENSEMBLE = f"{STEP}_floor", f"{ENSEMBLE}_floorstep"
FIGURES = (BARE, ENSEMBLE, STEP, FLOOR_STEP, FLOOR_ENSEMBLE)


def texts(rows: int) -> list[str]:
    return [HELD_OUT[i % len(HELD_OUT)] for i in range(rows)]


def build(workdir: Path, rows: int) -> tuple[Path, dict[str, dict[str, np.ndarray]]]:
    """The example built, a floor step and an ensemble through it beside it, and each figure's request."""
    from transformers import AutoTokenizer

    models = workdir / "models"
    models.mkdir()
    print(f"{NAME}: {train_text_example(models)}", flush=True)
    repo = workdir / "repo"
    failed = [f"{r.name}: {r.reason}" for r in build_repository(models, repo, BuildOptions(device="cpu")) if not r.ok]
    if failed:
        raise SystemExit("build failed: " + "; ".join(failed))
    encoded = AutoTokenizer.from_pretrained(str(models / NAME))(texts(rows), padding=True, truncation=True, return_tensors="np")
    tokens = {n: encoded[n].astype(np.int64) for n in ("input_ids", "token_type_ids", "attention_mask")}
    strings = {"RAW": np.array([[t.encode()] for t in texts(rows)], dtype=object)}
    # The floor: the step's own config running a model.py that answers stored token rows.
    (repo / FLOOR_STEP / "1").mkdir(parents=True)
    (repo / FLOOR_STEP / "config.pbtxt").write_text(
        (repo / STEP / "config.pbtxt").read_text().replace(f'name: "{STEP}"', f'name: "{FLOOR_STEP}"', 1))
    (repo / FLOOR_STEP / "1" / "model.py").write_text(EMPTY_STEP)
    np.savez(repo / FLOOR_STEP / "1" / "row.npz", **{n: v[:1] for n, v in tokens.items()})
    shutil.copytree(repo / ENSEMBLE, repo / FLOOR_ENSEMBLE)
    for config in [repo / FLOOR_ENSEMBLE / "config.pbtxt", *(repo / FLOOR_ENSEMBLE / "configs").glob("*.pbtxt")]:
        config.write_text(config.read_text().replace(f'name: "{ENSEMBLE}"', f'name: "{FLOOR_ENSEMBLE}"', 1)
                          .replace(f'model_name: "{STEP}"', f'model_name: "{FLOOR_STEP}"'))
    requests = {BARE: tokens, ENSEMBLE: strings, STEP: strings, FLOOR_STEP: strings, FLOOR_ENSEMBLE: strings}
    return repo, requests


def measure(server, model: str, inputs: dict[str, np.ndarray], seconds: float) -> Figure:
    before, started = tree_cpu_seconds(server.pid), time.monotonic()
    load = run_wrk(server.url, model, inputs, connections=CONNECTIONS, seconds=seconds)
    spent, elapsed = tree_cpu_seconds(server.pid) - before, time.monotonic() - started
    return Figure(load, 1e6 * spent / max(1.0, load.requests_per_s * elapsed))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4, help="seconds a figure, each round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1, help="texts a request")
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped run still stops its server
    rounds: dict[str, list[Figure]] = {}
    args.load = [os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="tritonforge-text-bench-") as scratch, ExitStack() as stack:
        repo, requests = build(Path(scratch), args.rows)
        server = stack.enter_context(ServeRepo(repo, list(FIGURES)))
        for model in FIGURES:  # warm-up: the first batches, the stubs' caches
            run_wrk(server.url, model, requests[model], connections=CONNECTIONS, seconds=1)
        for number in range(args.rounds):
            for model in (FIGURES if number % 2 == 0 else FIGURES[::-1]):
                figure = measure(server, model, requests[model], args.seconds)
                rounds.setdefault(model, []).append(figure)
                print(f"  round {number + 1}: {model}: {fmt([figure])}", flush=True)
    args.load.append(os.getloadavg())
    text = report(rounds, args)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


def rows_per_s(figures: list[Figure], rows: int) -> str:
    figure = median_figure(figures)
    return f"{figure.rate * rows:,.0f} rows/s" if figure else "-"


def report(r: dict[str, list[Figure]], args) -> str:
    step_cost = lambda f: f.server_us_per_request  # noqa: E731
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
             f"serve-repo (tritonserver 2.51.0), wrk 1 thread, {CONNECTIONS} connections, {args.rows} text(s) a request, "
             f"{args.rounds} alternating rounds of {args.seconds:g} s a figure; load average {' '.join(f'{x:.2f}' for x in args.load[0])} "
             f"at the start, {' '.join(f'{x:.2f}' for x in args.load[-1])} at the end.", "",
             "| figure | rows/s | detail |", "|---|---|---|"]
    for model, label in ((BARE, "bare model, token ids"), (ENSEMBLE, "text ensemble, strings"),
                         (FLOOR_ENSEMBLE, "ensemble with the floor step, strings"), (STEP, "tokenizer step alone, strings"),
                         (FLOOR_STEP, "floor step alone (reads, answers stored tokens)")):
        lines.append(f"| {label} (`{model}`) | {rows_per_s(r.get(model), args.rows)} | {fmt(r.get(model))} |")
    lines += ["", f"- text ensemble / bare model: {ratio(r.get(ENSEMBLE), r.get(BARE))} (goal >= 0.6x); "
              f"with the floor step: {ratio(r.get(FLOOR_ENSEMBLE), r.get(BARE))} (the most a Python step allows)",
              f"- floor / tokenizer step, rows/s: {ratio(r.get(FLOOR_STEP), r.get(STEP))}; tokenizer step / floor, server CPU "
              f"per request: {ratio(r.get(STEP), r.get(FLOOR_STEP), step_cost)} (goal <= 1.25x)"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
