"""One forest served two ways by serve-repo on this CPU: built with ``--format fil`` (the FIL
stand-in: XGBoost runs the booster file, one call per batch) and as ONNX (ONNX Runtime's tree
ensemble operator), as a throughput ratio measured in one run with a native load generator.

    python benchmarks/fil_vs_onnx.py [--seconds 8] [--rows 1] [--out docs/BENCHMARKS_FIL.md]

The forest: an XGBoost binary classifier, 300 trees of depth 8, on 20,000 rows of scikit-learn's
make_classification (32 features, seeded). Load: ``wrk`` (Debian), one thread, 32 keep-alive
connections, KServe v2 binary tensors, ``--rows`` rows per request; each figure comes with the
share of the machine's CPU that wrk itself used. This measures the CPU stand-in, not FIL on a
GPU, which needs a GPU host (see README, "Trees on Triton's FIL backend").
"""
from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tritonforge.builder import BuildOptions, build_repository
from tritonforge.loadtests.native import LoadResult, run_wrk
from tritonforge.serving import serve

CONNECTIONS = 32
TREES, DEPTH, FEATURES = 300, 8, 32


def train(models: Path) -> np.ndarray:
    import xgboost as xgb
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=20_000, n_features=FEATURES, n_informative=12, random_state=0)
    x = x.astype(np.float32)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": DEPTH, "nthread": 1, "seed": 0},
                        xgb.DMatrix(x, y), TREES)
    models.mkdir(parents=True)
    for name, fmt in (("forest_onnx", "onnx"), ("forest_fil", "fil")):
        booster.save_model(models / f"{name}.json")
        (models / f"{name}.yaml").write_text(f"format: {fmt}\n")
    return x


def fmt(result: LoadResult) -> str:
    return (f"{result.requests_per_s:,.0f} req/s, p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
            f"{result.errors} errors (wrk {100 * result.client_cpu_share:.0f}% CPU)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rows", type=int, default=1, help="rows per request")
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped run still stops its server
    results = {}
    with tempfile.TemporaryDirectory(prefix="tritonforge-fil-") as scratch:
        print(f"training an XGBoost forest ({TREES} trees, depth {DEPTH}) and building it twice ...", flush=True)
        x = train(Path(scratch) / "models")
        repo = Path(scratch) / "repo"
        failed = [f"{r.name}: {r.reason}" for r in build_repository(Path(scratch) / "models", repo, BuildOptions(device="cpu"))
                  if r.status != "OK"]
        if failed:
            raise SystemExit("build failed: " + "; ".join(failed))
        rows = {"forest_onnx": {"input": x[: args.rows]}, "forest_fil": {"input__0": x[: args.rows]}}
        with serve(repo, control_mode="none") as server:
            for model in ("forest_onnx", "forest_fil"):  # warm both, then measure back to back
                run_wrk(server.http_url, model, rows[model], connections=CONNECTIONS, seconds=1)
            for model in ("forest_onnx", "forest_fil"):
                results[model] = run_wrk(server.http_url, model, rows[model], connections=CONNECTIONS, seconds=args.seconds)
                print(f"  {model}: {fmt(results[model])}", flush=True)
    ratio = results["forest_fil"].requests_per_s / results["forest_onnx"].requests_per_s
    text = "\n".join([
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"serve-repo (tritonserver 2.51.0), wrk 1 thread, {CONNECTIONS} connections, {args.rows} row(s) a request, "
        f"{args.seconds:g} s a figure, one run.", "",
        f"| XGBoost forest, {TREES} trees of depth {DEPTH}, {FEATURES} features | served by | throughput |", "|---|---|---|",
        f"| `--format onnx` | ONNX Runtime (TreeEnsembleClassifier), CPU | {fmt(results['forest_onnx'])} |",
        f"| `--format fil` | serve-repo's FIL stand-in (XGBoost on the booster file), CPU | {fmt(results['forest_fil'])} |",
        "", f"FIL stand-in / ONNX Runtime: {ratio:.2f}x", ""])
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
