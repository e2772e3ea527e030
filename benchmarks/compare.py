"""What Triton and its configuration buy, as ratios measured in one run on one machine, with native
load generators, so that the figures describe the server and not the client.

    python benchmarks/compare.py                               # trains and builds the examples, then measures
    python benchmarks/compare.py --backend-directory DIR       # adds a column: Triton's own backends in DIR
    python benchmarks/compare.py --seconds 5 --out docs/BENCHMARKS.md

DIR is a folder of Triton backends, such as the NGC image's /opt/tritonserver/backends: every
backend in it but ``python`` replaces serve-repo's, on the same repository (``configs/cpu.pbtxt``).
Load: ``wrk`` (Debian ``wrk``) for HTTP with KServe v2 binary tensors, ``h2load`` (Debian
``nghttp2-client``) for gRPC with one pre-encoded ModelInferRequest (``loadtests/native.py``);
one generator thread, one row per request, ``--connections`` in flight; each pair in ``--rounds``
alternating rounds (A B, B A, ...: load from other work falls on both). Beside every figure: the
generator's share of the machine's CPU, and what the server's process tree (Triton and its
Python stubs), the generator and everything else on the machine used during it.

Each comparison is a pair measured back to back on the same server, payload and concurrency:
1. dynamic batching on vs off (iris_xgb, built by build-repo), and the throughput against
   concurrency of both (the plot);
2. gRPC vs HTTP (iris_xgb, binary tensors both ways);
3. Triton vs FastAPI + uvicorn (one worker, JSON body, one ONNX Runtime call per request: the
   server a user writes by hand) on iris_xgb and on a 512-2048-2048-10 MLP; Triton takes binary
   tensors, and once the same JSON body;
4. two model instances vs one (the MLP);
5. served vs in-process ONNX Runtime at its best batch size (the MLP);
6. each example ensemble vs its bare model (gRPC, binary tensors, one raw row);
7. build-repo on the examples, cold vs a no-op rebuild.
Writes its section of docs/BENCHMARKS.md (other sections are kept) and benchmarks_concurrency.png.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

from harness import FastAPIServer, ReferenceServer, machine_busy_seconds, mlp_onnx, one_row, tree_cpu_seconds  # noqa: E402
from tritonforge.builder import BuildOptions, build_repository  # noqa: E402
from tritonforge.loadtests.native import LoadError, LoadResult, run_h2load, run_wrk  # noqa: E402
from tritonforge.repository import config as config_file  # noqa: E402
from tritonforge.serving import serve  # noqa: E402

SMALL = "iris_xgb"
MLP, MLP_WIDTHS = "mlp_large", (512, 2048, 2048, 10)
ENSEMBLES = ("churn_pipeline_ensemble", "digits_cnn_ensemble", "house_price_xgb_ensemble")
SWEEP = (1, 4, 16, 32, 64)
CORES = len(os.sched_getaffinity(0))  # taskset -c 0,1 measures on two cores of a larger box
SECTION = "## What Triton buys: comparisons (`python benchmarks/compare.py`)"


# ---- one figure -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Figure:
    """One load run and the CPU each side used during it."""

    result: LoadResult
    generator: str  # wrk or h2load
    server_cores: float
    machine_cores: float
    rows: int = 1

    @property
    def rate(self) -> float:
        return self.result.requests_per_s

    @property
    def client_cores(self) -> float:
        return self.result.client_cpu_share * CORES

    def cell(self, unit: str = "req/s") -> str:
        value = self.rate * (self.rows if unit == "rows/s" else 1)
        errors = f", **{self.result.errors} failed**" if self.result.errors else ""
        return (f"{value:,.0f} {unit}, p99 {self.result.p99_ms:.1f} ms, "
                f"{self.generator} {100 * self.result.client_cpu_share:.0f}% CPU{errors}")

    def bound(self) -> str:
        others = max(0.0, self.machine_cores - self.server_cores - self.client_cores)
        use = (f"server {self.server_cores:.1f} + {self.generator} {self.client_cores:.1f} "
               f"+ others {others:.1f} of {CORES} cores")
        if self.machine_cores >= 0.85 * CORES:
            return f"CPU ({use})"
        return f"not CPU ({use}): the server's own latency"


@dataclass
class Target:
    """A server under test: serve-repo, or tritonserver with the backends of --backend-directory."""

    label: str
    http_url: str
    grpc_url: str
    pid: int
    process: object = None  # the server's Popen, to tell a crash from a refusal

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            why = (" (SIGSEGV: in this release, Triton's gRPC server can crash on calls a client cancels, as a load "
                   "generator does when it stops; triton-inference-server/server#7472, fixed by #7840 after 24.11)"
                   if self.process.returncode == -11 else "")
            raise ServerDied(f"{self.label}: tritonserver exited with status {self.process.returncode}{why}")


class ServerDied(RuntimeError):
    """The server under test exited during the run (its figures so far are dropped; run() starts it again)."""


@dataclass(frozen=True)
class Load:
    """What one figure sends: a model on a server, over HTTP (wrk) or gRPC (h2load)."""

    target: Target
    model: str
    inputs: dict
    connections: int
    protocol: str = "http"
    json_body: bool = False
    rows: int = 1
    streams: int = 1  # gRPC calls in flight on each connection

    def run(self, seconds: float) -> LoadResult:
        if self.protocol == "grpc":
            return run_h2load(self.target.grpc_url, self.model, self.inputs, connections=self.connections,
                              streams=self.streams, seconds=seconds)
        return run_wrk(self.target.http_url, self.model, self.inputs, connections=self.connections, seconds=seconds,
                       json_body=self.json_body)

    def __str__(self) -> str:
        return (f"{self.target.label} {self.model} ({self.protocol}{', JSON' if self.json_body else ''}"
                f"{f', {self.rows} rows a request' if self.rows > 1 else ''}, {self.connections * self.streams} in flight"
                f"{f' on {self.connections} connection(s)' if self.streams > 1 else ''})")


def grpc(target: Target, model: str, inputs: dict, calls: int) -> Load:
    """``calls`` gRPC calls in flight on one HTTP/2 connection, as a gRPC client multiplexes them."""
    return Load(target, model, inputs, 1, "grpc", streams=calls)


def measure(load: Load, seconds: float, *, warm: bool = True) -> Figure | None:
    """(A 1 s warm-up, then) ``seconds`` of load; None, said on the console, when the generator refuses."""
    try:
        if warm:
            load.run(1)
        server0, machine0, started = tree_cpu_seconds(load.target.pid), machine_busy_seconds(), time.monotonic()
        result = load.run(seconds)
        wall = time.monotonic() - started
        if result.requests == 0:
            raise LoadError(f"no request finished in {seconds:g} s")
        figure = Figure(result, "h2load" if load.protocol == "grpc" else "wrk",
                        (tree_cpu_seconds(load.target.pid) - server0) / wall, (machine_busy_seconds() - machine0) / wall,
                        load.rows)
    except LoadError as exc:
        load.target.check_alive()
        print(f"  {load}: no figure: {exc}", flush=True)
        return None
    print(f"  {load}: {figure.cell('rows/s' if load.rows > 1 else 'req/s')}; {figure.bound()}", flush=True)
    return figure


@dataclass
class Pair:
    """A and B measured in alternating rounds (AB, BA, AB ...), so that load from other work on the
    machine, which comes and goes, falls on both; each side's figure is its median round."""

    a: list[Figure] = field(default_factory=list)
    b: list[Figure] = field(default_factory=list)

    @staticmethod
    def _median(figures: list[Figure]) -> Figure | None:
        return sorted(figures, key=lambda f: f.rate)[len(figures) // 2] if figures else None

    @property
    def a_figure(self) -> Figure | None:
        return self._median(self.a)

    @property
    def b_figure(self) -> Figure | None:
        return self._median(self.b)

    def ratios(self) -> list[float]:
        return [a.rate * a.rows / (b.rate * b.rows) for a, b in zip(self.a, self.b)]

    def failed(self) -> int:
        return sum(f.result.errors for f in self.a + self.b)


def measure_pair(a: Load, b: Load, seconds: float, rounds: int) -> Pair:
    pair = Pair()
    if measure(a, 0.5) is None or measure(b, 0.5) is None:  # warm both (and refuse early)
        return pair
    for r in range(rounds):
        for load, side in ((a, pair.a), (b, pair.b))[:: 1 if r % 2 == 0 else -1]:
            figure = measure(load, seconds, warm=False)
            if figure is None:  # keep the rounds that have both sides
                done = min(len(pair.a), len(pair.b))
                return Pair(pair.a[:done], pair.b[:done])
            side.append(figure)
    return pair


# ---- the repository being served -----------------------------------------------------------
def build_examples(workdir: Path) -> tuple[Path, float, float, int]:
    """The examples trained and built (--device cpu) cold, then rebuilt with nothing to do."""
    from train_models import train_examples

    models = train_examples(workdir / "models")
    repo = workdir / "built"
    options = BuildOptions(allow_pickle=True, device="cpu")
    started = time.perf_counter()
    results = build_repository(models, repo, options)
    cold = time.perf_counter() - started
    started = time.perf_counter()
    build_repository(models, repo, options)
    noop = time.perf_counter() - started
    failed = [f"{r.name}: {r.reason}" for r in results if not r.ok]
    if failed:
        raise SystemExit("build failed: " + "; ".join(failed))
    return repo, cold, noop, len(results)


def variant(repo: Path, source: str, name: str, change) -> None:
    """``repo/name``: a copy of ``source`` whose config.pbtxt and configs/*.pbtxt are changed by ``change``."""
    shutil.copytree(repo / source, repo / name)
    for path in [repo / name / "config.pbtxt", *sorted((repo / name / "configs").glob("*.pbtxt"))]:
        config = config_file.read(path)
        config.name = name
        change(config)
        config_file.write(path, config)


def steps_of(repo: Path, ensemble: str) -> list[str]:
    return [step.model_name for step in config_file.read(repo / ensemble / "config.pbtxt").ensemble_scheduling.step]


def bare_model(repo: Path, ensemble: str) -> str:
    """The ensemble's step that is not a Python-backend step: the converted model itself."""
    for step in steps_of(repo, ensemble):
        if config_file.read(repo / step / "config.pbtxt").backend != "python":
            return step
    raise SystemExit(f"ensemble '{ensemble}' has no model step")


def scratch_repository(built: Path, workdir: Path) -> tuple[Path, list[str]]:
    """The models compared, copied from ``built`` (left untouched) with the benchmark's variants:
    ``iris_xgb__nobatch`` (no dynamic batching), the MLP built by build-repo, ``mlp_large__x2``
    (two instances). Returns the repository and the ensembles found."""
    mlp_source = workdir / "mlp_source"
    mlp_source.mkdir()
    mlp_onnx(mlp_source / f"{MLP}.onnx", MLP_WIDTHS, seed=4)
    mlp_built = workdir / "mlp_built"
    results = build_repository(mlp_source, mlp_built, BuildOptions(device="cpu"))
    if not all(r.ok for r in results):
        raise SystemExit("build failed: " + "; ".join(f"{r.name}: {r.reason}" for r in results if not r.ok))
    repo = workdir / "serve"
    repo.mkdir()
    ensembles = [e for e in ENSEMBLES if (built / e).is_dir()]
    for name in {SMALL, *ensembles, *(s for e in ensembles for s in steps_of(built, e))}:
        shutil.copytree(built / name, repo / name)
    shutil.copytree(mlp_built / MLP, repo / MLP)
    variant(repo, SMALL, f"{SMALL}__nobatch", lambda c: c.ClearField("dynamic_batching"))
    variant(repo, MLP, f"{MLP}__x2", lambda c: [g.__setattr__("count", 2) for g in c.instance_group])
    return repo, ensembles


def request_rows(repo: Path, model: str) -> dict[str, np.ndarray]:
    """One row of ``model``'s samples; strings as UTF-8 bytes (what both generators send)."""
    return {k: (np.vectorize(lambda v: v.encode() if isinstance(v, str) else v, otypes=[object])(a) if a.dtype == object else a)
            for k, a in one_row(repo, model).items()}


def in_process(onnx_path: Path, width: int, seconds: float) -> dict[int, float]:
    """ONNX Runtime in this process, no server, no client: rows/s by batch size."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    rates = {}
    for batch in (1, 8, 32, 64):
        x = rng.random((batch, width), dtype=np.float32)
        session.run(None, {"input": x})
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            session.run(None, {"input": x})
            count += 1
        rates[batch] = count * batch / (time.perf_counter() - started)
    return rates


# ---- the run ----------------------------------------------------------------------------------
@dataclass
class Row:
    comparison: str
    pairs: dict[str, Pair]  # target label -> its pair
    note: str = ""
    unit: str = "req/s"
    b_text: str = ""  # B when it is not a load figure (in-process)
    b_rate: float = 0.0


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    sweep: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    details: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    load: list[tuple[str, tuple[float, float, float]]] = field(default_factory=list)
    build: str = ""
    batched: dict[str, Figure] = field(default_factory=dict)


def mlp_row() -> dict[str, np.ndarray]:
    return {"input": np.random.default_rng(1).random((1, MLP_WIDTHS[0]), np.float32)}


def measure_target(target: Target, repo: Path, ensembles: list[str], args, report: Report) -> dict[str, Pair]:
    """Every pair on one server (with a FastAPI server beside it for the pairs that need one), by key."""
    s, c, rounds = args.seconds, args.connections, args.rounds
    small = request_rows(repo, SMALL)
    pairs: dict[str, Pair] = {}
    on, off = Load(target, SMALL, small, c), Load(target, f"{SMALL}__nobatch", small, c)
    pairs["batching"] = measure_pair(on, off, s, rounds)
    sweep = {"batching on": [], "batching off": []}
    for n in sorted({*SWEEP, c}):
        for label, load in (("batching on", on), ("batching off", off)):
            if n == c:
                figure = pairs["batching"].a_figure if label == "batching on" else pairs["batching"].b_figure
            else:
                figure = measure(Load(target, load.model, small, n), s)
                if figure:
                    report.details.append(f"{target.label}, {load.model}, {n} connections (one round): "
                                          f"{figure.cell()}; {figure.bound()}")
            if figure:
                sweep[label].append((n, figure.rate))
    for label, points in sweep.items():
        report.sweep[f"{target.label}, {label}"] = points
    pairs["grpc"] = measure_pair(grpc(target, SMALL, small, c), on, s, rounds)
    spread = measure(Load(target, SMALL, small, c, "grpc"), s)
    if spread:
        report.details.append(f"{target.label}, {SMALL} over gRPC with {c} connections of one call each (one round; "
                              f"the table's gRPC figures multiplex {c} calls on one connection, as gRPC clients do): "
                              f"{spread.cell()}; {spread.bound()}")
    with FastAPIServer(repo / SMALL / "1" / "model.onnx") as fastapi:
        plain = Target("FastAPI", fastapi.url, "", fastapi.pid)
        pairs["fastapi"] = measure_pair(on, Load(plain, SMALL, small, c, json_body=True), s, rounds)
        pairs["fastapi json"] = measure_pair(Load(target, SMALL, small, c, json_body=True),
                                             Load(plain, SMALL, small, c, json_body=True), s, rounds)
    mlp = Load(target, MLP, mlp_row(), c)
    with FastAPIServer(repo / MLP / "1" / "model.onnx") as fastapi:
        plain = Target("FastAPI", fastapi.url, "", fastapi.pid)
        pairs["fastapi mlp"] = measure_pair(mlp, Load(plain, MLP, mlp_row(), c, json_body=True), s, rounds)
    pairs["instances"] = measure_pair(Load(target, f"{MLP}__x2", mlp_row(), c), mlp, s, rounds)
    batched = measure(Load(target, MLP, {"input": np.repeat(mlp_row()["input"], 64, axis=0)}, 4, rows=64), s)
    if batched:
        report.details.append(f"{target.label}: the MLP, 4 connections x 64 rows a request (one round): "
                              f"{batched.cell('rows/s')}; {batched.bound()}")
        report.batched[target.label] = batched
    for ensemble in ensembles:
        bare = bare_model(repo, ensemble)
        pairs[ensemble] = measure_pair(grpc(target, ensemble, request_rows(repo, ensemble), c),
                                       grpc(target, bare, request_rows(repo, bare), c), s, rounds)
    return pairs


def run(args) -> Report:
    report = Report()
    report.load.append(("start", os.getloadavg()))
    workdir = Path(tempfile.mkdtemp(prefix="tritonforge-compare-"))
    try:
        if args.repo:
            built = args.repo.resolve()
            report.build = "skipped (--repo given)"
        else:
            print("training and building the examples (cold, then no-op) ...", flush=True)
            built, cold, noop, count = build_examples(workdir)
            report.build = f"{cold:.1f} s cold ({count} entries), {noop:.2f} s no-op rebuild: {cold / max(noop, 1e-9):.0f}x"
        repo, ensembles = scratch_repository(built, workdir)
        c = args.connections
        figures: dict[str, dict[str, Pair]] = {}
        print("in-process ONNX Runtime ...", flush=True)
        rates = in_process(repo / MLP / "1" / "model.onnx", MLP_WIDTHS[0], min(args.seconds, 3))
        best = max(rates, key=rates.get)
        report.details.append("in-process ONNX Runtime on the MLP, rows/s by batch size: "
                              + ", ".join(f"{b}: {r:,.0f}" for b, r in rates.items()))
        def served(label: str, start) -> None:
            """Measure one server; a crash (tritonserver 2.51's gRPC cancellation race, see the report)
            drops its figures and starts it once more."""
            for attempt in (1, 2):
                details = len(report.details)
                try:
                    with start() as server:
                        print(f"{label} ...", flush=True)
                        target = Target(label, server.http_url, server.grpc_url, server.process.pid, server.process)
                        figures[label] = measure_target(target, repo, ensembles, args, report)
                        target.check_alive()
                    report.targets.append(label)
                    return
                except ServerDied as exc:
                    del report.details[details:]
                    for key in [k for k in report.sweep if k.startswith(f"{label}, ")]:
                        del report.sweep[key]
                    report.batched.pop(label, None)
                    report.details.append(f"{exc} during the run (attempt {attempt}); its figures were dropped"
                                          + ("; started again" if attempt == 1 else "; no column"))
                    print(f"  {exc}", flush=True)

        served("serve-repo", lambda: serve(repo, control_mode="none", ready_timeout=600))
        if args.backend_directory:
            models = [SMALL, f"{SMALL}__nobatch", MLP, f"{MLP}__x2", *ensembles, *(bare_model(repo, e) for e in ensembles)]
            served(f"backends of {args.backend_directory.name}/", lambda: ReferenceServer(repo, args.backend_directory, models))
        report.load.append(("end", os.getloadavg()))

        def rows_of(key: str) -> dict[str, Pair]:
            return {t: figures[t].get(key, Pair()) for t in report.targets}

        report.rows += [
            Row(f"dynamic batching on vs off ({SMALL}, {c} connections, HTTP)", rows_of("batching")),
            Row(f"gRPC (h2load) vs HTTP (wrk) ({SMALL}, batching on, {c} calls in flight)", rows_of("grpc"),
                "both binary tensors; gRPC: the calls multiplexed on one HTTP/2 connection, HTTP: one connection each"),
            Row(f"Triton vs FastAPI + uvicorn ({SMALL}, {c} connections, HTTP)", rows_of("fastapi"),
                "Triton: binary tensors; FastAPI: JSON, one worker, one ONNX Runtime call per request"),
            Row(f"Triton vs FastAPI + uvicorn, the same JSON body ({SMALL}, {c} connections)", rows_of("fastapi json")),
            Row(f"Triton vs FastAPI + uvicorn ({'-'.join(map(str, MLP_WIDTHS))} MLP, {c} connections, HTTP)",
                rows_of("fastapi mlp"), "Triton: binary tensors, dynamic batching; FastAPI: JSON"),
            Row(f"two model instances vs one (the MLP, {c} connections, HTTP)", rows_of("instances"),
                "on 2 cores two instances share the cores that ONNX Runtime's threads already use"),
            Row(f"served vs in-process ONNX Runtime (the MLP, {c} connections x 1 row)",
                {t: Pair(a=figures[t]["fastapi mlp"].a) for t in report.targets},
                "in-process: ONNX Runtime alone, no server, no client", unit="rows/s",
                b_text=f"{rates[best]:,.0f} rows/s at batch {best}", b_rate=rates[best]),
        ]
        for ensemble in ensembles:
            bare = bare_model(repo, ensemble)
            report.rows.append(Row(f"ensemble vs its bare model ({ensemble} vs {bare}, {c} calls in flight, gRPC)",
                                   rows_of(ensemble), "one raw row a request; the ensemble's steps run on the server"))
        for t, heavy in report.batched.items():
            report.details.append(f"{t}: the MLP with 64 rows a request = {heavy.rate * 64 / rates[best]:.2f}x "
                                  "of the in-process best")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return report


# ---- the report -------------------------------------------------------------------------------
def ratio(pair: Pair, b_rate: float = 0.0) -> str:
    """The median of the rounds' A/B (their range beside it), or A over a fixed rate; '-' without both."""
    a = pair.a_figure
    if a is None or (pair.b_figure is None and not b_rate):
        return "-"
    values = pair.ratios() if pair.b else [f.rate * f.rows / b_rate for f in pair.a]
    middle = sorted(values)[len(values) // 2]
    text = f"**{middle:.2f}x**" + (f" ({min(values):.2f}-{max(values):.2f} over {len(values)} rounds)" if len(values) > 1 else "")
    return f"{text} (invalid: {pair.failed()} failed requests)" if pair.failed() else text


def bounds(figures: list[Figure]) -> str:
    """What bounded a side's rounds, in one phrase: the machine's CPU or not, and who used it (ranges)."""
    if not figures:
        return "-"

    def span(values) -> str:
        low, high = min(values), max(values)
        return f"{low:.1f}" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}-{high:.1f}"

    full = sum(f.machine_cores >= 0.85 * CORES for f in figures)
    others = [max(0.0, f.machine_cores - f.server_cores - f.client_cores) for f in figures]
    use = (f"server {span([f.server_cores for f in figures])} + {figures[0].generator} "
           f"{span([f.client_cores for f in figures])} + others {span(others)} of {CORES} cores")
    if full == len(figures):
        return f"CPU ({use})"
    if full == 0:
        return f"not CPU, the server's own latency ({use})"
    return f"CPU in {full} of {len(figures)} rounds ({use})"


def bound_text(row: Row, target: str) -> str:
    pair = row.pairs[target]
    return f"A: {bounds(pair.a)}" + ("" if row.b_text else f"; B: {bounds(pair.b)}")


def plot(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label, points in report.sweep.items():
        if points:
            ax.plot([n for n, _ in points], [r for _, r in points], marker="o", label=label,
                    linestyle="--" if "off" in label else "-")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("connections (wrk, HTTP, binary tensors, 1 row a request)")
    ax.set_ylabel("requests / s")
    ax.set_title(f"{SMALL}: throughput against concurrency ({CORES} CPU cores)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(report: Report, args, png: Path) -> str:
    load = ", ".join(f"{when} {a:.2f} {b:.2f} {c:.2f}" for when, (a, b, c) in report.load)
    lines = [
        SECTION, "",
        f"Measured {time.strftime('%Y-%m-%d')} in one run on {CORES} CPU cores "
        f"({platform.processor() or platform.machine()}, no GPU), tritonserver 2.51.0 from nvidia-pytriton, Python "
        f"{platform.python_version()}; load average (1, 5, 15 min) {load}. Load: wrk (HTTP, KServe v2 binary tensors) "
        f"and h2load (gRPC, a pre-encoded ModelInferRequest), one generator thread, one row a request. Each pair is "
        f"measured in {args.rounds} alternating rounds (A B, B A, ...) of {args.seconds:g} s after a warm-up, so that "
        "other work on the machine falls on both sides: a cell is its side's median round, the ratio the median of "
        "the rounds' ratios (their range beside it). Every figure gives the generator's share of the machine's CPU.",
        "",
    ]
    head = "| comparison |"
    rule = "|---|"
    for t in report.targets:
        head += f" {t}: A | {t}: B | {t}: A / B |"
        rule += "---|---|---|"
    lines += [head + " note |", rule + "---|"]
    for row in report.rows:
        cells = []
        for t in report.targets:
            a, b = row.pairs[t].a_figure, row.pairs[t].b_figure
            cells += [a.cell(row.unit) if a else "-", row.b_text or (b.cell(row.unit) if b else "-"), ratio(row.pairs[t], row.b_rate)]
        lines.append(f"| {row.comparison} | " + " | ".join(cells) + f" | {row.note} |")
    if report.build:
        lines += ["", f"build-repo on the examples: {report.build}."]
    lines += ["", f"![throughput against concurrency]({png.name})", "",
              "What bounded each figure (CPU the server's process tree, the generator and everything else on the "
              "machine used during it, in cores; \"CPU\" where the machine's cores were at least 85% busy):", ""]
    for row in report.rows:
        for t in report.targets:
            lines.append(f"- {row.comparison}, {t}: {bound_text(row, t)}")
    lines += ["", "Details:", ""] + [f"- {d}" for d in report.details]
    lines += ["", f"Read with care: one run on a shared {CORES}-core box, where the server, its Python stubs and the "
              "generator share the cores, and other work on the machine shows as \"others\". The ratios are the "
              "result; the absolute figures depend on the box.", ""]
    return "\n".join(lines)


def write_section(path: Path, text: str) -> None:
    """Replace this benchmark's section of ``path`` (the '## ' heading naming benchmarks/compare.py,
    to the next '## ' heading), keeping the others; append it where there is none."""
    old = path.read_text().splitlines() if path.exists() else ["# Benchmarks", ""]
    start = next((i for i, l in enumerate(old) if l.startswith("## ") and "benchmarks/compare.py" in l), None)
    if start is None:
        kept = old + [""]
        end = len(kept)
        start = end
    else:
        kept = old
        end = next((i for i in range(start + 1, len(old)) if old[i].startswith("## ")), len(old))
    new = kept[:start] + text.rstrip("\n").splitlines() + ([""] + kept[end:] if end < len(kept) else [])
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text("\n".join(new).rstrip("\n") + "\n")
    os.replace(temporary, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.0, help="seconds of load per figure and round (default 3)")
    p.add_argument("--connections", type=int, default=32, help="requests in flight (default 32)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of each pair, A B then B A ... (default 3)")
    p.add_argument("--backend-directory", type=Path, default=None,
                   help="a folder of Triton backends (e.g. the NGC image's /opt/tritonserver/backends): adds a column")
    p.add_argument("--repo", type=Path, default=None, help="a repository build-repo made from the examples (skips the build row)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "BENCHMARKS.md", help="Markdown file whose section to write")
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.seconds > 60:
        p.error("--seconds must be in (0, 60]")
    if not 1 <= args.rounds <= 9:
        p.error("--rounds must be in 1..9")
    if args.backend_directory and not args.backend_directory.is_dir():
        p.error(f"--backend-directory {args.backend_directory}: no such folder")
    # A stopped run still stops its servers (the context managers' exits run on SystemExit).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = run(args)
    png = args.out.with_name("benchmarks_concurrency.png")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot(report, png)
    text = markdown(report, args, png)
    write_section(args.out, text)
    print("\n" + text)
    print(f"wrote {args.out} (its compare section) and {png}")
    print(json.dumps({r.comparison: {t: ratio(r.pairs[t], r.b_rate) for t in report.targets} for r in report.rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
