"""The search within the budget, and the winner written as a variant and recorded."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from tritonclient.grpc import model_config_pb2 as mc

from tritonforge.repository import config as config_file
from tritonforge.repository.layout import variant_path
from tritonforge.repository.manifest import Manifest

from .candidates import Candidate, candidate_of, coarse, neighbours, tunable_of
from .errors import TuneError
from .measure import TritonControl, WrkMeasurer, sample_inputs
from .objective import Measured, Objective, slower_at_one, verdict

# The current config, two candidates, the best and the current again, and the restoring load.
MEASUREMENTS_AT_LEAST = 6


@dataclass
class TuneResult:
    model: str
    target: str
    objective: Objective
    current: Measured
    measured: list[Measured]
    winner: Measured
    changed: bool
    why: str
    seconds: float
    budget_s: float = 0.0
    skipped: int = 0  # candidates left unmeasured: the budget would not have held
    written: Path | None = None


@dataclass
class Search:
    """What :func:`search` found: every measurement, the one kept and why."""

    current: Measured
    measured: list[Measured]
    winner: Measured
    changed: bool
    why: str
    skipped: int


class Measurer(Protocol):
    estimate_s: float

    def __call__(self, candidate: Candidate) -> Measured: ...


def search(current: Candidate, measure: Measurer, objective: Objective, *, budget_s: float, margin: float = 0.10,
           cores: int = 1, ensemble: bool = False, clock: Callable[[], float] = time.monotonic,
           progress: Callable[[str], None] | None = None, label: str = "") -> Search:
    """Measure ``current``, a coarse sweep, then the neighbours of the best, and measure the best
    and ``current`` again before keeping it. The whole search, the final measurements and the
    server's restoring load (one more load's time) fit in ``budget_s`` by ``clock``: a candidate is
    only started while the slowest measurement so far (or the measurer's estimate, if longer),
    three times over (the candidate and the final two), plus the slowest load, still fits."""
    say = progress or (lambda _text: None)
    prefix = f"{label}: " if label else ""
    started = clock()
    deadline = started + budget_s

    def timed(candidate: Candidate) -> Measured:
        began = clock()
        outcome = measure(candidate)
        outcome.seconds = clock() - began
        return outcome

    if budget_s < MEASUREMENTS_AT_LEAST * measure.estimate_s:
        raise TuneError(f"{prefix}--budget-s {budget_s:g} is too small to measure three candidates and check the best "
                        f"(each takes about {measure.estimate_s:.0f} s); give at least {MEASUREMENTS_AT_LEAST * measure.estimate_s:.0f}")
    say(f"{prefix}measuring the current config ({current.describe()})")
    baseline = timed(current)
    if baseline.error and not baseline.points:
        raise TuneError(f"{prefix}the current config cannot be measured: {baseline.error}")
    measured = [baseline]
    skipped = 0

    def affordable() -> bool:
        # The current config may have been quick (given up at one connection): never expect less than the estimate.
        slowest = max(measure.estimate_s, *(m.seconds for m in measured))
        return clock() + 3 * slowest + max(m.load_seconds for m in measured) <= deadline

    def eligible(m: Measured) -> bool:
        return objective.problem(m) is None and (m is baseline or slower_at_one(m, baseline, margin) is None)

    def best() -> Measured:
        good = [m for m in measured if eligible(m)]
        if good:
            return max(good, key=objective.score)
        return max((m for m in measured if not m.error), key=objective.score, default=baseline)

    def run(candidates: list[Candidate]) -> None:
        nonlocal skipped
        for candidate in candidates:
            if any(m.candidate == candidate for m in measured):
                continue
            if not affordable():
                skipped += 1
                continue
            say(f"{prefix}trying {candidate.describe()}")
            outcome = timed(candidate)
            measured.append(outcome)
            shown = "; ".join(f"{c}: {p.requests_per_s:,.0f} req/s, p99 {p.p99_ms:.1f} ms" for c, p in sorted(outcome.points.items()))
            trouble = objective.problem(outcome) or slower_at_one(outcome, baseline, margin)
            say(f"{prefix}  {shown or outcome.error}" + (f" ({trouble})" if trouble and shown else ""))

    run(coarse(current, cores))
    leader = best()
    run([c for c in neighbours(leader.candidate, cores) if not ensemble or c.max_batch_size == leader.candidate.max_batch_size])
    leader = best()
    if leader is baseline or not eligible(leader):
        if objective.problem(baseline):
            guarded = sum(m is not baseline and objective.problem(m) is None for m in measured)
            why = (f"no candidate met the objective ({objective.describe()})"
                   + (f" without answering one connection too slowly ({guarded} met it but did)" if guarded else "")
                   + f"; the current config: {objective.problem(baseline)}")
        else:
            why = "the current config measured best"
            passed_over = [m for m in measured if not m.error and objective.score(m) > objective.score(baseline)]
            if passed_over:
                slow = sum(objective.problem(m) is None and slower_at_one(m, baseline, margin) is not None for m in passed_over)
                why += (f" of the candidates that qualify ({len(passed_over)} scored more but "
                        + (f"{slow} of them answered one connection too slowly" if slow else "missed the objective")
                        + (", the rest missed the objective" if 0 < slow < len(passed_over) else "") + ")")
        return Search(baseline, measured, baseline, False, why, skipped)
    say(f"{prefix}measuring the best ({leader.candidate.describe()}) and the current config again")
    again_best, again_current = timed(leader.candidate), timed(current)
    changed, why = verdict(objective, margin, leader, again_best, baseline, again_current)
    return Search(baseline, measured, leader if changed else baseline, changed, why, skipped)


def tune_model(repo: Path, model: str, server: TritonControl | None, *, target: str = "cpu",
               objective: Objective | None = None, budget_s: float = 60.0, margin: float = 0.10,
               write_config_pbtxt: bool = False, progress: Callable[[str], None] | None = None, cores: int | None = None,
               measurer: Measurer | None = None, clock: Callable[[], float] = time.monotonic) -> TuneResult:
    """Tune ``model`` of ``repo`` on ``server`` by ``objective`` within ``budget_s`` (the final
    measurements and the server's restoring load included); write ``configs/<target>.pbtxt`` when
    the winner wins. ``measurer`` replaces the wrk measurer (and then ``server`` may be None)."""
    import os

    started = clock()
    objective = objective or Objective()
    cores = cores or os.cpu_count() or 1
    tunable = tunable_of(Path(repo), model, target)
    main = next((c for c in tunable.members.values() if c.platform not in ("ensemble",) and c.backend != "python"),
                next(iter(tunable.members.values())))
    if any(c.max_batch_size == 0 or not c.HasField("dynamic_batching") for c in tunable.members.values()):
        raise TuneError(f"{model}: does not batch (max_batch_size 0 or no dynamic_batching): nothing to tune")
    if measurer is None:
        if server is None:
            raise TuneError(f"{model}: no server to measure on")
        points = len(objective.measured_at)
        seconds = max(1, min(3, round(budget_s / (15 * points))))
        measurer = WrkMeasurer(server, tunable, sample_inputs(Path(repo), model), connections=objective.measured_at,
                               seconds=seconds, clock=clock,
                               give_up_over_ms=objective.latency_budget_ms if objective.kind == "throughput" else None)
    found = search(candidate_of(main), measurer, objective, budget_s=budget_s, margin=margin, cores=cores,
                   ensemble=tunable.is_ensemble, clock=clock, progress=progress, label=model)
    written = None
    if found.changed:
        for name, config in tunable.configs(found.winner.candidate).items():
            path = _write(Path(repo), name, target, config, found.winner, found.current, budget_s, objective,
                          write_config_pbtxt, via=model if tunable.is_ensemble else None)
            written = path if name == main.name or written is None else written
    settle = getattr(measurer, "settle", None)
    if settle is not None:  # the server is left on what the files say
        settle(tunable.configs(found.winner.candidate) if found.changed else tunable.members)
    return TuneResult(model, target, objective, found.current, found.measured, found.winner, found.changed, found.why,
                      clock() - started, budget_s, found.skipped, written)


def _write(repo: Path, model: str, target: str, config: mc.ModelConfig, winner: Measured, baseline: Measured,
           budget_s: float, objective: Objective, also_config_pbtxt: bool, via: str | None = None) -> Path:
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
        "objective": objective.describe(),
        "throughput": round(winner.throughput, 1), "p50_ms": winner.p50_ms, "p99_ms": winner.p99_ms,
        "baseline_throughput": round(baseline.throughput, 1), "latency_budget_ms": objective.latency_budget_ms,
        "curve": winner.curve(), "baseline_curve": baseline.curve(),
        "budget_s": budget_s, **({"tuned_through": via} if via else {}),
    })
    manifest.save()
    return path
