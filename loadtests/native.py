"""Load from native generators, so that the client is not what is measured.

HTTP: ``wrk`` (Debian package) posts one pre-encoded KServe v2 request with binary tensor data (a JSON
header, then the raw bytes; ``Inference-Header-Content-Length`` says where the header ends) over
``connections`` keep-alive connections for ``seconds``, and a Lua ``done`` hook prints the
figures as JSON. The CPU the generator used comes from the kernel's accounting of the child.

    result = run_wrk("127.0.0.1:8000", "iris_xgb", {"input": rows}, connections=32, seconds=5)
    result.requests_per_s, result.p99_ms, result.client_cpu_share

gRPC: ``h2load`` (Debian ``nghttp2-client``) posts one pre-encoded ``ModelInferRequest`` (binary
tensors in ``raw_input_contents``, behind gRPC's 5-byte frame prefix) over HTTP/2 cleartext:

    result = run_h2load("127.0.0.1:8001", "iris_xgb", {"input": rows}, connections=32, seconds=5)

h2load knows HTTP, not gRPC: a failed call is an HTTP 200 whose ``grpc-status`` trailer h2load
never reads. So run_h2load first sends the same bytes once through grpcio and stops with the
server's message if that call fails, then counts as failed every request of the run whose
answer is not the expected length (an error answer carries no message at all).
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tritonforge.repository import kserve_type

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["Inference-Header-Content-Length"] = "%(header_length)d"
local body = io.open("%(body)s", "rb")
wrk.body = body:read("*all")
body:close()

local statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON{"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, ' ..
    '"mean_us": %%f, "connect_errors": %%d, "read_errors": %%d, "write_errors": %%d, "status_errors": %%d, "timeouts": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


class LoadError(RuntimeError):
    """The load generator is missing or could not run; the message says why."""


@dataclass(frozen=True)
class LoadResult:
    """One load run against one model."""

    model: str
    connections: int
    seconds: float
    requests: int
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int  # non-2xx answers, timeouts, socket errors
    client_cpu_share: float  # of the whole machine (all cores) used by the generator

    def as_dict(self) -> dict:
        return asdict(self)


def binary_request(inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> tuple[bytes, int]:
    """A KServe v2 binary-tensor request body and the length of its JSON header."""
    tensors, chunks = [], []
    for name, array in inputs.items():
        array = np.asarray(array)
        if array.dtype == object:
            data = b"".join(len(v).to_bytes(4, "little") + v for v in
                            (x if isinstance(x, bytes) else str(x).encode() for x in array.reshape(-1)))
        else:
            data = np.ascontiguousarray(array).tobytes()
        tensors.append({"name": name, "shape": list(array.shape), "datatype": kserve_type(array.dtype),
                        "parameters": {"binary_data_size": len(data)}})
        chunks.append(data)
    header = {"inputs": tensors}
    if outputs:
        header["outputs"] = [{"name": n, "parameters": {"binary_data": True}} for n in outputs]
    encoded = json.dumps(header).encode()
    return encoded + b"".join(chunks), len(encoded)


def json_request(inputs: dict[str, np.ndarray]) -> bytes:
    """The same request as KServe v2 JSON (what a hand-written server usually takes)."""
    return json.dumps({"inputs": [{"name": n, "shape": list(np.shape(a)), "datatype": kserve_type(np.asarray(a).dtype),
                                   "data": np.asarray(a).reshape(-1).tolist()} for n, a in inputs.items()]}).encode()


def wrk_path() -> str:
    found = shutil.which("wrk")
    if not found:
        raise LoadError("wrk is not installed: run scripts/setup.sh (Debian: apt-get install wrk)")
    return found


def run_wrk(url: str, model: str, inputs: dict[str, np.ndarray], *, connections: int = 32, seconds: float = 5.0,
            threads: int = 1, outputs: list[str] | None = None, timeout_s: float = 10.0, json_body: bool = False) -> LoadResult:
    """Load ``model`` at ``url`` (host:port, HTTP) with ``connections`` for ``seconds`` (bounded).
    ``json_body`` sends KServe v2 JSON instead of binary tensors."""
    body, header_length = (json_request(inputs), 0) if json_body else binary_request(inputs, outputs)
    with tempfile.TemporaryDirectory(prefix="tritonforge-wrk-") as scratch:
        body_path = Path(scratch) / "body.bin"
        body_path.write_bytes(body)
        script = Path(scratch) / "kserve.lua"
        lua = LUA % {"header_length": header_length, "body": body_path}
        if json_body:
            lua = lua.replace('"application/octet-stream"', '"application/json"').replace(
                f'wrk.headers["Inference-Header-Content-Length"] = "{header_length}"', "")
        script.write_text(lua)
        argv = [wrk_path(), "-t", str(max(1, min(threads, connections))), "-c", str(connections),
                "-d", f"{max(1, round(seconds))}s", "--timeout", f"{timeout_s:g}s", "-s", str(script),
                f"http://{url}/v2/models/{model}/infer"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + timeout_s + 30)
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((l for l in done.stdout.splitlines() if l.startswith("WRK_JSON")), None)
    if done.returncode != 0 or line is None:
        raise LoadError(f"wrk failed on {model} ({done.returncode}): {(done.stderr or done.stdout).strip()[-300:]}")
    figures = json.loads(line[len("WRK_JSON"):])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    duration = figures["duration_us"] / 1e6
    errors = sum(figures[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    return LoadResult(model, connections, duration, figures["requests"], figures["requests"] / duration,
                      figures["p50_us"] / 1000, figures["p90_us"] / 1000, figures["p99_us"] / 1000, errors,
                      cpu / (wall * (os.cpu_count() or 1)))


GRPC_INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"


def grpc_request(model: str, inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> bytes:
    """A serialized KServe v2 ``ModelInferRequest`` with every tensor in ``raw_input_contents``
    (BYTES elements each behind a 4-byte little-endian length, as Triton reads them)."""
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model)
    for name, array in inputs.items():
        array = np.asarray(array)
        if array.dtype == object or array.dtype.kind in "US":
            data = b"".join(len(v).to_bytes(4, "little") + v for v in
                            (x if isinstance(x, bytes) else str(x).encode() for x in array.reshape(-1)))
        else:
            data = np.ascontiguousarray(array).tobytes()
        request.inputs.add(name=name, datatype=kserve_type(array.dtype), shape=list(array.shape))
        request.raw_input_contents.append(data)
    for name in outputs or ():
        request.outputs.add(name=name)
    return request.SerializeToString()


def grpc_frame(message: bytes) -> bytes:
    """gRPC's length-prefixed message: a compression flag (0), the length (4 bytes, big-endian)."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def grpc_preflight(url: str, model: str, message: bytes, timeout_s: float = 30.0) -> bytes:
    """Send ``message`` once as the load will and return the answer; a failed call raises
    LoadError with the server's status and message (h2load alone would count it a success)."""
    import grpc

    with grpc.insecure_channel(url) as channel:
        call = channel.unary_unary(GRPC_INFER_PATH)  # no (de)serializers: the bytes as they are
        try:
            # wait_for_ready: a server busy accepting connections is slow, not wrong
            return call(message, timeout=timeout_s, wait_for_ready=True)
        except grpc.RpcError as exc:
            raise LoadError(f"gRPC pre-flight request to {model} at {url} failed, so no load was run "
                            f"(h2load cannot see gRPC errors): {exc.code().name}: {exc.details()}") from None


def h2load_path() -> str:
    found = shutil.which("h2load")
    if not found:
        raise LoadError("h2load is not installed: run scripts/setup.sh (Debian: apt-get install nghttp2-client)")
    return found


def _h2load_figures(stdout: str) -> dict[str, float]:
    """The totals of h2load's summary: duration, done/succeeded/failed/errored/timeout, 2xx, data bytes."""
    import re

    figures = {}
    patterns = {"duration_s": r"finished in ([\d.]+)s", "done": r"(\d+) done", "succeeded": r"(\d+) succeeded",
                "failed": r"(\d+) failed", "errored": r"(\d+) errored", "timeout": r"(\d+) timeout",
                "status_2xx": r"(\d+) 2xx", "data_bytes": r"\((\d+)\) data"}
    for key, pattern in patterns.items():
        found = re.search(pattern, stdout)
        if found is None:
            raise LoadError(f"h2load's summary has no '{key}' figure: {stdout.strip()[-300:]}")
        figures[key] = float(found.group(1))
    return figures


def run_h2load(url: str, model: str, inputs: dict[str, np.ndarray], *, connections: int = 32, streams: int = 1,
               seconds: float = 5.0, threads: int = 1, outputs: list[str] | None = None,
               timeout_s: float = 10.0) -> LoadResult:
    """Load ``model`` at ``url`` (host:port, gRPC) with ``connections`` HTTP/2 connections of
    ``streams`` concurrent calls each, for ``seconds`` (bounded). ``LoadResult.connections`` is
    the number of calls in flight (connections x streams)."""
    message = grpc_request(model, inputs, outputs)
    answer = grpc_preflight(url, model, message, timeout_s=max(timeout_s, 30.0))
    expected = len(grpc_frame(answer))
    with tempfile.TemporaryDirectory(prefix="tritonforge-h2load-") as scratch:
        body_path, log_path = Path(scratch) / "request.grpc", Path(scratch) / "requests.tsv"
        body_path.write_bytes(grpc_frame(message))
        argv = [h2load_path(), "-t", str(max(1, min(threads, connections))), "-c", str(connections),
                "-m", str(max(1, streams)), "-D", str(max(1, round(seconds))), "-N", f"{max(1, round(timeout_s))}",
                "-d", str(body_path), "-H", "content-type: application/grpc", "-H", "te: trailers",
                "--log-file", str(log_path), f"http://{url}{GRPC_INFER_PATH}"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + timeout_s + 30)
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise LoadError(f"h2load failed on {model} ({done.returncode}): {(done.stderr or done.stdout).strip()[-300:]}")
        figures = _h2load_figures(done.stdout)
        # One row per finished request: start (us since epoch), HTTP status, microseconds to the end.
        log = np.loadtxt(log_path, dtype=np.int64, ndmin=2, usecols=(1, 2)) if log_path.stat().st_size else np.zeros((0, 2), np.int64)
    requests = int(figures["done"])
    if requests == 0:
        raise LoadError(f"h2load finished no request on {model} at {url}: {done.stdout.strip()[-300:]}")
    # A gRPC error is an HTTP 200 with no message (its status is in a trailer): every answer of a
    # good call is ``expected`` bytes long, so the bytes received say how many calls succeeded.
    answered = min(int(figures["data_bytes"]) // expected, int(figures["succeeded"]))
    errors = max(0, requests - answered) + int(figures["timeout"])
    latency_ms = log[:, 1] / 1000.0 if len(log) else np.zeros(1)
    p50, p90, p99 = (float(v) for v in np.percentile(latency_ms, [50, 90, 99]))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    duration = figures["duration_s"]
    return LoadResult(model, connections * max(1, streams), duration, requests, requests / duration, p50, p90, p99,
                      errors, cpu / (wall * (os.cpu_count() or 1)))
