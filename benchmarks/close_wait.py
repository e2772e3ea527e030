"""Does a burst of clients leave sockets in CLOSE-WAIT in the bundled tritonserver?

Serves a repository with serve-repo's Server on 127.0.0.1, then sends bursts of N connections,
each kind in turn, and counts tritonserver's open files and its sockets in CLOSE-WAIT right
after the burst and again ``--settle`` seconds later::

    python benchmarks/close_wait.py model_repository --model iris_xgb --connections 2000

Kinds: ``idle`` (connect, close), ``health`` (a GET of /v2/health/ready, close unread),
``partial`` (half a request body, close), ``infer`` (a whole KServe JSON inference request built
from the entry's samples, closed before the answer is read). Loops are bounded by --connections.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tritonforge.repository import kserve_type, latest_samples, read_samples  # noqa: E402
from tritonforge.serving.server import Server  # noqa: E402


def infer_request(repo: Path, model: str, rows: int) -> bytes:
    """One request of ``rows`` copies of the first sample row (more rows: longer in flight)."""
    import numpy as np

    samples = read_samples(latest_samples(repo / model))
    inputs = [{"name": name, "shape": [rows, *value.shape[1:]], "datatype": kserve_type(value.dtype),
               "data": np.repeat(value[:1], rows, axis=0).ravel().tolist()} for name, value in samples.inputs.items()]
    body = json.dumps({"inputs": inputs}).encode()
    return (f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def burst(port: int, count: int, payload: bytes | None) -> int:
    sockets = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        if payload:
            s.sendall(payload)
        sockets.append(s)
    for s in sockets:
        s.close()
    return len(sockets)


def close_wait(pid: int, port: int) -> tuple[int, int]:
    """(open files of the process, its sockets on ``port`` in CLOSE-WAIT)."""
    files = len(os.listdir(f"/proc/{pid}/fd"))
    out = subprocess.run(["ss", "-tan", "state", "close-wait", f"( sport = :{port} )"], capture_output=True, text=True).stdout
    return files, max(len(out.splitlines()) - 1, 0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("repo", type=Path)
    p.add_argument("--model", required=True, help="an entry with stored samples, for the infer burst")
    p.add_argument("--connections", type=int, default=2000)
    p.add_argument("--settle", type=float, default=40.0, help="seconds to wait before counting again")
    p.add_argument("--rows", type=int, default=32, help="rows in each inference request of the infer burst")
    args = p.parse_args(argv)
    kinds = {"idle": None, "health": b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n",
             "partial": b"POST /v2/models/x/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{",
             "infer": infer_request(args.repo, args.model, args.rows)}
    with Server(args.repo, control_mode="explicit", load_models=(args.model,)) as server:
        pid, port = server.process.pid, int(server.http_port)
        print(f"tritonserver pid {pid}, HTTP port {port}; before: open files {close_wait(pid, port)[0]}")
        print(f"{'burst':<8} {'connections':>11} {'files after':>11} {'CLOSE-WAIT after':>16} "
              f"{'files +' + str(int(args.settle)) + ' s':>12} {'CLOSE-WAIT +' + str(int(args.settle)) + ' s':>17}")
        for kind, payload in kinds.items():
            sent = burst(port, args.connections, payload)
            time.sleep(3)
            files, waiting = close_wait(pid, port)
            time.sleep(args.settle)
            later_files, later_waiting = close_wait(pid, port)
            print(f"{kind:<8} {sent:>11} {files:>11} {waiting:>16} {later_files:>12} {later_waiting:>17}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
