"""What each model costs to serve: throughput and latency at one fixed concurrency, over HTTP or
gRPC, measured with the native load generators the benchmarks use (wrk over HTTP, h2load over
gRPC, binary tensors both), one model after the other in the same run, with the share of the
machine the generator itself used.

    measured = measure("127.0.0.1:8000", entry, spec, arrays, protocol="http", concurrency=8, seconds=3)
    measured.requests_per_s, measured.p50_ms, measured.p99_ms, measured.client_cpu_share

Over gRPC the calls are multiplexed on one HTTP/2 connection (``concurrency`` streams), as gRPC
clients do.
"""
from __future__ import annotations

import numpy as np

from tritonforge.clients import ModelSpec
from tritonforge.loadtests.native import LoadError, LoadResult, run_h2load, run_wrk

from .answers import CompareError, Entry

MAX_SECONDS = 60.0
MAX_CONCURRENCY = 256
GENERATORS = {"http": "wrk", "grpc": "h2load"}


def measure(url: str, entry: Entry, spec: ModelSpec, arrays: dict[str, np.ndarray], *, protocol: str = "http",
            concurrency: int, seconds: float, rows_per_request: int = 1) -> LoadResult:
    """Load ``entry`` at ``url`` over ``protocol`` with requests of the first ``rows_per_request``
    rows (every row for a model that does not batch), ``concurrency`` at a time for ``seconds``
    (bounded by MAX_SECONDS)."""
    if protocol not in GENERATORS:
        raise CompareError(f"cost over '{protocol}': choose {' or '.join(GENERATORS)}")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise CompareError(f"--concurrency {concurrency}: give 1 to {MAX_CONCURRENCY}")
    if not 0 < seconds <= MAX_SECONDS:
        raise CompareError(f"--duration {seconds:g}: give more than 0 and at most {MAX_SECONDS:g} seconds")
    request = {name: array[:rows_per_request] for name, array in arrays.items()} if spec.batches else arrays
    outputs = [t.name for t in spec.outputs]
    try:
        if protocol == "http":
            result = run_wrk(url, entry.path, request, connections=concurrency, seconds=seconds, outputs=outputs)
        elif entry.version:
            raise CompareError(f"cannot measure {entry.label} over grpc: the gRPC load generator sends no model version "
                               "(measure versions over http: --cost-protocol http)")
        else:
            result = run_h2load(url, entry.name, request, connections=1, streams=concurrency, seconds=seconds,
                                outputs=outputs)
    except LoadError as exc:
        raise CompareError(f"cannot measure {entry.label} over {protocol}: {exc}") from None
    if result.requests == 0:
        raise CompareError(f"cannot measure {entry.label}: no request completed in {seconds:g} s at {url} ({protocol})")
    return result
