"""The search: candidates, measuring one, picking the winner, writing it."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc

from tritonforge.loadtests.native import LoadError, LoadResult, run_wrk
from tritonforge.repository import config as config_file
from tritonforge.repository import latest_samples, read_samples
from tritonforge.repository.layout import variant_path
from tritonforge.repository.manifest import Manifest

ONNX = "onnxruntime_onnx"
CONCURRENCY = (4, 16, 32, 64)
DELAYS_US = (0, 100, 500, 2000)


class TuneError(RuntimeError):
    """tune-repo cannot tune this model (or at all); the message is one line."""


@dataclass(frozen=True)
class Candidate:
    """One serving config to try."""

    max_batch_size: int
    queue_delay_us: int
    instances: int
    intra_op_threads: int | None = None  # ONNX only; 0 = ONNX Runtime's own pool size
    inter_op_threads: int | None = None

    def describe(self) -> str:
        threads = "" if self.intra_op_threads is None else f", ORT threads {self.intra_op_threads}/{self.inter_op_threads}"
        return (f"max_batch {self.max_batch_size}, delay {self.queue_delay_us} us, "
                f"{self.instances} instance{'s' if self.instances > 1 else ''}{threads}")

    def apply(self, base: mc.ModelConfig) -> mc.ModelConfig:
        config = mc.ModelConfig()
        config.CopyFrom(base)
        config.max_batch_size = self.max_batch_size
        batching = config.dynamic_batching
        batching.max_queue_delay_microseconds = self.queue_delay_us
        sizes = [s for s in batching.preferred_batch_size if s <= self.max_batch_size]
        del batching.preferred_batch_size[:]
        batching.preferred_batch_size.extend(sizes or [self.max_batch_size])
        for group in config.instance_group:
            group.count = self.instances
        if self.intra_op_threads is not None:
            config.parameters["intra_op_thread_count"].string_value = str(self.intra_op_threads)
            config.parameters["inter_op_thread_count"].string_value = str(self.inter_op_threads)
        for warmup in config.model_warmup:
            warmup.batch_size = min(warmup.batch_size, self.max_batch_size)
        return config


@dataclass
class Tunable:
    """What one search tunes: a model, or an ensemble's steps and model together (an ensemble runs at
    its slowest member). Requests go to ``endpoint``; ``members`` are the configs a candidate changes."""

    endpoint: str
    members: dict[str, mc.ModelConfig]

    @property
    def is_ensemble(self) -> bool:
        return len(self.members) > 1 or self.endpoint not in self.members

    def configs(self, candidate: Candidate) -> dict[str, mc.ModelConfig]:
        out = {}
        for name, base in self.members.items():
            if self.is_ensemble:  # the ensemble's max_batch_size binds every member: keep it
                candidate = replace(candidate, max_batch_size=base.max_batch_size)
            member = candidate.apply(base)
            if base.platform != ONNX:
                member.parameters.pop("intra_op_thread_count", None)
                member.parameters.pop("inter_op_thread_count", None)
            out[name] = member
        return out


def tunable_of(repo: Path, model: str, target: str) -> Tunable:
    def config_of(name: str) -> mc.ModelConfig:
        return config_file.read_variant(Path(repo) / name, target) or config_file.read(Path(repo) / name)

    base = config_of(model)
    if base.platform != "ensemble":
        return Tunable(model, {model: base})
    members = {step.model_name: config_of(step.model_name) for step in base.ensemble_scheduling.step}
    return Tunable(model, members)


def candidate_of(config: mc.ModelConfig) -> Candidate:
    threads = config.parameters.get("intra_op_thread_count"), config.parameters.get("inter_op_thread_count")
    onnx = config.platform == ONNX
    return Candidate(config.max_batch_size, config.dynamic_batching.max_queue_delay_microseconds,
                     max(1, sum(g.count or 1 for g in config.instance_group) or 1),
                     int(threads[0].string_value) if onnx and threads[0] else (0 if onnx else None),
                     int(threads[1].string_value) if onnx and threads[1] else (1 if onnx else None))


def coarse(current: Candidate, cores: int) -> list[Candidate]:
    """A few far-apart points: queue delay against instances (and ORT threads)."""
    found = []
    for delay in (0, 500, 2000):
        for instances in (1, 2):
            threads = None if current.intra_op_threads is None else (0 if instances == 1 else max(1, cores // instances))
            found.append(replace(current, queue_delay_us=delay, instances=instances, intra_op_threads=threads))
    return [c for c in dict.fromkeys(found) if c != current]


def neighbours(best: Candidate, cores: int) -> list[Candidate]:
    """The local refinement around the best: the next delay either way, max batch halved or doubled, threads."""
    found = []
    index = min(range(len(DELAYS_US)), key=lambda i: abs(DELAYS_US[i] - best.queue_delay_us))
    for i in (index - 1, index + 1):
        if 0 <= i < len(DELAYS_US):
            found.append(replace(best, queue_delay_us=DELAYS_US[i]))
    for size in (best.max_batch_size // 2, best.max_batch_size * 2):
        if 8 <= size <= 256:
            found.append(replace(best, max_batch_size=size))
    if best.intra_op_threads is not None:
        for threads in {1, cores}:
            if threads != best.intra_op_threads:
                found.append(replace(best, intra_op_threads=threads))
    return found


@dataclass
class Measured:
    candidate: Candidate
    points: list[LoadResult] = field(default_factory=list)
    error: str = ""
    throughput: float = 0.0  # the best requests/s at a concurrency whose p99 is within the budget
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    concurrency: int = 0
    client_cpu_share: float = 0.0


@dataclass
class TuneResult:
    model: str
    target: str
    current: Measured
    measured: list[Measured]
    winner: Measured
    changed: bool
    why: str
    seconds: float
    written: Path | None = None


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


def _inputs(repo: Path, model: str) -> dict[str, np.ndarray]:
    path = latest_samples(repo / model)
    if path is None:
        raise TuneError(f"{model}: no samples.npz to send (tune-repo sends the model's stored sample rows)")
    inputs = read_samples(path).inputs
    return {k: (np.array([[x.encode() if isinstance(x, str) else x for x in row] for row in v.reshape(len(v), -1)],
                         dtype=object).reshape(v.shape) if v.dtype.kind in "US" else v)[:1] for k, v in inputs.items()}


def measure(server: "TritonControl", tunable: Tunable, candidate: Candidate, inputs, *, seconds: float,
            latency_budget_ms: float) -> Measured:
    """Load ``candidate`` and raise concurrency until throughput stops growing or p99 passes the budget."""
    result = Measured(candidate)
    model = tunable.endpoint
    try:
        for name, config in tunable.configs(candidate).items():
            server.load(name, config)
    except TuneError as exc:
        result.error = f"failed to load: {exc}"
        return result
    try:
        run_wrk(server.http_url, model, inputs, connections=CONCURRENCY[0], seconds=1)  # warm up
        for connections in CONCURRENCY:
            point = run_wrk(server.http_url, model, inputs, connections=connections, seconds=seconds)
            result.points.append(point)
            if point.errors and point.errors > point.requests * 0.01:
                break
            within = point.p99_ms <= latency_budget_ms
            if within and point.requests_per_s > result.throughput:
                grew = point.requests_per_s > result.throughput * 1.05
                result.throughput, result.p50_ms, result.p99_ms = point.requests_per_s, point.p50_ms, point.p99_ms
                result.concurrency, result.client_cpu_share = connections, point.client_cpu_share
                if not grew:
                    break
            else:
                break
    except LoadError as exc:
        result.error = str(exc)
    if not result.error and result.throughput == 0:
        result.error = f"no concurrency kept p99 within {latency_budget_ms:g} ms"
    return result


def tune_model(repo: Path, model: str, server: "TritonControl", *, target: str = "cpu", latency_budget_ms: float = 100.0,
               budget_s: float = 60.0, margin: float = 0.10, write_config_pbtxt: bool = False,
               progress: Callable[[str], None] | None = None, cores: int | None = None) -> TuneResult:
    """Tune ``model`` of ``repo`` on ``server``; write ``configs/<target>.pbtxt`` when the winner wins."""
    import os

    started = time.monotonic()
    say = progress or (lambda _text: None)
    cores = cores or os.cpu_count() or 1
    tunable = tunable_of(Path(repo), model, target)
    main = next((c for c in tunable.members.values() if c.platform not in ("ensemble",) and c.backend != "python"),
                next(iter(tunable.members.values())))
    if any(c.max_batch_size == 0 or not c.HasField("dynamic_batching") for c in tunable.members.values()):
        raise TuneError(f"{model}: does not batch (max_batch_size 0 or no dynamic_batching): nothing to tune")
    base = main
    inputs = _inputs(Path(repo), model)
    seconds = max(1.0, min(3.0, budget_s / 40))
    if budget_s < 6 * seconds * 2:
        raise TuneError(f"{model}: --budget-s {budget_s:g} is too small to measure three candidates "
                        f"(each takes about {2 * seconds + 2:.0f} s or more); give at least {12 * seconds:.0f}")
    current = candidate_of(base)
    say(f"{model}: measuring the current config ({current.describe()})")
    baseline = measure(server, tunable, current, inputs, seconds=seconds, latency_budget_ms=latency_budget_ms)
    if baseline.error and not baseline.points:
        raise TuneError(f"{model}: the current config cannot be measured: {baseline.error}")
    measured = [baseline]
    deadline = started + budget_s

    def run(candidates: list[Candidate]) -> None:
        for candidate in candidates:
            if time.monotonic() > deadline or any(m.candidate == candidate for m in measured):
                continue
            say(f"{model}: trying {candidate.describe()}")
            outcome = measure(server, tunable, candidate, inputs, seconds=seconds, latency_budget_ms=latency_budget_ms)
            measured.append(outcome)
            say(f"{model}:   " + (outcome.error or f"{outcome.throughput:,.0f} req/s at {outcome.concurrency} connections, "
                                                   f"p99 {outcome.p99_ms:.1f} ms"))

    run(coarse(current, cores))
    best = max(measured, key=lambda m: m.throughput)
    run([c for c in neighbours(best.candidate, cores) if not tunable.is_ensemble or c.max_batch_size == best.candidate.max_batch_size])
    best = max(measured, key=lambda m: m.throughput)
    # Noise must not churn configs: measure the best and the current again, and keep the current
    # unless the best still wins by the margin.
    changed, why = False, ""
    if best is not baseline:
        again_best = measure(server, tunable, best.candidate, inputs, seconds=seconds, latency_budget_ms=latency_budget_ms)
        again_current = measure(server, tunable, current, inputs, seconds=seconds, latency_budget_ms=latency_budget_ms)
        reference = max(baseline.throughput, again_current.throughput)
        if reference == 0:
            changed = min(best.throughput, again_best.throughput) > 0
            why = f"the current config keeps no concurrency within the {latency_budget_ms:g} ms p99 budget"
        else:
            gain = min(best.throughput, again_best.throughput) / reference - 1
            changed = gain > margin
            why = (f"beats the current config by {100 * gain:.0f}% on repeated measurement (margin {100 * margin:.0f}%)" if changed
                   else f"the best candidate's gain, {100 * gain:.0f}% on repeated measurement, is within the {100 * margin:.0f}% margin")
    else:
        why = "the current config measured best"
    winner = best if changed else baseline
    written = None
    if changed:
        for name, config in tunable.configs(winner.candidate).items():
            path = _write(Path(repo), name, target, config, winner, baseline, budget_s, latency_budget_ms, write_config_pbtxt,
                          via=model if tunable.is_ensemble else None)
            written = path if name == main.name or written is None else written
    for name, config in (tunable.configs(winner.candidate) if changed else tunable.members).items():
        server.load(name, config)  # the server is left on what the files say
    return TuneResult(model, target, baseline, measured, winner, changed, why, time.monotonic() - started, written)


def _write(repo: Path, model: str, target: str, config: mc.ModelConfig, winner: Measured, baseline: Measured,
           budget_s: float, latency_budget_ms: float, also_config_pbtxt: bool, via: str | None = None) -> Path:
    path = variant_path(repo / model, target)
    path.parent.mkdir(exist_ok=True)
    config_file.write(path, config)  # atomic: a new file renamed into place
    if also_config_pbtxt:
        portable = winner.candidate.apply(config_file.read(repo / model))
        config_file.write(repo / model / "config.pbtxt", portable)
    manifest = Manifest(repo)
    manifest.record_variant(model, target, "tune-repo", {
        "tuned_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "candidate": winner.candidate.describe(),
        "throughput": round(winner.throughput, 1), "p50_ms": winner.p50_ms, "p99_ms": winner.p99_ms,
        "baseline_throughput": round(baseline.throughput, 1), "latency_budget_ms": latency_budget_ms,
        "budget_s": budget_s, **({"tuned_through": via} if via else {}),
    })
    manifest.save()
    return path
