"""What each model costs to serve: throughput and latency at one fixed concurrency, measured with
the native load generator the benchmarks use (wrk, binary KServe tensors), one model after the
other in the same run, with the share of the machine the generator itself used.

    measured = measure("127.0.0.1:8000", entry, spec, arrays, concurrency=8, seconds=3)
    measured.requests_per_s, measured.p50_ms, measured.p99_ms, measured.client_cpu_share
"""
from __future__ import annotations

import numpy as np

from tritonforge.clients import ModelSpec
from tritonforge.loadtests.native import LoadError, LoadResult, run_wrk

from .answers import CompareError, Entry

MAX_SECONDS = 60.0
MAX_CONCURRENCY = 256


def measure(http_url: str, entry: Entry, spec: ModelSpec, arrays: dict[str, np.ndarray], *,
            concurrency: int, seconds: float, rows_per_request: int = 1) -> LoadResult:
    """Load ``entry`` with requests of the first ``rows_per_request`` rows (every row for a model that
    does not batch) over ``concurrency`` connections for ``seconds`` (bounded by MAX_SECONDS)."""
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise CompareError(f"--concurrency {concurrency}: give 1 to {MAX_CONCURRENCY}")
    if not 0 < seconds <= MAX_SECONDS:
        raise CompareError(f"--duration {seconds:g}: give more than 0 and at most {MAX_SECONDS:g} seconds")
    request = {name: array[:rows_per_request] for name, array in arrays.items()} if spec.batches else arrays
    try:
        result = run_wrk(http_url, entry.path, request, connections=concurrency, seconds=seconds,
                         outputs=[t.name for t in spec.outputs])
    except LoadError as exc:
        raise CompareError(f"cannot measure {entry.label}: {exc}") from None
    if result.requests == 0:
        raise CompareError(f"cannot measure {entry.label}: no request completed in {seconds:g} s at {http_url}")
    return result
