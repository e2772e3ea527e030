"""Load from a native generator, so that the client is not what is measured.

``wrk`` (Debian package) posts one pre-encoded KServe v2 request with binary tensor data (a JSON
header, then the raw bytes; ``Inference-Header-Content-Length`` says where the header ends) over
``connections`` keep-alive connections for ``seconds``, and a Lua ``done`` hook prints the
figures as JSON. The CPU the generator used comes from the kernel's accounting of the child.

    result = run_wrk("127.0.0.1:8000", "iris_xgb", {"input": rows}, connections=32, seconds=5)
    result.requests_per_s, result.p99_ms, result.client_cpu_share
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
