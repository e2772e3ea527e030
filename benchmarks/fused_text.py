"""The fused text pipeline against the Python-step text ensemble and the bare model, on serve-repo
and on Triton's C++ ONNX Runtime backend, over HTTP and gRPC, in one run.

    python benchmarks/fused_text.py                    # 3 alternating rounds of 4 s a figure
    python benchmarks/fused_text.py --rows 8 --out docs/FUSED_TEXT_BENCHMARK.md
    python benchmarks/fused_text.py --backend-directory ../shared/reference-backends

Model: a byte-level BPE (RoBERTa-style) 3-class classifier made from its config with a tokenizer
trained on generated text (tests/fixtures_text.py: 2 layers, 16 hidden units, 24 tokens), built by
build-repo with ``fuse: true``: ``reviews_bpe`` (token ids in), ``reviews_bpe_ensemble`` (strings
in: the Python tokenizer step, then the model) and ``reviews_bpe_ensemble_fused`` (strings in: the
tokenizer as onnxruntime-extensions ops inside the model's graph). The WordPiece example
(``review_text``) does not fuse (docs/FUSED.md says why), so it is not measured here.

Load: ``wrk`` (HTTP, KServe v2 binary tensors) and ``h2load`` (gRPC), one thread, 32 connections,
``--rows`` texts a request (the bare model: the same texts' token ids). Each round loads every
figure once, in the opposite order to the round before; a cell is its figure's median round, a
ratio the median of the rounds' ratios with their range. The C++ backend's figures need
``--backend-directory`` (a folder holding Triton's ``onnxruntime`` backend, such as
../shared/reference-backends); its ``libortextensions.so`` is op_libraries' standalone copy, put
on the server's LD_LIBRARY_PATH as deploy/triton does in the NGC image.
"""
from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from harness import ReferenceServer, tree_cpu_seconds  # noqa: E402
from speed import CONNECTIONS, Figure, ServeRepo, fmt, median_figure, ratio  # noqa: E402
from tritonforge.builder import BuildOptions, build_repository  # noqa: E402
from tritonforge.loadtests.native import run_h2load, run_wrk  # noqa: E402

NAME = "reviews_bpe"
BARE, ENSEMBLE, FUSED = NAME, f"{NAME}_ensemble", f"{NAME}_ensemble_fused"
MODELS = (BARE, ENSEMBLE, FUSED)
SIDECAR = "preprocess: {step: text}\npostprocess: {step: classify, top_k: 3}\nfuse: true\n"
TEXT = "the film was not really very good but the actor was great"


def build(workdir: Path, rows: int) -> tuple[Path, dict[str, dict[str, np.ndarray]]]:
    """The classifier built with its ensemble and fused entry, and each figure's request."""
    from fixtures_text import save_model
    from transformers import AutoTokenizer

    models = workdir / "models"
    models.mkdir()
    save_model(models / NAME, "roberta")
    (models / f"{NAME}.yaml").write_text(SIDECAR)
    repo = workdir / "repo"
    results = build_repository(models, repo, BuildOptions(device="cpu", fuse=True))
    failed = [f"{r.name}: {r.status.name} {r.reason}" for r in results if r.status.name != "OK"]
    if failed:
        raise SystemExit("build failed or not fused: " + "; ".join(failed))
    texts = [TEXT] * rows
    encoded = AutoTokenizer.from_pretrained(str(models / NAME))(texts, padding=True, truncation=True, return_tensors="np")
    tokens = {n: encoded[n].astype(np.int64) for n in ("input_ids", "attention_mask")}
    strings = {"RAW": np.array([[t.encode()] for t in texts], dtype=object)}
    return repo, {BARE: tokens, ENSEMBLE: strings, FUSED: strings}


def measure(server, protocol: str, model: str, inputs: dict[str, np.ndarray], seconds: float) -> Figure:
    before, started = tree_cpu_seconds(server.pid), time.monotonic()
    if protocol == "http":
        load = run_wrk(server.url, model, inputs, connections=CONNECTIONS, seconds=seconds)
    else:
        load = run_h2load(server.grpc_url, model, inputs, connections=CONNECTIONS, seconds=seconds)
    spent, elapsed = tree_cpu_seconds(server.pid) - before, time.monotonic() - started
    return Figure(load, 1e6 * spent / max(1.0, load.requests_per_s * elapsed))


class ServeRepoBoth(ServeRepo):
    @property
    def grpc_url(self) -> str:
        return self.server.grpc_url


def reference_server(stack: ExitStack, repo: Path, backends: Path, scratch: Path):
    """Triton's C++ ONNX Runtime backend with onnxruntime-extensions' library on LD_LIBRARY_PATH."""
    from tritonforge.repository import op_libraries

    folder = op_libraries.standalone_copy("ortextensions", scratch / "op_libraries").parent
    before = os.environ.get("LD_LIBRARY_PATH")
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join([str(folder)] + ([before] if before else []))
    return stack.enter_context(ReferenceServer(repo, backends, list(MODELS)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4, help="seconds a figure, each round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1, help="texts a request")
    parser.add_argument("--backend-directory", type=Path, default=None, help="a folder of Triton backends (its onnxruntime)")
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped run still stops its servers
    rounds: dict[tuple[str, str, str], list[Figure]] = {}
    args.load = [os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="tritonforge-fused-text-bench-") as scratch, ExitStack() as stack:
        repo, requests = build(Path(scratch), args.rows)
        servers = {"serve-repo": stack.enter_context(ServeRepoBoth(repo, list(MODELS)))}
        if args.backend_directory:
            servers["C++ backend"] = reference_server(stack, repo, args.backend_directory, Path(scratch))
        figures = [(s, p, m) for s in servers for p in ("http", "grpc") for m in MODELS]
        for server, protocol, model in figures:  # warm-up: the first batches, the stubs' caches
            measure(servers[server], protocol, model, requests[model], 1)
        for number in range(args.rounds):
            for server, protocol, model in (figures if number % 2 == 0 else figures[::-1]):
                figure = measure(servers[server], protocol, model, requests[model], args.seconds)
                rounds.setdefault((server, protocol, model), []).append(figure)
                print(f"  round {number + 1}: {server} {protocol} {model}: {fmt([figure])}", flush=True)
    args.load.append(os.getloadavg())
    text = report(rounds, args)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


def report(r: dict, args) -> str:
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
             f"tritonserver 2.51.0, wrk/h2load 1 thread, {CONNECTIONS} connections, {args.rows} text(s) a request, "
             f"{args.rounds} alternating rounds of {args.seconds:g} s a figure; load average "
             f"{' '.join(f'{x:.2f}' for x in args.load[0])} at the start, {' '.join(f'{x:.2f}' for x in args.load[-1])} at the end.", "",
             "| server | protocol | bare model, token ids | Python-step ensemble, strings | fused, strings | ensemble / bare | fused / bare |",
             "|---|---|---|---|---|---|---|"]
    for server, protocol in dict.fromkeys((s, p) for s, p, _ in r):
        cells = [median_figure(r.get((server, protocol, m))) for m in MODELS]
        rates = [f"{c.rate:,.0f} req/s" if c else "-" for c in cells]
        lines.append(f"| {server} | {protocol} | {' | '.join(rates)} | {ratio(r.get((server, protocol, ENSEMBLE)), r.get((server, protocol, BARE)))} "
                     f"| {ratio(r.get((server, protocol, FUSED)), r.get((server, protocol, BARE)))} |")
    lines += ["", "Goals (issue 30): fused >= 0.8x of bare on the C++ backend, >= 0.7x on serve-repo.", "",
              "Server CPU a request and errors, each figure:", ""]
    lines += [f"- {s} {p} `{m}`: {fmt(figures)}" for (s, p, m), figures in r.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
