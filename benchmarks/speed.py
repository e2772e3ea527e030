"""serve-repo against Triton's C++ ONNX Runtime backend and a hand-written FastAPI server, with a
native load generator, as ratios measured in one run.

    python benchmarks/speed.py                                  # serve-repo, FastAPI, the Python floor
    python benchmarks/speed.py --backend-directory DIR          # adds a column: Triton's own backends in DIR
    python benchmarks/speed.py --seconds 8 --out docs/BENCHMARKS_SPEED.md

DIR is a folder of Triton backends, e.g. the NGC image's /opt/tritonserver/backends (its
``onnxruntime`` serves the same repository as serve-repo's Python one). Load: ``wrk`` (Debian),
one thread, 32 keep-alive connections, KServe v2 binary tensors, one row per request; the
FastAPI server gets the same request as JSON, as such servers are usually written. Each figure
comes with the share of the machine's CPU that wrk itself used. Models: ONNX MLPs built by
build-repo (512-2048-2048-10 and 32-64-8, seeded weights), each with dynamic batching on and
off; the "Python floor" is a Python-backend model that reads its input and answers zeros on
the small MLP's shapes, the most any Python-based backend can reach here; INT8 against FP32
for the large MLP and the example CNN; each example ensemble against its bare model.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

from harness import FASTAPI_APP, ReferenceServer, mlp_onnx, one_row  # noqa: E402  (benchmarks/harness.py, shared with compare.py)
from tritonforge.builder import BuildOptions, build_repository  # noqa: E402
from tritonforge.loadtests.native import LoadResult, run_wrk  # noqa: E402
from tritonforge.repository import latest_samples, read_samples  # noqa: E402
from tritonforge.serving import process as triton  # noqa: E402
from tritonforge.serving import serve  # noqa: E402

CONNECTIONS = 32
LARGE, SMALL = "mlp_large", "mlp_small"
SHAPES = {LARGE: (512, 2048, 2048, 10), SMALL: (32, 64, 8)}

FLOOR_MODEL = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Reads its input and answers zeros: what a Python-based backend costs per request here."""

    def execute(self, requests):
        responses = []
        for request in requests:
            rows = pb_utils.get_input_tensor_by_name(request, "input").as_numpy().shape[0]
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("output", np.zeros((rows, 8), np.float32))]))
        return responses
'''
FLOOR_CONFIG = '''name: "python_floor"
backend: "python"
max_batch_size: 64
input { name: "input" data_type: TYPE_FP32 dims: [32] }
output { name: "output" data_type: TYPE_FP32 dims: [8] }
dynamic_batching { max_queue_delay_microseconds: 100 }
instance_group { kind: KIND_CPU count: 1 }
'''


def build(workdir: Path) -> Path:
    from train_models import train_examples

    models = workdir / "models"
    train_examples(models)
    for name, widths in SHAPES.items():
        mlp_onnx(models / f"{name}.onnx", widths, seed=len(widths))
    (models / f"{LARGE}.yaml").write_text("precision: int8\n")
    (models / "digits_cnn.yaml").write_text((models / "digits_cnn.yaml").read_text() + "precision: int8\n")
    repo = workdir / "repo"
    results = build_repository(models, repo, BuildOptions(allow_pickle=True, device="cpu"))
    failed = [f"{r.name}: {r.reason}" for r in results if not r.ok]
    if failed:
        raise SystemExit("build failed: " + "; ".join(failed))
    floor = repo / "python_floor"
    (floor / "1").mkdir(parents=True)
    (floor / "config.pbtxt").write_text(FLOOR_CONFIG)
    (floor / "1" / "model.py").write_text(FLOOR_MODEL)
    return repo


def rows_for(model: str, repo: Path) -> dict[str, np.ndarray]:
    if model in SHAPES:
        return {"input": np.random.default_rng(0).random((1, SHAPES[model][0]), np.float32)}
    if model == "python_floor":
        return {"input": np.random.default_rng(0).random((1, 32), np.float32)}
    inputs = one_row(repo, model)
    return {k: (np.array([[v.encode() if isinstance(v, str) else v for v in row] for row in a], dtype=object)
                if a.dtype == object else a) for k, a in inputs.items()}


def unbatched(server, model: str) -> None:
    """Load ``model`` again without dynamic batching (a config override; files untouched)."""
    from google.protobuf import json_format

    config, _ = server.served_config(model)
    config.ClearField("dynamic_batching")
    server.grpc_client().load_model(model, config=json_format.MessageToJson(config))


def measure(url: str, model: str, repo: Path, seconds: float) -> LoadResult:
    run_wrk(url, model, rows_for(model, repo), connections=CONNECTIONS, seconds=1)  # warm up
    return run_wrk(url, model, rows_for(model, repo), connections=CONNECTIONS, seconds=seconds)


def fastapi(onnx_path: Path, workdir: Path, model: str, seconds: float, rows) -> LoadResult:
    import signal
    import urllib.request

    app = workdir / "fastapi_app.py"
    app.write_text(FASTAPI_APP)
    port = triton.free_port()
    process = subprocess.Popen([sys.executable, str(app), str(onnx_path), str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/docs", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        run_wrk(f"127.0.0.1:{port}", model, rows, connections=CONNECTIONS, seconds=1, json_body=True)
        return run_wrk(f"127.0.0.1:{port}", model, rows, connections=CONNECTIONS, seconds=seconds, json_body=True)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


def fmt(result: LoadResult | None) -> str:
    if result is None:
        return "-"
    return f"{result.requests_per_s:,.0f} req/s, p99 {result.p99_ms:.1f} ms (wrk {100 * result.client_cpu_share:.0f}% CPU)"


def ratio(a: LoadResult | None, b: LoadResult | None) -> str:
    return f"{a.requests_per_s / b.requests_per_s:.2f}x" if a and b else "-"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--backend-directory", type=Path, default=None, help="a folder of Triton backends (its onnxruntime)")
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown tables here")
    args = parser.parse_args(argv)
    import signal

    # A stopped run still stops its servers (the context managers' exits run on SystemExit).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict[str, LoadResult | None] = {}
    # Other work on the box moves every figure: say how loaded it was (1-minute load average).
    args.load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="tritonforge-speed-") as scratch:
        workdir = Path(scratch)
        print("building the examples and the MLPs ...", flush=True)
        repo = build(workdir)
        models = [LARGE, SMALL, "python_floor", f"{LARGE}_int8", "digits_cnn", "digits_cnn_int8",
                  "churn_pipeline", "churn_pipeline_ensemble", "digits_cnn_ensemble", "house_price_xgb", "house_price_xgb_ensemble"]
        with serve(repo, control_mode="none") as server:
            for model in models:
                results[f"serve-repo {model}"] = measure(server.http_url, model, repo, args.seconds)
                print(f"  serve-repo {model}: {fmt(results[f'serve-repo {model}'])}", flush=True)
            for model in (LARGE, SMALL):
                unbatched(server, model)
                results[f"serve-repo {model} unbatched"] = measure(server.http_url, model, repo, args.seconds)
                print(f"  serve-repo {model} unbatched: {fmt(results[f'serve-repo {model} unbatched'])}", flush=True)
        if args.backend_directory:
            wanted = [LARGE, SMALL, "churn_pipeline", "churn_pipeline_ensemble", "house_price_xgb", "house_price_xgb_ensemble",
                      "digits_cnn", "digits_cnn_ensemble"]
            with ReferenceServer(repo, args.backend_directory, wanted) as reference:
                for model in wanted:
                    results[f"reference {model}"] = measure(reference.url, model, repo, args.seconds)
                    print(f"  reference {model}: {fmt(results[f'reference {model}'])}", flush=True)
            with ReferenceServer(repo, args.backend_directory, [LARGE]) as reference:
                import urllib.request

                from google.protobuf import json_format

                from tritonforge.serving.loading import read_config

                config = read_config(repo / LARGE, "cpu")
                config.ClearField("dynamic_batching")

                body = json.dumps({"parameters": {"config": json_format.MessageToJson(config)}}).encode()
                urllib.request.urlopen(urllib.request.Request(f"http://{reference.url}/v2/repository/models/{LARGE}/load", body,
                                                              {"Content-Type": "application/json"}), timeout=120)
                results[f"reference {LARGE} unbatched"] = measure(reference.url, LARGE, repo, args.seconds)
                print(f"  reference {LARGE} unbatched: {fmt(results[f'reference {LARGE} unbatched'])}", flush=True)
        for model in (LARGE, SMALL):
            results[f"fastapi {model}"] = fastapi(repo / model / "1" / "model.onnx", workdir, model, args.seconds,
                                                  rows_for(model, repo))
            print(f"  fastapi {model}: {fmt(results[f'fastapi {model}'])}", flush=True)
    args.load.append(os.getloadavg()[0])
    text = report(results, args)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


def report(r: dict, args) -> str:
    ref = bool(args.backend_directory)
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
             f"tritonserver 2.51.0, wrk 1 thread, {CONNECTIONS} connections, {args.seconds:g} s a figure, one run; "
             f"load average {args.load[0]:.1f} at the start, {args.load[-1]:.1f} at the end.", "",
             "| model | " + ("Triton's C++ ONNX Runtime backend | " if ref else "") + "serve-repo | FastAPI + uvicorn | serve-repo / C++ | Triton / FastAPI |",
             "|---|" + ("---|" if ref else "") + "---|---|---|---|"]
    for model, label in ((LARGE, "512-2048-2048-10, batching on"), (SMALL, "32-64-8, batching on")):
        cells = ([fmt(r.get(f"reference {model}"))] if ref else []) + [fmt(r[f"serve-repo {model}"]), fmt(r[f"fastapi {model}"]),
                                                                      ratio(r[f"serve-repo {model}"], r.get(f"reference {model}")),
                                                                      ratio(r[f"serve-repo {model}"], r[f"fastapi {model}"])]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    cells = ([fmt(r.get(f"reference {LARGE} unbatched"))] if ref else []) + [fmt(r[f"serve-repo {LARGE} unbatched"]), "-",
                                                                            ratio(r[f"serve-repo {LARGE} unbatched"], r.get(f"reference {LARGE} unbatched")), "-"]
    lines.append("| 512-2048-2048-10, batching off | " + " | ".join(cells) + " |")
    lines += ["", f"Python floor (a Python-backend model that answers zeros, 32-64-8 shapes): {fmt(r['serve-repo python_floor'])}; "
              f"serve-repo's small MLP = {ratio(r[f'serve-repo {SMALL}'], r['serve-repo python_floor'])} of it.", "",
              "| reduced precision (served by serve-repo) | FP32 | INT8 | INT8 / FP32 |", "|---|---|---|---|"]
    for model in (LARGE, "digits_cnn"):
        lines.append(f"| {model} | {fmt(r[f'serve-repo {model}'])} | {fmt(r[f'serve-repo {model}_int8'])} | "
                     f"{ratio(r[f'serve-repo {model}_int8'], r[f'serve-repo {model}'])} |")
    lines += ["", "| ensemble (binary tensors, one row a request) | bare model | ensemble | ensemble / bare"
              + (" | ensemble on the C++ backend's model / bare |" if ref else " |"), "|---|---|---|---|" + ("---|" if ref else "")]
    for bare, ensemble in (("churn_pipeline", "churn_pipeline_ensemble"), ("digits_cnn", "digits_cnn_ensemble"),
                           ("house_price_xgb", "house_price_xgb_ensemble")):
        row = f"| {ensemble} | {fmt(r[f'serve-repo {bare}'])} | {fmt(r[f'serve-repo {ensemble}'])} | {ratio(r[f'serve-repo {ensemble}'], r[f'serve-repo {bare}'])}"
        if ref:
            row += f" | {ratio(r.get(f'reference {ensemble}'), r.get(f'reference {bare}'))}"
        lines.append(row + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
