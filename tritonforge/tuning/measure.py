"""Measuring a candidate on a real server: load its configs through Triton's model-control API
(a config override: no file is edited), warm it up, and run ``wrk`` at each concurrency.

    measurer = WrkMeasurer(TritonControl("127.0.0.1:8000"), tunable, inputs, connections=(1, 32), seconds=2)
    measured = measurer(candidate)       # Measured, with one LoadResult per concurrency
    measurer.settle(tunable.members)     # leave the server on these configs

A search takes any callable ``Candidate -> Measured`` with an ``estimate_s``: tests hand it a
fake one, so the choice logic is checked without a server or a clock.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc

from tritonforge.loadtests.native import LoadError, run_wrk
from tritonforge.repository import latest_samples, read_samples

from .errors import TuneError
from .objective import MAX_ERROR_SHARE, Measured

if TYPE_CHECKING:
    from .candidates import Candidate, Tunable

WARMUP_S = 1  # wrk's shortest run
LOAD_ALLOWANCE_S = 1.5  # a load through the API and wrk's start, per measurement, before any was timed


class TritonControl:
    """The model-control and load interface of a running Triton (local serve-repo or --url)."""

    def __init__(self, http_url: str, admin_key: str | None = None) -> None:
        self.http_url = http_url
        self.admin_key = admin_key

    def _post(self, path: str, body: dict) -> None:
        headers = {"Content-Type": "application/json"}
        if self.admin_key:
            headers["triton-admin-key"] = self.admin_key
        request = urllib.request.Request(f"http://{self.http_url}{path}", json.dumps(body).encode(), headers)
        try:
            with urllib.request.urlopen(request, timeout=300):
                return
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            try:
                text = json.loads(text).get("error", text)
            except ValueError:
                pass
            raise TuneError(" ".join(text.split("\n\nAt:")[0].split())) from None
        except OSError as exc:
            raise TuneError(f"{self.http_url}: cannot reach the server ({exc})") from None

    def load(self, model: str, config: mc.ModelConfig) -> None:
        override = json_format.MessageToJson(config, preserving_proto_field_name=True)
        self._post(f"/v2/repository/models/{model}/load", {"parameters": {"config": override}})


def sample_inputs(repo: Path, model: str) -> dict[str, np.ndarray]:
    """One stored sample row of ``model``, as wrk sends it (strings as bytes objects)."""
    path = latest_samples(repo / model)
    if path is None:
        raise TuneError(f"{model}: no samples.npz to send (tune-repo sends the model's stored sample rows)")
    inputs = read_samples(path).inputs
    return {k: (np.array([[x.encode() if isinstance(x, str) else x for x in row] for row in v.reshape(len(v), -1)],
                         dtype=object).reshape(v.shape) if v.dtype.kind in "US" else v)[:1] for k, v in inputs.items()}


class WrkMeasurer:
    """Measures candidates of one tunable on a real server with wrk, at ``connections`` each for
    ``seconds``. ``give_up_over_ms``: stop raising the concurrency once a p99 passes it (the
    candidate cannot qualify), which saves the budget for others."""

    def __init__(self, server: TritonControl, tunable: "Tunable", inputs: dict[str, np.ndarray], *,
                 connections: tuple[int, ...], seconds: int, give_up_over_ms: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.server, self.tunable, self.inputs = server, tunable, inputs
        self.connections, self.seconds = tuple(sorted(connections)), max(1, int(seconds))
        self.give_up_over_ms, self.clock = give_up_over_ms, clock

    @property
    def estimate_s(self) -> float:
        """What one measurement should take before any was timed."""
        return WARMUP_S + len(self.connections) * self.seconds + LOAD_ALLOWANCE_S

    def __call__(self, candidate: "Candidate") -> Measured:
        result = Measured(candidate)
        started = self.clock()
        try:
            self.settle(self.tunable.configs(candidate))
        except TuneError as exc:
            result.error = f"failed to load: {exc}"
            return result
        result.load_seconds = self.clock() - started
        model, url = self.tunable.endpoint, self.server.http_url
        try:
            run_wrk(url, model, self.inputs, connections=self.connections[-1], seconds=WARMUP_S)
            for connections in self.connections:
                point = run_wrk(url, model, self.inputs, connections=connections, seconds=self.seconds)
                result.points[connections] = point
                if point.errors > point.requests * MAX_ERROR_SHARE:
                    break
                if self.give_up_over_ms is not None and point.p99_ms > self.give_up_over_ms:
                    break
        except LoadError as exc:
            result.error = str(exc)
        return result

    def settle(self, configs: dict[str, mc.ModelConfig]) -> None:
        """Load ``configs`` (member name -> config) on the server."""
        for name, config in configs.items():
            self.server.load(name, config)
