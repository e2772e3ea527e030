"""What "better" means for tune-repo: a candidate's curve (figures at each concurrency), the
objective it is judged by, the one-connection guard, and the verdict's wording.

    objective = Objective("throughput", concurrency=(1, 8, 32), latency_budget_ms=50)
    objective.problem(measured)   # None, or why it does not qualify ("p99 61.0 ms at 32 connections, ...")
    objective.score(measured)     # higher is better

Two objectives: ``throughput``, the most requests/s of a candidate whose p99 stays within the
latency budget at every listed concurrency; ``p99``, the lowest p99 at one given concurrency.
Whatever the objective, a candidate that answers one connection more slowly than the current
config, beyond the margin, is not taken: a tuned config must not trade the quiet hours' latency
for the busy hours' throughput (a queue delay costs a lone request its full length).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from tritonforge.loadtests.native import LoadResult

from .errors import TuneError

if TYPE_CHECKING:
    from .candidates import Candidate

OBJECTIVES = ("throughput", "p99")
ONE = 1  # the guard's concurrency: one connection, one request at a time
MAX_ERROR_SHARE = 0.01


@dataclass
class Measured:
    """One candidate's figures: a wrk run per concurrency (``points``, by connections)."""

    candidate: "Candidate"
    points: dict[int, LoadResult] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0  # how long measuring it took, by the tuner's clock
    load_seconds: float = 0.0  # of which loading the config took

    def at(self, connections: int) -> LoadResult | None:
        return self.points.get(connections)

    @property
    def throughput(self) -> float:
        return max((p.requests_per_s for p in self.points.values()), default=0.0)

    @property
    def top(self) -> LoadResult | None:
        """The point at the highest concurrency measured."""
        return self.points[max(self.points)] if self.points else None

    @property
    def p50_ms(self) -> float:
        return self.top.p50_ms if self.top else 0.0

    @property
    def p99_ms(self) -> float:
        return max((p.p99_ms for p in self.points.values()), default=0.0)

    @property
    def client_cpu_share(self) -> float:
        return max((p.client_cpu_share for p in self.points.values()), default=0.0)

    def curve(self) -> dict[str, dict[str, float]]:
        """The figures by concurrency, for the manifest and the JSON report."""
        return {str(c): {"requests_per_s": round(p.requests_per_s, 1), "p50_ms": round(p.p50_ms, 3),
                         "p99_ms": round(p.p99_ms, 3), "errors": p.errors} for c, p in sorted(self.points.items())}


@dataclass(frozen=True)
class Objective:
    """How candidates are ranked. ``concurrency``: the connections the user cares about; ``at``:
    the load of the ``p99`` objective (default the highest listed)."""

    kind: str = "throughput"
    concurrency: tuple[int, ...] = (1, 32)
    latency_budget_ms: float = 100.0
    at: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in OBJECTIVES:
            raise TuneError(f"objective '{self.kind}': choose {' or '.join(OBJECTIVES)}")
        if not self.concurrency or any(c < 1 or c > 1024 for c in self.concurrency):
            raise TuneError(f"--concurrency {','.join(map(str, self.concurrency))}: give connection counts from 1 to 1024")
        object.__setattr__(self, "concurrency", tuple(sorted(set(self.concurrency))))
        if self.at is not None and self.at not in self.concurrency:
            raise TuneError(f"--at {self.at}: not one of --concurrency {','.join(map(str, self.concurrency))}")
        if not self.latency_budget_ms > 0:
            raise TuneError(f"--latency-budget-ms {self.latency_budget_ms:g}: give more than 0")

    @property
    def load(self) -> int:
        """The concurrency the p99 objective is read at."""
        return self.at if self.at is not None else self.concurrency[-1]

    @property
    def measured_at(self) -> tuple[int, ...]:
        """Every concurrency a candidate is measured at: the listed ones and one connection (the guard)."""
        return tuple(sorted({ONE, *self.concurrency}))

    def describe(self) -> str:
        listed = ", ".join(map(str, self.concurrency))
        if self.kind == "throughput":
            return f"highest throughput with p99 within {self.latency_budget_ms:g} ms at {listed} connections"
        return f"lowest p99 at {self.load} connections"

    def problem(self, m: Measured) -> str | None:
        """Why ``m`` cannot be chosen, or None."""
        if m.error:
            return m.error
        wanted = self.concurrency if self.kind == "throughput" else (self.load,)
        for c in self.measured_at:
            point = m.at(c)
            if point is not None and point.errors > max(0, point.requests) * MAX_ERROR_SHARE:
                return f"{point.errors} of {point.requests} requests failed at {c} connection{'s' * (c > 1)}"
            if self.kind == "throughput" and point is not None and c in wanted and point.p99_ms > self.latency_budget_ms:
                return f"p99 {point.p99_ms:.1f} ms at {c} connection{'s' * (c > 1)}, over the {self.latency_budget_ms:g} ms budget"
        missing = [c for c in self.measured_at if m.at(c) is None]
        if missing:
            return f"not measured at {', '.join(map(str, missing))} connections"
        return None

    def score(self, m: Measured) -> float:
        """Higher is better: requests/s, or minus the p99 at the load."""
        if self.kind == "throughput":
            return max((m.at(c).requests_per_s for c in self.concurrency if m.at(c)), default=0.0)
        point = m.at(self.load)
        return -point.p99_ms if point else float("-inf")

    def figure(self, m: Measured) -> str:
        if self.kind == "throughput":
            return f"{self.score(m):,.0f} req/s"
        point = m.at(self.load)
        return f"p99 {point.p99_ms:.1f} ms at {self.load} connections" if point else "not measured"

    def gain(self, candidate: Measured, reference: Measured) -> float:
        """The candidate's gain over the reference as a share: more throughput, or a lower p99."""
        if self.kind == "throughput":
            ref = self.score(reference)
            return self.score(candidate) / ref - 1 if ref else float("inf")
        ref = reference.at(self.load).p99_ms
        return 1 - candidate.at(self.load).p99_ms / ref if ref else 0.0

    def say_gain(self, gain: float) -> str:
        amount = f"{100 * abs(gain):.0f}%"
        if self.kind == "throughput":
            return f"{amount} {'more' if gain >= 0 else 'less'} throughput"
        return f"{amount} {'lower' if gain >= 0 else 'higher'} p99 at {self.load} connections"


def slower_at_one(candidate: Measured, reference: Measured, margin: float) -> str | None:
    """Why ``candidate`` answers one connection too slowly against ``reference``, or None."""
    mine, theirs = candidate.at(ONE), reference.at(ONE)
    if mine is None or theirs is None or not theirs.requests_per_s:
        return None
    loss = 1 - mine.requests_per_s / theirs.requests_per_s
    if loss <= margin:
        return None
    return (f"at 1 connection it answers {mine.requests_per_s:,.0f} req/s (p50 {mine.p50_ms:.2f} ms) against the current "
            f"config's {theirs.requests_per_s:,.0f} (p50 {theirs.p50_ms:.2f} ms), {100 * loss:.0f}% slower, beyond the "
            f"{100 * margin:.0f}% margin")


def _merge(a: Measured, b: Measured, pessimistic: bool) -> Measured:
    """Two measurements of one candidate as one: the worse of each figure (pessimistic) or the better."""
    if a.error or b.error:
        return a if a.error else b
    worse, better = (min, max) if pessimistic else (max, min)
    points = {}
    for c in set(a.points) | set(b.points):
        x, y = a.at(c), b.at(c)
        if x is None or y is None:
            points[c] = x or y
            continue
        points[c] = replace(x, requests_per_s=worse(x.requests_per_s, y.requests_per_s),
                            p50_ms=better(x.p50_ms, y.p50_ms), p90_ms=better(x.p90_ms, y.p90_ms),
                            p99_ms=better(x.p99_ms, y.p99_ms), errors=(max if pessimistic else min)(x.errors, y.errors))
    return Measured(a.candidate, points)


def verdict(objective: Objective, margin: float, best: Measured, best_again: Measured,
            current: Measured, current_again: Measured) -> tuple[bool, str]:
    """Whether the best candidate replaces the current config after both were measured twice,
    and why. Noise must not churn configs: the candidate's worse figures are set against the
    current config's better ones."""
    candidate = _merge(best, best_again, pessimistic=True)
    reference = _merge(current, current_again, pessimistic=False)
    trouble = objective.problem(candidate)
    if trouble:
        return False, f"on repeated measurement the best candidate does not qualify: {trouble}"
    slow = slower_at_one(candidate, reference, margin)
    if slow:
        return False, f"on repeated measurement the best candidate is too slow for one connection: {slow}"
    if objective.problem(reference):
        return True, (f"the current config does not meet the objective ({objective.problem(reference)}); "
                      f"the chosen one does on repeated measurement ({objective.figure(candidate)})")
    gain = objective.gain(candidate, reference)
    if gain > margin:
        return True, f"{objective.say_gain(gain)} than the current config on repeated measurement (margin {100 * margin:.0f}%)"
    if gain < 0:
        return False, (f"on repeated measurement the best candidate loses: {objective.say_gain(gain)} than the current "
                       f"config ({objective.figure(candidate)} against {objective.figure(reference)})")
    return False, (f"on repeated measurement the best candidate gains only {objective.say_gain(gain)}, "
                   f"within the {100 * margin:.0f}% margin")
