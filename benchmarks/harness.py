"""What the benchmarks share: Triton with the backends of a folder (``--backend-directory``), the
hand-written FastAPI server a user would put in front of the same ONNX file, one request's rows
from a model's samples, and the CPU that a process tree and the whole machine used.

    with ReferenceServer(repo, Path("/opt/tritonserver/backends"), ["iris_xgb"]) as reference:
        run_wrk(reference.url, "iris_xgb", one_row(repo, "iris_xgb"))
    with FastAPIServer(repo / "iris_xgb" / "1" / "model.onnx") as plain:
        run_wrk(plain.url, "iris_xgb", rows, json_body=True)
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from tritonforge.repository import latest_samples, read_samples
from tritonforge.serving import process as triton


class ReferenceServer:
    """tritonserver whose backends are those of ``backends`` (its ``onnxruntime`` and any other
    but ``python``, which stays the wheel's: its stub must match this interpreter) on ``repo``,
    with ``--model-config-name=cpu``, loading ``models`` (ensembles bring their steps)."""

    def __init__(self, repo: Path, backends: Path, models: list[str]) -> None:
        self.repo, self.backends, self.models = repo, Path(backends), models

    def __enter__(self):
        if any(self.backends.glob("libtriton_*.so")):
            raise SystemExit(f"{self.backends}: give the folder that holds the backends' folders (onnxruntime/ ...), "
                             "not one backend's own folder")
        self.workdir = Path(tempfile.mkdtemp(prefix="tritonforge-reference-"))
        triton.make_backends_dir(self.workdir)
        for backend in sorted(p for p in self.backends.iterdir() if p.is_dir() and p.name != "python"):
            shutil.rmtree(self.workdir / "backends" / backend.name, ignore_errors=True)
            shutil.copytree(backend, self.workdir / "backends" / backend.name)
        self.http, self.grpc = triton.free_port(), triton.free_port()
        paths = triton.tritonserver_paths()
        argv = [str(paths["binary"]), f"--model-repository={self.repo}", f"--backend-directory={self.workdir / 'backends'}",
                "--model-control-mode=explicit", "--model-config-name=cpu", "--http-address=127.0.0.1",
                "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1", f"--http-port={self.http}",
                f"--grpc-port={self.grpc}", f"--metrics-port={triton.free_port()}",
                *(f"--load-model={m}" for m in self.models)]
        self.process, self.log = triton.launch(argv, self.workdir, self.workdir / "log.txt")
        try:
            triton.wait_live(self.process, self.url, 120, lambda: (self.workdir / "log.txt").read_text()[-2000:])
            deadline = time.monotonic() + 120
            for model in self.models:
                while True:
                    try:
                        with urllib.request.urlopen(f"http://{self.url}/v2/models/{model}/ready", timeout=2):
                            break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise SystemExit(f"reference server: {model} not ready: "
                                             + (self.workdir / "log.txt").read_text()[-2000:])
                        time.sleep(0.5)
        except BaseException:
            self.__exit__()
            raise
        return self

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.http}"

    http_url = url

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def __exit__(self, *exc):
        if self.process.poll() is not None:  # it died under us: say why before its log goes (its last lines)
            print(f"tritonserver with {self.backends} exited with status {self.process.returncode}; log tail:\n"
                  + (self.workdir / "log.txt").read_text(errors="replace")[-1200:], file=sys.stderr)
        triton.terminate(self.process, 20)
        self.log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


FASTAPI_APP = '''
"""The usual hand-written alternative: FastAPI + uvicorn, one ONNX Runtime call per request."""
import sys
import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, Request

session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
app = FastAPI()


@app.post("/v2/models/{model}/infer")
async def infer(model: str, request: Request):
    body = await request.json()
    feed = {item["name"]: np.asarray(item["data"], dtype=np.float32).reshape(item["shape"]) for item in body["inputs"]}
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, feed)
    return {"model_name": model, "outputs": [{"name": n, "shape": list(v.shape), "datatype": "FP32" if v.dtype == np.float32 else "INT64",
                                              "data": v.reshape(-1).tolist()} for n, v in zip(names, values)]}


if __name__ == "__main__":
    import uvicorn
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
'''


class FastAPIServer:
    """FASTAPI_APP on ``onnx_path`` (one uvicorn worker, KServe v2 JSON in and out, float inputs),
    on 127.0.0.1, stopped by its process group."""

    def __init__(self, onnx_path: Path) -> None:
        self.onnx_path = Path(onnx_path)

    def __enter__(self):
        self.workdir = Path(tempfile.mkdtemp(prefix="tritonforge-fastapi-"))
        app = self.workdir / "fastapi_app.py"
        app.write_text(FASTAPI_APP)
        self.port = triton.free_port()
        self.process = subprocess.Popen([sys.executable, str(app), str(self.onnx_path), str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for _ in range(300):  # bounded: 30 s
            try:
                urllib.request.urlopen(f"http://{self.url}/docs", timeout=1)
                return self
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.1)
        self.__exit__()
        raise SystemExit(f"the FastAPI server on {self.onnx_path} did not start")

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def __exit__(self, *exc):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def mlp_onnx(path: Path, widths: tuple[int, ...], seed: int) -> None:
    """Gemm (+Relu) layers of ``widths``, seeded weights: input [batch, widths[0]] -> output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits, last = [], [], "input"
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        inits += [numpy_helper.from_array((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}")]
        nodes.append(helper.make_node("Gemm", [last, f"w{i}", f"b{i}"], [f"h{i}"]))
        last = f"h{i}"
        if i < len(widths) - 2:
            nodes.append(helper.make_node("Relu", [last], [f"r{i}"]))
            last = f"r{i}"
    nodes[-1].output[0] = "output"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", widths[0]])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", widths[-1]])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def one_row(repo: Path, model: str) -> dict[str, np.ndarray]:
    """The first row of ``model``'s samples.npz (strings as object arrays of str)."""
    samples = read_samples(latest_samples(repo / model))
    return {name: value[:1].astype(object) if value.dtype.kind in "US" else value[:1] for name, value in samples.inputs.items()}


def tree_cpu_seconds(root_pid: int) -> float:
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


def machine_busy_seconds() -> float:
    """CPU seconds the cores this process may run on (every process on them) have spent busy since boot."""
    cpus = {f"cpu{n}" for n in os.sched_getaffinity(0)}
    busy = 0
    with open("/proc/stat") as f:
        for line in f:
            name, *values = line.split()
            if name in cpus:
                fields = [int(v) for v in values]
                busy += sum(fields[:8]) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")
