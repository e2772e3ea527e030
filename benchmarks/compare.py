"""What Triton and its configuration buy, as ratios measured in one run on one machine.

    python benchmarks/compare.py                  # trains and builds the examples, then measures
    python benchmarks/compare.py --seconds 8 --processes 2 --out docs/BENCHMARKS.md

Rows (each a pair measured back to back with the same client, payload and concurrency):
1. dynamic batching on vs off: a small model (iris_xgb) at 32 concurrent clients, gRPC;
   the two configs are served side by side from a scratch copy of the repository;
2. served vs in-process: a compute-heavy ONNX model (a generated 4-layer 1024-wide MLP) under
   Triton with dynamic batching, against ONNX Runtime in this process at its best batch size;
3. Triton vs FastAPI + uvicorn running the same ONNX model once per request (the usual
   hand-written server), both answering the same KServe v2 JSON body over HTTP;
4. an ensemble vs its bare model (skipped, with the reason, when the repository has none);
5. build-repo on the examples: cold, then a no-op rebuild.
Load comes from ``--processes`` client processes (asyncio, tritonclient gRPC or aiohttp) so
that one Python client is not the only bound; the CPU each side used is measured from /proc
during every run, and the "bounded by" column says which side was saturated.
Writes the Markdown table and a PNG of throughput against concurrency (batching on and off).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SMALL_MODEL = "iris_xgb"
HEAVY_MODEL = "bench_mlp"
CONCURRENCY = 32
SWEEP = (1, 4, 16, 32)


# ---- measuring ----------------------------------------------------------------------------
@dataclass
class Measure:
    """One load run: completed requests per second, rows per second, latency, CPU of each side."""

    label: str
    requests_per_s: float
    rows_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    client_cores: float
    server_cores: float
    concurrency: int
    processes: int
    machine_cores: float = 0.0
    first_error: str = ""

    def bound(self, cores: int) -> str:
        other = max(0.0, self.machine_cores - self.client_cores - self.server_cores)
        if self.client_cores >= 0.85 * self.processes:
            return f"client CPU ({self.client_cores:.1f} of {self.processes} client processes busy)"
        if self.machine_cores >= 0.85 * cores:
            return (f"machine CPU (server {self.server_cores:.1f} + client {self.client_cores:.1f} "
                    f"+ other processes {other:.1f} of {cores} cores)")
        return (f"server latency, CPU not saturated (server {self.server_cores:.1f}, "
                f"client {self.client_cores:.1f} of {cores} cores)")


def _machine_busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine (every core, every process) since boot."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _tree_cpu_seconds(root_pid: int) -> float:
    """utime+stime of a process and all its descendants (Triton's Python stubs included)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(rest[1])
        children.setdefault(ppid, []).append(pid)
        times[pid] = (int(rest[11]) + int(rest[12])) / tick
    total, stack = 0.0, [root_pid]
    while stack:
        pid = stack.pop()
        total += times.get(pid, 0.0)
        stack.extend(children.get(pid, []))
    return total


async def _grpc_clients(url, model, arrays, outputs, concurrency, deadline):
    import tritonclient.grpc as grpcclient
    import tritonclient.grpc.aio as aio
    from tritonclient.utils import np_to_triton_dtype

    inputs = []
    for name, array in arrays.items():
        tensor = grpcclient.InferInput(name, list(array.shape),
                                       "BYTES" if array.dtype == object else np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    requested = [grpcclient.InferRequestedOutput(o) for o in outputs]
    client = aio.InferenceServerClient(url)
    latencies, errors = [], []

    async def one():
        while time.monotonic() < deadline:
            start = time.perf_counter()
            try:
                await client.infer(model, inputs, outputs=requested)
                latencies.append(time.perf_counter() - start)
            except Exception as exc:  # counted and reported, the run goes on
                errors.append(str(exc)[:200])

    await asyncio.gather(*(one() for _ in range(concurrency)))
    await client.close()
    return latencies, errors


async def _http_clients(url, body, headers, concurrency, deadline):
    import aiohttp

    latencies, errors = [], []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one():
            while time.monotonic() < deadline:
                start = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        if response.status != 200:
                            errors.append(f"HTTP {response.status}")
                            continue
                    latencies.append(time.perf_counter() - start)
                except Exception as exc:
                    errors.append(str(exc)[:200])

        await asyncio.gather(*(one() for _ in range(concurrency)))
    return latencies, errors


def _client_process(job: dict, start_at: float, queue) -> None:
    cpu0 = time.process_time()
    while time.time() < start_at:
        time.sleep(0.001)
    deadline = time.monotonic() + job["seconds"]
    if job["kind"] == "grpc":
        run = _grpc_clients(job["url"], job["model"], job["arrays"], job["outputs"], job["concurrency"], deadline)
    else:
        run = _http_clients(job["url"], job["body"], job["headers"], job["concurrency"], deadline)
    latencies, errors = asyncio.run(run)
    queue.put({"latencies": latencies, "errors": errors, "cpu": time.process_time() - cpu0})


def drive(label: str, job: dict, *, concurrency: int, processes: int, seconds: float,
          server_pid: int, rows: int = 1) -> Measure:
    """Keep ``concurrency`` requests in flight for ``seconds``, spread over client processes."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    processes = max(1, min(processes, concurrency))
    shares = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
    start_at = time.time() + 2.0  # after the spawned interpreters are up
    workers = [ctx.Process(target=_client_process, args=({**job, "concurrency": n, "seconds": seconds}, start_at, queue))
               for n in shares]
    for w in workers:
        w.start()
    while time.time() < start_at:
        time.sleep(0.005)
    server_cpu0, machine0 = _tree_cpu_seconds(server_pid), _machine_busy_seconds()
    t0 = time.monotonic()
    results = [queue.get(timeout=seconds + 120) for _ in workers]
    wall = time.monotonic() - t0
    server_cpu = _tree_cpu_seconds(server_pid) - server_cpu0
    machine = _machine_busy_seconds() - machine0
    for w in workers:
        w.join(timeout=30)
        if w.is_alive():
            w.kill()
    latencies = np.array([x for r in results for x in r["latencies"]]) * 1000.0
    errors = [e for r in results for e in r["errors"]]
    done = len(latencies)
    return Measure(
        label=label,
        requests_per_s=done / seconds,
        rows_per_s=done * rows / seconds,
        p50_ms=float(np.percentile(latencies, 50)) if done else float("nan"),
        p99_ms=float(np.percentile(latencies, 99)) if done else float("nan"),
        errors=len(errors),
        client_cores=sum(r["cpu"] for r in results) / max(wall, 1e-9),
        server_cores=server_cpu / max(wall, 1e-9),
        concurrency=concurrency,
        processes=processes,
        machine_cores=machine / max(wall, 1e-9),
        first_error=errors[0] if errors else "",
    )


# ---- the models and servers being compared ------------------------------------------------
def heavy_onnx(path: Path, width: int = 1024, layers: int = 4) -> None:
    """A compute-heavy MLP: input [N, width] float -> output [N, 10], ``layers`` MatMul+Relu."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "input"
    for i in range(layers):
        w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]), helper.make_node("Relu", [f"m{i}"], [f"h{i}"])]
        prev = f"h{i}"
    inits.append(numpy_helper.from_array((rng.standard_normal((width, 10)) / 32).astype(np.float32), "head"))
    nodes.append(helper.make_node("MatMul", [prev, "head"], ["output"]))
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", width])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def scratch_repository(built: Path, dst: Path) -> None:
    """Copy of the built repository plus the benchmark's own entries (the original is untouched):
    ``<small>__nobatch`` (dynamic batching removed) and ``bench_mlp`` (the heavy model)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    from tritonforge.serving.server import read_config

    shutil.copytree(built, dst)
    config = read_config(dst / SMALL_MODEL)
    config.name = f"{SMALL_MODEL}__nobatch"
    config.ClearField("dynamic_batching")
    config.ClearField("model_warmup")
    shutil.copytree(dst / SMALL_MODEL, dst / config.name)
    (dst / config.name / "config.pbtxt").write_text(text_format.MessageToString(config))

    folder = dst / HEAVY_MODEL
    (folder / "1").mkdir(parents=True)
    heavy_onnx(folder / "1" / "model.onnx")
    heavy = mc.ModelConfig(name=HEAVY_MODEL, platform="onnxruntime_onnx", max_batch_size=64)
    heavy.input.add(name="input", data_type=mc.TYPE_FP32, dims=[1024])
    heavy.output.add(name="output", data_type=mc.TYPE_FP32, dims=[10])
    heavy.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
    heavy.dynamic_batching.max_queue_delay_microseconds = 2000
    (folder / "config.pbtxt").write_text(text_format.MessageToString(heavy))


def in_process_best(model_path: Path, seconds: float) -> tuple[float, int, dict[int, float]]:
    """ONNX Runtime in this process: rows/s at each batch size, and the best."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    rates = {}
    for batch in (1, 8, 32, 64):
        x = rng.random((batch, 1024), dtype=np.float32)
        session.run(None, {"input": x})
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            session.run(None, {"input": x})
            count += 1
        rates[batch] = count * batch / (time.perf_counter() - start)
    best = max(rates, key=rates.get)
    return rates[best], best, rates


FASTAPI_APP = '''
"""The usual hand-written alternative: FastAPI + uvicorn, one ONNX Runtime call per request."""
import sys
import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, Request

session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
app = FastAPI()
TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(double)": np.float64}


@app.post("/v2/models/{model}/infer")
async def infer(model: str, request: Request):
    body = await request.json()
    feed = {}
    for item in body["inputs"]:
        feed[item["name"]] = np.asarray(item["data"], dtype=np.float32).reshape(item["shape"])
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, feed)
    return {"model_name": model, "outputs": [
        {"name": n, "shape": list(v.shape), "datatype": "FP32" if v.dtype == np.float32 else "INT64",
         "data": v.reshape(-1).tolist()} for n, v in zip(names, values)]}


if __name__ == "__main__":
    import uvicorn
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
'''


def start_fastapi(model_path: Path, workdir: Path) -> tuple[subprocess.Popen, str]:
    from tritonforge.serving.server import free_port

    app = workdir / "fastapi_app.py"
    app.write_text(FASTAPI_APP)
    port = free_port()
    process = subprocess.Popen([sys.executable, str(app), str(model_path), str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    import urllib.request

    for _ in range(300):  # bounded: 30 s
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/docs", timeout=1)
            return process, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("FastAPI server did not start")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _ratio(a: Measure, b: Measure) -> str:
    ratio = f"{a.requests_per_s / b.requests_per_s:.2f}x"
    errors = a.errors + b.errors
    return f"{ratio} (invalid: {errors} failed requests)" if errors else ratio


# ---- the run --------------------------------------------------------------------------------
@dataclass
class Row:
    comparison: str
    a: str
    b: str
    ratio: str
    bound: str
    note: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    sweep: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    details: list[str] = field(default_factory=list)


def _rate(m: Measure, unit="req/s") -> str:
    value = m.rows_per_s if unit == "rows/s" else m.requests_per_s
    err = f", {m.errors} errors, first: {m.first_error[:120]!r}" if m.errors else ""
    return f"{value:,.0f} {unit} (p50 {m.p50_ms:.1f} ms, p99 {m.p99_ms:.1f} ms{err})"


def build_times(workdir: Path) -> tuple[Path, float, float, int]:
    sys.path.insert(0, str(ROOT / "examples"))
    from tritonforge.builder import BuildOptions, build_repository
    from train_models import train_examples

    models = train_examples(workdir / "models")
    repo = workdir / "built" / "model_repository"
    start = time.perf_counter()
    results = build_repository(models, repo, BuildOptions(allow_pickle=True))
    cold = time.perf_counter() - start
    start = time.perf_counter()
    build_repository(models, repo, BuildOptions(allow_pickle=True))
    noop = time.perf_counter() - start
    return repo, cold, noop, len(results)


def _samples_payload(repo: Path, model: str, spec):
    from tritonforge.loadtests.payload import make_payload

    return make_payload(spec, repo, source="auto", rows=1)


def run(args) -> Report:
    from tritonforge.clients.client import TritonClient
    from tritonforge.loadtests.payload import http_body
    from tritonforge.serving.server import serve

    cores = os.cpu_count() or 1
    report = Report()
    workdir = Path(tempfile.mkdtemp(prefix="tritonforge-bench-"))
    try:
        print("building the examples (cold, then no-op) ...", flush=True)
        built_here, cold, noop, count = build_times(workdir)
        built = Path(args.repo) if args.repo else built_here
        report.rows.append(Row("build-repo on the examples, cold vs no-op rebuild", f"{cold:.1f} s cold ({count} entries)",
                               f"{noop:.2f} s no-op", f"{cold / max(noop, 1e-9):.0f}x",
                               "converters and verification (one process)"))
        scratch = workdir / "serve" / "model_repository"
        scratch_repository(built, scratch)
        print("serving a scratch copy ...", flush=True)
        with serve(scratch, control_mode="none", ready_timeout=600) as server:
            pid = server.process.pid
            common = dict(processes=args.processes, seconds=args.seconds, server_pid=pid)
            specs = {}
            with TritonClient(server.grpc_url, "grpc") as client:
                names = client.models()
                for name in names:
                    specs[name] = client.spec(name)

            def grpc_job(model, payload_model=None):
                payload = _samples_payload(scratch, payload_model or model, specs[payload_model or model])
                return {"kind": "grpc", "url": server.grpc_url, "model": model,
                        "arrays": payload.arrays, "outputs": list(payload.outputs)}

            # 1. dynamic batching on vs off, and the sweep for the plot
            for label, model in (("batching on", SMALL_MODEL), ("batching off", f"{SMALL_MODEL}__nobatch")):
                report.sweep[label] = []
                for c in SWEEP:
                    m = drive(f"{model} c={c}", grpc_job(model, SMALL_MODEL), concurrency=c, **common)
                    print(f"  {label:13s} c={c:3d}: {_rate(m)}", flush=True)
                    report.sweep[label].append((c, m.requests_per_s))
                    if c == CONCURRENCY:
                        report.details.append(f"{label}: {_rate(m)}; {m.bound(cores)}")
                        if label == "batching on":
                            on = m
                        else:
                            off = m
            report.rows.append(Row(f"dynamic batching on vs off ({SMALL_MODEL}, {CONCURRENCY} clients, gRPC)",
                                   _rate(on), _rate(off), _ratio(on, off),
                                   f"on: {on.bound(cores)}; off: {off.bound(cores)}"))

            # 2. served vs in-process at the best batch size (compute-heavy model)
            best, batch, rates = in_process_best(scratch / HEAVY_MODEL / "1" / "model.onnx", min(args.seconds, 4))
            report.details.append("in-process ONNX Runtime, rows/s by batch size: "
                                  + ", ".join(f"{b}: {r:,.0f}" for b, r in rates.items()))
            rng = np.random.default_rng(1)
            heavy_job = {"kind": "grpc", "url": server.grpc_url, "model": HEAVY_MODEL,
                         "arrays": {"input": rng.random((1, 1024), dtype=np.float32)}, "outputs": ["output"]}
            served = drive(HEAVY_MODEL, heavy_job, concurrency=CONCURRENCY, **common)
            batched = drive(f"{HEAVY_MODEL} x64", {**heavy_job, "arrays": {"input": rng.random((64, 1024), dtype=np.float32)}},
                            concurrency=4, rows=64, **common)
            report.details.append(f"served {HEAVY_MODEL}, 4 clients x 64 rows per request: {_rate(batched, 'rows/s')} "
                                  f"= {batched.rows_per_s / best:.2f}x of the in-process best; {batched.bound(cores)}")
            print(f"  served {HEAVY_MODEL}: {_rate(served, 'rows/s')}; in-process best {best:,.0f} rows/s at batch {batch}", flush=True)
            report.rows.append(Row(f"served vs in-process ONNX Runtime ({HEAVY_MODEL}: 4x1024 MLP, {CONCURRENCY} clients x 1 row, gRPC)",
                                   _rate(served, "rows/s"), f"{best:,.0f} rows/s in-process at batch {batch}",
                                   f"{served.rows_per_s / best:.2f}x of the compute limit", served.bound(cores),
                                   "in-process: ONNX Runtime alone, no server, no client"))

            # 3. Triton vs FastAPI + uvicorn, same JSON body over HTTP
            payload = _samples_payload(scratch, SMALL_MODEL, specs[SMALL_MODEL])
            body, headers = http_body(payload, binary=False)
            triton_http = drive("triton http", {"kind": "http", "url": f"http://{server.http_url}/v2/models/{SMALL_MODEL}/infer",
                                                "body": body, "headers": headers}, concurrency=CONCURRENCY, **common)
            fastapi, fastapi_url = start_fastapi(scratch / SMALL_MODEL / "1" / "model.onnx", workdir)
            try:
                plain = drive("fastapi", {"kind": "http", "url": f"http://{fastapi_url}/v2/models/{SMALL_MODEL}/infer",
                                          "body": body, "headers": {"Content-Type": "application/json"}},
                              concurrency=CONCURRENCY, **{**common, "server_pid": fastapi.pid})
            finally:
                stop(fastapi)
            print(f"  triton http: {_rate(triton_http)}; fastapi: {_rate(plain)}", flush=True)
            report.rows.append(Row(f"Triton vs FastAPI + uvicorn ({SMALL_MODEL}, {CONCURRENCY} clients, HTTP JSON)",
                                   _rate(triton_http), _rate(plain),
                                   _ratio(triton_http, plain),
                                   f"Triton: {triton_http.bound(cores)}; FastAPI: {plain.bound(cores)}",
                                   "FastAPI: one worker, one ONNX Runtime call per request, no batching"))

            # 4. ensembles vs their bare model
            ensembles = [n for n in names if specs[n].is_ensemble]
            if not ensembles:
                report.rows.append(Row("ensemble vs its bare model", "-", "-", "skipped", "-",
                                       "the repository has no ensemble (platform \"ensemble\")"))
            for ensemble in ensembles:
                bare = _bare_model(scratch, ensemble)
                e = drive(ensemble, grpc_job(ensemble), concurrency=CONCURRENCY, **common)
                b = drive(bare, grpc_job(bare), concurrency=CONCURRENCY, **common)
                print(f"  {ensemble}: {_rate(e)}; {bare}: {_rate(b)}", flush=True)
                report.rows.append(Row(f"ensemble vs its bare model ({ensemble} vs {bare}, {CONCURRENCY} clients, gRPC)",
                                       _rate(e), _rate(b), _ratio(e, b),
                                       f"ensemble: {e.bound(cores)}; bare: {b.bound(cores)}",
                                       "ensemble: raw rows/images in, pre- and postprocessing steps on the server"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return report


def _bare_model(repo: Path, ensemble: str) -> str:
    """The ensemble's step that is not a Python-backend step: the converted model itself."""
    from tritonforge.serving.server import read_config

    for step in read_config(repo / ensemble).ensemble_scheduling.step:
        if read_config(repo / step.model_name).platform not in ("", "ensemble"):
            return step.model_name
    raise ValueError(f"ensemble '{ensemble}' has no model step")


def plot(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in report.sweep.items():
        ax.plot([c for c, _ in points], [r for _, r in points], marker="o", label=f"{SMALL_MODEL}, {label}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent clients (gRPC, 1 row per request)")
    ax.set_ylabel("requests / s")
    ax.set_title("Throughput against concurrency (serve-repo, CPU)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(report: Report, args, png: Path) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python benchmarks/compare.py` (one run, one machine; "
        f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"no GPU; the real tritonserver from nvidia-pytriton with the CPU Python backends).",
        f"Each figure is {args.seconds:.0f} s of closed-loop load from {args.processes} client processes; "
        "the absolute numbers depend on the box and on whatever else runs on it, the ratios are the result.",
        "",
        "| comparison | A | B | A / B | bounded by | note |",
        "|---|---|---|---|---|---|",
    ]
    for r in report.rows:
        lines.append(f"| {r.comparison} | {r.a} | {r.b} | **{r.ratio}** | {r.bound} | {r.note} |")
    lines += ["", f"![throughput against concurrency]({png.name})", "", "Details:", ""]
    lines += [f"- {d}" for d in report.details]
    lines += [
        "",
        "How to read \"bounded by\": the CPU time of the server's process tree (Triton and its Python "
        "backend stubs) and of the client processes is read from /proc over each run. A client that "
        "keeps its processes busy is the limit (the Python client, as on small machines); when both "
        "sides together fill the cores, the machine is; otherwise the server's own latency is.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repo", type=Path, default=None, help="serve this built repository (the build is still timed)")
    p.add_argument("--seconds", type=float, default=6.0, help="seconds per measurement (default 6)")
    p.add_argument("--processes", type=int, default=2, help="client processes (default 2)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    args = p.parse_args(argv)
    report = run(args)
    png = args.out.with_name("benchmarks_concurrency.png")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot(report, png)
    args.out.write_text(markdown(report, args, png))
    print()
    for r in report.rows:
        print(f"{r.ratio:>28}  {r.comparison}")
    print(f"\nwrote {args.out} and {png}")
    print(json.dumps([r.__dict__ for r in report.rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
