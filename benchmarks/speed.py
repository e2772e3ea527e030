"""serve-repo against Triton's C++ ONNX Runtime backend and a hand-written FastAPI server, with a
native load generator, as ratios measured in one run.

    python benchmarks/speed.py                                  # serve-repo, FastAPI, the Python floor
    python benchmarks/speed.py --backend-directory DIR          # adds a column: Triton's own backends in DIR
    python benchmarks/speed.py --seconds 4 --rounds 3 --out docs/BENCHMARKS_SPEED.md

DIR is a folder of Triton backends, e.g. the NGC image's /opt/tritonserver/backends (its
``onnxruntime`` serves the same repository as serve-repo's Python one). Load: ``wrk`` (Debian),
one thread, 32 keep-alive connections, KServe v2 binary tensors, one row per request; the
FastAPI server gets the same request as JSON, as such servers are usually written.

Every server is started once and stays up; the figures are taken in ``--rounds`` rounds, each
round loading every figure once, in the opposite order to the round before, so that other work
on the machine falls on both sides of every ratio. A cell is its figure's median round; a ratio is
the median of the rounds' ratios, with their range. Beside each figure: wrk's share of the machine's
CPU, and the server's CPU time per request (its whole process tree, Python stubs included).

Models: ONNX MLPs built by build-repo (512-2048-2048-10 and 32-64-8, seeded weights), with dynamic
batching and without; the "Python floor", a Python-backend model that reads its input and answers
zeros on the small MLP's shapes (the most any Python-based backend can reach here); INT8 against
FP32; each example ensemble against its bare model, and the same ensemble with an empty step (a
Python step that answers a stored row without reading it): the most any Python step can reach.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

from harness import FastAPIServer, ReferenceServer, mlp_onnx, one_row, tree_cpu_seconds  # noqa: E402
from tritonforge.builder import BuildOptions, build_repository  # noqa: E402
from tritonforge.loadtests.native import LoadResult, run_wrk  # noqa: E402
from tritonforge.serving import serve  # noqa: E402

CONNECTIONS = 32
LARGE, SMALL = "mlp_large", "mlp_small"
SHAPES = {LARGE: (512, 2048, 2048, 10), SMALL: (32, 64, 8)}
UNBATCHED = f"{LARGE}_unbatched"
ENSEMBLES = (("churn_pipeline", "churn_pipeline_ensemble"), ("digits_cnn", "digits_cnn_ensemble"),
             ("house_price_xgb", "house_price_xgb_ensemble"))

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
EMPTY_STEP = '''
import os

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """An ensemble step that does no work: per request it answers one stored row per input row."""

    def initialize(self, args):
        stored = np.load(os.path.join(args["model_repository"], args["model_version"], "row.npz"), allow_pickle=False)
        self.row = {name: (np.char.encode(stored[name], "utf-8").astype(object) if stored[name].dtype.kind == "U" else stored[name])
                    for name in stored.files}

    def execute(self, requests):
        responses = []
        for request in requests:
            rows = request.inputs()[0].as_numpy().shape[0]
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor(name, np.repeat(value, rows, axis=0)) for name, value in self.row.items()]))
        return responses
'''


def empty_step(name: str) -> str:
    return f"{name}_emptystep"


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
    copy_model(repo, LARGE, UNBATCHED, drop_batcher=True)
    for bare, ensemble in ENSEMBLES:
        add_empty_step_ensemble(repo, bare, ensemble)
    return repo


def copy_model(repo: Path, name: str, new: str, drop_batcher: bool = False) -> None:
    """``name`` again as ``new`` (its latest version; configs renamed, optionally without dynamic batching)."""
    shutil.copytree(repo / name, repo / new)
    for config in [repo / new / "config.pbtxt", *(repo / new / "configs").glob("*.pbtxt")]:
        text = config.read_text().replace(f'name: "{name}"', f'name: "{new}"', 1)
        if drop_batcher:
            text = re.sub(r"dynamic_batching \{[^}]*\}\n", "", text)
        config.write_text(text)


def add_empty_step_ensemble(repo: Path, bare: str, ensemble: str) -> None:
    """``ensemble`` with its Python step replaced by EMPTY_STEP, as ``<ensemble>_emptystep``."""
    step = next(p.parent.name for p in repo.glob("*/config.pbtxt")
                if p.parent.name.startswith(bare) and p.parent.name.endswith(("_preprocess", "_step"))
                and p.parent.name != ensemble)
    copy_model(repo, ensemble, empty_step(ensemble))
    for config in [repo / empty_step(ensemble) / "config.pbtxt", *(repo / empty_step(ensemble) / "configs").glob("*.pbtxt")]:
        config.write_text(config.read_text().replace(f'model_name: "{step}"', f'model_name: "{empty_step(step)}"'))
    new = repo / empty_step(step)
    (new / "1").mkdir(parents=True)
    (new / "config.pbtxt").write_text((repo / step / "config.pbtxt").read_text().replace(f'name: "{step}"', f'name: "{empty_step(step)}"', 1))
    (new / "1" / "model.py").write_text(EMPTY_STEP)
    row = one_row(repo, bare)
    np.savez(new / "1" / "row.npz", **{k: (v.astype(str) if v.dtype == object else v) for k, v in row.items()})


def rows_for(model: str, repo: Path) -> dict[str, np.ndarray]:
    model = model.removesuffix("_emptystep").removesuffix("_unbatched")
    if model in SHAPES:
        return {"input": np.random.default_rng(0).random((1, SHAPES[model][0]), np.float32)}
    if model == "python_floor":
        return {"input": np.random.default_rng(0).random((1, 32), np.float32)}
    inputs = one_row(repo, model)
    return {k: (np.array([[v.encode() if isinstance(v, str) else v for v in row] for row in a], dtype=object)
                if a.dtype == object else a) for k, a in inputs.items()}


@dataclass
class Figure:
    """One load run's result, with the server's CPU time per request over it."""

    load: LoadResult
    server_us_per_request: float

    @property
    def rate(self) -> float:
        return self.load.requests_per_s


def measure(server, model: str, repo: Path, seconds: float, json_body: bool = False) -> Figure:
    rows = rows_for(model, repo)
    before, started = tree_cpu_seconds(server.pid), time.monotonic()
    load = run_wrk(server.url, model, rows, connections=CONNECTIONS, seconds=seconds, json_body=json_body)
    spent, elapsed = tree_cpu_seconds(server.pid) - before, time.monotonic() - started
    return Figure(load, 1e6 * spent / max(1.0, load.requests_per_s * elapsed))


class ServeRepo:
    """serve-repo on the benchmark repository, the ``url``/``pid`` shape the other servers have."""

    def __init__(self, repo: Path, models: list[str]) -> None:
        self.context = serve(repo, control_mode="explicit", load_models=models)

    def __enter__(self):
        self.server = self.context.__enter__()
        return self

    def __exit__(self, *exc):
        return self.context.__exit__(*exc)

    @property
    def url(self) -> str:
        return self.server.http_url

    @property
    def pid(self) -> int:
        return self.server.process.pid


def plan(reference: bool) -> list[tuple[str, str, bool]]:
    """(server, model, JSON body) for every figure."""
    serve_repo = [LARGE, UNBATCHED, SMALL, "python_floor", f"{LARGE}_int8", "digits_cnn_int8"]
    for bare, ensemble in ENSEMBLES:
        serve_repo += [bare, ensemble, empty_step(ensemble)]
    figures = [("serve-repo", m, False) for m in serve_repo]
    if reference:
        figures += [("reference", m, False) for m in [LARGE, UNBATCHED, SMALL] + [m for pair in ENSEMBLES for m in pair]]
    figures += [(f"fastapi {m}", m, True) for m in (LARGE, SMALL)]
    return figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4, help="seconds a figure, each round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend-directory", type=Path, default=None, help="a folder of Triton backends (its onnxruntime)")
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown tables here")
    args = parser.parse_args(argv)
    import signal

    # A stopped run still stops its servers (the context managers' exits run on SystemExit).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    figures = plan(bool(args.backend_directory))
    rounds: dict[tuple[str, str], list[Figure]] = {}
    args.load = [os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="tritonforge-speed-") as scratch, ExitStack() as servers:
        workdir = Path(scratch)
        print("building the examples and the MLPs ...", flush=True)
        repo = build(workdir)
        started = {"serve-repo": servers.enter_context(ServeRepo(repo, sorted({m for s, m, _ in figures if s == "serve-repo"})))}
        if args.backend_directory:
            wanted = sorted({m for s, m, _ in figures if s == "reference"})
            started["reference"] = servers.enter_context(ReferenceServer(repo, args.backend_directory, wanted))
        for model in (LARGE, SMALL):
            started[f"fastapi {model}"] = servers.enter_context(FastAPIServer(repo / model / "1" / "model.onnx"))
        for name, model, json_body in figures:  # warm-up: caches, pools, the first batches
            run_wrk(started[name].url, model, rows_for(model, repo), connections=CONNECTIONS, seconds=1, json_body=json_body)
        for number in range(args.rounds):
            for name, model, json_body in (figures if number % 2 == 0 else figures[::-1]):
                figure = measure(started[name], model, repo, args.seconds, json_body)
                rounds.setdefault((name, model), []).append(figure)
                print(f"  round {number + 1}: {name} {model}: {fmt([figure])}", flush=True)
    args.load.append(os.getloadavg())
    text = report(rounds, args)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


def median_figure(figures: list[Figure] | None) -> Figure | None:
    if not figures:
        return None
    return sorted(figures, key=lambda f: f.rate)[len(figures) // 2]


def fmt(figures: list[Figure] | None) -> str:
    f = median_figure(figures)
    if f is None:
        return "-"
    errors = f", {f.load.errors} errors" if f.load.errors else ""
    return (f"{f.rate:,.0f} req/s, p99 {f.load.p99_ms:.1f} ms, server {f.server_us_per_request:,.0f} us/req "
            f"(wrk {100 * f.load.client_cpu_share:.0f}% CPU){errors}")


def ratio(a: list[Figure] | None, b: list[Figure] | None, key=lambda f: f.rate) -> str:
    """The median of the rounds' ratios, with their range."""
    if not a or not b:
        return "-"
    ratios = sorted(key(x) / key(y) for x, y in zip(a, b))
    spread = f" ({ratios[0]:.2f}-{ratios[-1]:.2f})" if len(ratios) > 1 else ""
    return f"**{statistics.median(ratios):.2f}x**{spread}"


def report(r: dict, args) -> str:
    ref = bool(args.backend_directory)
    s = lambda m: r.get(("serve-repo", m))  # noqa: E731
    c = lambda m: r.get(("reference", m))  # noqa: E731
    p99 = lambda f: f.load.p99_ms  # noqa: E731
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
             f"tritonserver 2.51.0, wrk 1 thread, {CONNECTIONS} connections, {args.rounds} alternating rounds of "
             f"{args.seconds:g} s a figure, every server up throughout; load average (1, 5, 15 min) "
             f"{' '.join(f'{x:.2f}' for x in args.load[0])} at the start, {' '.join(f'{x:.2f}' for x in args.load[-1])} at the end. "
             "A cell is the figure's median round; a ratio is the median of the rounds' ratios (their range in brackets); "
             "server us/req is the CPU time of the server's process tree per request.", "",
             "| model | " + ("Triton's C++ ONNX Runtime backend | " if ref else "") + "serve-repo | FastAPI + uvicorn (JSON) | "
             + ("serve-repo / C++ | p99 serve-repo / C++ | C++ / FastAPI | " if ref else "") + "serve-repo / FastAPI |",
             "|---|" + ("---|" if ref else "") + "---|---|" + ("---|---|---|" if ref else "") + "---|"]
    for model, label in ((LARGE, "512-2048-2048-10, batching on"), (SMALL, "32-64-8, batching on"),
                         (UNBATCHED, "512-2048-2048-10, batching off")):
        fastapi = r.get((f"fastapi {model}", model))
        cells = ([fmt(c(model))] if ref else []) + [fmt(s(model)), fmt(fastapi)]
        if ref:
            cells += [ratio(s(model), c(model)), ratio(s(model), c(model), p99), ratio(c(model), fastapi)]
        cells.append(ratio(s(model), fastapi))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", f"Python floor (a Python-backend model that answers zeros, 32-64-8 shapes): {fmt(s('python_floor'))}; "
              f"serve-repo's small MLP = {ratio(s(SMALL), s('python_floor'))} of it.", "",
              "| reduced precision (served by serve-repo) | FP32 | INT8 | INT8 / FP32 |", "|---|---|---|---|"]
    for model, fp32 in ((LARGE, s(LARGE)), ("digits_cnn", s("digits_cnn"))):
        lines.append(f"| {model} | {fmt(fp32)} | {fmt(s(f'{model}_int8'))} | {ratio(s(f'{model}_int8'), fp32)} |")
    lines += ["", "| ensemble (binary tensors, one row a request) | bare model | ensemble | ensemble / bare | "
              "same ensemble, empty step / bare | step's own cost, us/req"
              + (" | on the C++ backend's model: ensemble / bare |" if ref else " |"),
              "|---|---|---|---|---|---|" + ("---|" if ref else "")]
    for bare, ensemble in ENSEMBLES:
        own = "-"
        if s(ensemble) and s(empty_step(ensemble)):
            own = f"{median_figure(s(ensemble)).server_us_per_request - median_figure(s(empty_step(ensemble))).server_us_per_request:,.0f}"
        row = (f"| {ensemble} | {fmt(s(bare))} | {fmt(s(ensemble))} | {ratio(s(ensemble), s(bare))} | "
               f"{ratio(s(empty_step(ensemble)), s(bare))} | {own}")
        if ref:
            row += f" | {ratio(c(ensemble), c(bare))}"
        lines.append(row + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
