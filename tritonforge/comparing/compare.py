"""The comparison: every entry asked the same rows, scored, measured, and judged against thresholds.

    with TritonClient("127.0.0.1:8000") as client, read_data(Path("rows.csv"), "diagnosis") as data:
        result = compare_models(client, [Entry("cancer_xgb"), Entry("cancer_keras")], data, http_url="127.0.0.1:8000",
                                grpc_url="127.0.0.1:8001", options=CompareOptions(thresholds=Thresholds(max_disagreement=0.02)))
    result.passed, result.verdicts[0].reasons

The first entry is the baseline; every later one is a candidate judged against it:
- disagreement: the share of rows answered differently (``--max-disagreement``);
- speedup: the candidate's throughput over the baseline's, at the same concurrency, over every
  protocol measured (``--min-speedup``);
- quality drop: accuracy points lost (classifiers), or the relative growth of the MAE (regressors),
  against the target (``--max-quality-drop``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable

from tritonforge.clients import TritonClient
from tritonforge.loadtests.native import LoadResult

from .answers import CLASSIFIER, Answers, CompareError, Entry, ask, check_served
from .cost import GENERATORS, measure
from .metrics import Agreement, Quality, agreement, quality
from .rows import DataSet


@dataclass(frozen=True)
class Thresholds:
    """What a candidate must meet; None: not judged."""

    max_disagreement: float | None = None
    min_speedup: float | None = None
    max_quality_drop: float | None = None

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.max_disagreement, self.min_speedup, self.max_quality_drop))


@dataclass(frozen=True)
class CompareOptions:
    concurrency: int = 8
    duration_s: float = 3.0
    rows_per_request: int = 1
    measure_cost: bool = True
    thresholds: Thresholds = field(default_factory=Thresholds)
    cost_protocols: tuple[str, ...] = ("http", "grpc")  # each measured where its address is known


@dataclass(frozen=True)
class ModelReport:
    """One entry: what it takes, what it answered, how good and how costly."""

    entry: Entry
    signature: str
    answers: Answers
    quality: Quality | None
    costs: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))  # protocol -> LoadResult

    @property
    def cost(self) -> LoadResult | None:
        """The first cost measured (HTTP when it was)."""
        return next(iter(self.costs.values()), None)


@dataclass(frozen=True)
class Verdict:
    candidate: str
    passed: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Comparison:
    source: str
    rows: int
    target: str | None
    protocol: str
    url: str
    models: tuple[ModelReport, ...]
    agreements: tuple[Agreement, ...]  # one per candidate, against the baseline
    verdicts: tuple[Verdict, ...]
    concurrency: int
    duration_s: float
    judged: bool  # thresholds were given
    cost_protocols: tuple[str, ...] = ()  # those measured, in order

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)

    @property
    def baseline(self) -> ModelReport:
        return self.models[0]


def compare_models(client: TritonClient, entries: list[Entry], data: DataSet, *, where: str,
                   http_url: str | None, grpc_url: str | None = None, options: CompareOptions = CompareOptions(),
                   progress: Callable[[str], None] | None = None) -> Comparison:
    """Ask every entry about ``data``'s rows over ``client``, measure each over every protocol of
    ``options.cost_protocols`` whose address is given (wrk on ``http_url``, h2load on ``grpc_url``), judge."""
    if len(entries) < 2:
        raise CompareError("give at least two models: the baseline first, then the candidates")
    say = progress or (lambda text: None)
    addresses = {"http": http_url, "grpc": grpc_url}
    protocols = cost_protocols(entries, options, addresses, say) if options.measure_cost else ()
    if options.thresholds.min_speedup is not None and not protocols:
        raise CompareError("--min-speedup needs the cost measured: give the server's HTTP address (--load-url) "
                           "or its gRPC address (--grpc-load-url)")
    if options.thresholds.max_quality_drop is not None and data.target is None:
        raise CompareError("--max-quality-drop needs --target COLUMN")
    specs = [check_served(client, entry, where) for entry in entries]
    reports = []
    for entry, spec in zip(entries, specs):
        answers = ask(client, entry, data, progress=say)
        scored = quality(answers, data.target, str(data.source)) if data.target is not None else None
        reports.append(ModelReport(entry, spec.describe(), answers, scored))
    for protocol in protocols:
        for i, (entry, spec) in enumerate(zip(entries, specs)):
            say(f"{entry.label}: measuring over {protocol} with {GENERATORS[protocol]}, {options.concurrency} concurrent "
                f"requests for {options.duration_s:g} s")
            cost = measure(addresses[protocol], entry, spec, data.inputs_for(spec), protocol=protocol,
                           concurrency=options.concurrency, seconds=options.duration_s,
                           rows_per_request=options.rows_per_request)
            failed = f", {cost.errors} failed requests (see the server's log)" if cost.errors else ""
            say(f"{entry.label}: {cost.requests_per_s:,.0f} req/s over {protocol}, p99 {cost.p99_ms:.1f} ms{failed}")
            report = reports[i]
            reports[i] = ModelReport(entry, report.signature, report.answers, report.quality,
                                     MappingProxyType({**report.costs, protocol: cost}))
    agreements = tuple(agreement(reports[0].answers, r.answers, data.target) for r in reports[1:])
    verdicts = tuple(judge(reports[0], r, a, options.thresholds) for r, a in zip(reports[1:], agreements))
    return Comparison(str(data.source), data.rows, data.target_name, client.protocol, client.url, tuple(reports),
                      agreements, verdicts, options.concurrency, options.duration_s, options.thresholds.any, tuple(protocols))


def cost_protocols(entries: list[Entry], options: CompareOptions, addresses: dict[str, str | None],
                   say: Callable[[str], None]) -> tuple[str, ...]:
    """The protocols the cost is measured over: those asked whose address is known (a missing one
    is said, not guessed); gRPC not for entries with a version, which h2load's request cannot name."""
    chosen = []
    for protocol in options.cost_protocols:
        if protocol not in GENERATORS:
            raise CompareError(f"cost over '{protocol}': choose {' or '.join(GENERATORS)}")
        if not addresses.get(protocol):
            flag = "--load-url" if protocol == "http" else "--grpc-load-url"
            say(f"cost over {protocol} not measured: give {flag} HOST:PORT (the server's {protocol.upper() if protocol == 'http' else 'gRPC'} address)")
            continue
        versioned = [e.label for e in entries if e.version]
        if protocol == "grpc" and versioned:
            say(f"cost over grpc not measured: {', '.join(versioned)} name a version, which the gRPC load generator "
                "cannot send (measured over http only)")
            continue
        chosen.append(protocol)
    return tuple(chosen)


def quality_drop(baseline: ModelReport, candidate: ModelReport) -> float | None:
    """Accuracy points lost (classifiers) or the relative growth of the MAE (regressors); None without a target."""
    if baseline.quality is None or candidate.quality is None:
        return None
    if baseline.answers.kind == CLASSIFIER:
        return baseline.quality.accuracy - candidate.quality.accuracy
    if not baseline.quality.mae:
        return 0.0 if not candidate.quality.mae else float("inf")
    return candidate.quality.mae / baseline.quality.mae - 1


def speedup(baseline: ModelReport, candidate: ModelReport, protocol: str | None = None) -> float | None:
    """The candidate's requests/s over the baseline's over ``protocol`` (default: the first measured)."""
    protocol = protocol or next(iter(baseline.costs), None)
    mine, theirs = candidate.costs.get(protocol), baseline.costs.get(protocol)
    if mine is None or theirs is None or not theirs.requests_per_s:
        return None
    return mine.requests_per_s / theirs.requests_per_s


def judge(baseline: ModelReport, candidate: ModelReport, agreed: Agreement, thresholds: Thresholds) -> Verdict:
    """PASS or FAIL for one candidate, each threshold's figure in its reasons."""
    reasons, passed = [], True
    if thresholds.max_disagreement is not None:
        ok = agreed.disagreement <= thresholds.max_disagreement
        passed &= ok
        reasons.append(f"disagreement {100 * agreed.disagreement:.1f}% {'<=' if ok else '>'} "
                       f"{100 * thresholds.max_disagreement:g}%")
    if thresholds.min_speedup is not None:
        for protocol in baseline.costs or (None,):
            ratio = speedup(baseline, candidate, protocol)
            ok = ratio is not None and ratio >= thresholds.min_speedup
            passed &= ok
            shown = "not measured" if ratio is None else f"{ratio:.2f}x"
            over = f" over {protocol}" if protocol and len(baseline.costs) > 1 else ""
            reasons.append(f"speedup{over} {shown} {'>=' if ok else '<'} {thresholds.min_speedup:g}x")
    if thresholds.max_quality_drop is not None:
        drop = quality_drop(baseline, candidate)
        ok = drop is not None and drop <= thresholds.max_quality_drop
        passed &= ok
        what = "accuracy drop" if baseline.answers.kind == CLASSIFIER else "MAE growth"
        reasons.append(f"{what} {drop:+.3f} {'<=' if ok else '>'} {thresholds.max_quality_drop:g}")
    return Verdict(candidate.entry.label, passed, tuple(reasons))
