"""tune-repo. The choice logic (objectives, the one-connection guard, repeated measurement, the
budget as a limit) runs over a fake measurer and a fake clock: what it decides never depends on
how much work this machine fits in a second. A few tests tune on the real server (one, shared):
the winner is written as a variant that loads, recorded with its curve, and a second run within
the margin changes nothing."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_build_hostile import tiny_onnx
from tritonforge.builder import build_repository
from tritonforge.loadtests.native import LoadResult
from tritonforge.repository import config as configs
from tritonforge.serving import serve
from tritonforge.tuning import Candidate, Measured, Objective, TritonControl, TuneError, search, tune_model
from tritonforge.tuning.cli import default_out, main as tune_main

TUNE_REPO = str(Path(sys.executable).parent / "tune-repo")
CURRENT = Candidate(max_batch_size=64, queue_delay_us=100, instances=1)


# --- the choice logic, over a fake measurer and a fake clock ------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def point(connections: int, rps: float, p99: float, errors: int = 0) -> LoadResult:
    return LoadResult("m", connections, 1.0, int(rps), rps, p99 / 3, p99 / 2, p99, errors, 0.05)


class FakeMeasurer:
    """Answers from ``curves(candidate, nth)`` -> {connections: (req/s, p99 ms)}, and moves the
    clock by ``durations`` (cycled) per measurement, as a real one would take time."""

    def __init__(self, curves, clock: Clock, durations=(5.0,), estimate_s: float = 5.0) -> None:
        self.curves, self.clock, self.durations, self.estimate_s = curves, clock, durations, estimate_s
        self.calls: list[Candidate] = []

    def __call__(self, candidate: Candidate) -> Measured:
        nth = sum(c == candidate for c in self.calls)
        self.clock.now += self.durations[len(self.calls) % len(self.durations)]
        self.calls.append(candidate)
        figures = self.curves(candidate, nth)
        return Measured(candidate, {c: point(c, rps, p99) for c, (rps, p99) in figures.items()}, load_seconds=0.5)


def by_delay(table: dict[int, dict[int, tuple[float, float]]], default=None):
    """Curves by queue delay (instances and the rest do not matter to this fake)."""
    fallback = default or {1: (1000, 2.0), 32: (5000, 20.0)}
    return lambda candidate, nth: table.get(candidate.queue_delay_us, fallback)


def run_search(curves, objective=Objective(concurrency=(1, 32), latency_budget_ms=50), budget_s=200.0, margin=0.10,
               durations=(5.0,), estimate_s=5.0):
    clock = Clock()
    measurer = FakeMeasurer(curves, clock, durations, estimate_s)
    found = search(CURRENT, measurer, objective, budget_s=budget_s, margin=margin, cores=2, clock=clock)
    return found, measurer, clock.now - 1000.0


def test_the_throughput_objective_takes_the_fastest_candidate_within_the_latency_budget_at_every_concurrency():
    found, _, _ = run_search(by_delay({
        100: {1: (1000, 2.0), 32: (5000, 20.0)},   # the current config
        500: {1: (1000, 2.0), 32: (9000, 40.0)},   # the fastest within 50 ms
        2000: {1: (1000, 2.0), 32: (12000, 80.0)},  # faster still, but p99 80 ms at 32 connections
    }))
    assert found.changed and found.winner.candidate.queue_delay_us == 500
    assert "80% more throughput" in found.why


def test_a_candidate_slower_at_one_connection_beyond_the_margin_is_not_taken():
    found, _, _ = run_search(by_delay({
        100: {1: (1000, 2.0), 32: (5000, 20.0)},
        0: {1: (1050, 1.9), 32: (7000, 15.0)},
        2000: {1: (330, 6.0), 32: (14000, 10.0)},  # the most throughput, a third of the speed for a lone request
    }))
    assert found.changed and found.winner.candidate.queue_delay_us == 0
    assert any(m.candidate.queue_delay_us == 2000 for m in found.measured)  # measured, and passed over


def test_when_only_a_candidate_slow_at_one_connection_gains_the_current_config_is_kept():
    found, _, _ = run_search(by_delay({
        100: {1: (1000, 2.0), 32: (5000, 20.0)},
        2000: {1: (330, 6.0), 32: (14000, 10.0)},
    }))
    assert not found.changed and found.winner is found.current
    assert found.why == ("the current config measured best of the candidates that qualify "
                         "(2 scored more but 2 of them answered one connection too slowly)")


def test_the_p99_objective_takes_the_lowest_p99_at_the_given_load():
    objective = Objective("p99", concurrency=(1, 8, 32), at=8)
    found, measurer, _ = run_search(by_delay({
        100: {1: (1000, 2.0), 8: (4000, 9.0), 32: (5000, 20.0)},
        0: {1: (1100, 1.8), 8: (4200, 4.0), 32: (4800, 30.0)},    # lowest p99 at 8
        500: {1: (1000, 2.0), 8: (4500, 6.0), 32: (9000, 12.0)},  # lowest at 32, not the load asked
    }, default={1: (1000, 2.0), 8: (4000, 9.5), 32: (5000, 20.0)}), objective=objective)
    assert found.changed and found.winner.candidate.queue_delay_us == 0
    assert "56% lower p99 at 8 connections" in found.why
    assert all(set(m.points) == {1, 8, 32} for m in found.measured)


@pytest.mark.parametrize("again, kept_because", [
    ((4000, 20.0), "loses: 20% less throughput than the current config"),   # the second look says it is slower
    ((5200, 20.0), "gains only 4% more throughput, within the 10% margin"),
])
def test_repeated_measurement_decides_and_names_a_loss_as_a_loss(again, kept_because):
    def curves(candidate, nth):
        if candidate.queue_delay_us == 500:
            return {1: (1000, 2.0), 32: (9000, 20.0) if nth == 0 else again}
        return {1: (1000, 2.0), 32: (5000, 20.0)}

    found, measurer, _ = run_search(curves)
    assert not found.changed and kept_because in found.why
    assert measurer.calls[-2].queue_delay_us == 500 and measurer.calls[-1] == CURRENT  # both measured again


def test_a_current_config_over_the_latency_budget_is_replaced_by_one_within_it():
    found, _, _ = run_search(by_delay({100: {1: (1000, 120.0), 32: (5000, 20.0)}}, default={1: (1000, 2.0), 32: (4000, 20.0)}))
    assert found.changed and "the current config does not meet the objective (p99 120.0 ms at 1 connection" in found.why


def test_a_current_config_over_the_budget_stays_when_every_candidate_within_it_is_slow_at_one_connection():
    found, _, _ = run_search(by_delay({100: {1: (1000, 2.0), 32: (5000, 60.0)}}, default={1: (300, 6.0), 32: (9000, 20.0)}))
    assert not found.changed
    assert re.search(r"^no candidate met the objective .* without answering one connection too slowly \(\d+ met it but did\); "
                     r"the current config: p99 60.0 ms at 32 connections", found.why), found.why


def test_nothing_within_the_budget_keeps_the_current_config_and_says_so():
    found, _, _ = run_search(lambda c, nth: {1: (1000, 90.0), 32: (5000, 200.0)})
    assert not found.changed and found.why.startswith("no candidate met the objective")


@pytest.mark.parametrize("budget_s, durations, all_measured", [
    (31.0, (5.0,), False),
    (50.0, (5.0,), False),
    (60.0, (5.0,), True),
    (50.0, (4.0, 6.0, 5.0), False),
    (45.0, (7.0, 3.0), False),
    (300.0, (5.0, 9.0, 6.0, 8.0), True),
])
def test_the_whole_search_and_its_final_check_stay_within_the_budget(budget_s, durations, all_measured):
    """A limit, not a target: however long each measurement takes, the search stops starting
    candidates in time for the final two measurements to fit (the clock is the tuner's own)."""
    def curves(candidate, nth):  # two instances gain 36%: something always beats the current config
        return {1: (1000, 2.0), 32: (5000 + 3000 * candidate.instances + candidate.queue_delay_us, 20.0)}

    found, measurer, spent = run_search(curves, budget_s=budget_s, durations=durations)
    assert spent <= budget_s * 1.1
    assert found.changed and measurer.calls[-1] == CURRENT  # the final check ran, inside the budget
    assert (found.skipped == 0) == all_measured


def test_a_budget_too_small_for_three_candidates_is_refused_before_measuring():
    with pytest.raises(TuneError, match="too small to measure three candidates"):
        run_search(lambda c, nth: {1: (1000, 2.0), 32: (5000, 20.0)}, budget_s=20.0, estimate_s=5.0)


@pytest.mark.parametrize("kwargs, message", [
    ({"concurrency": (0, 8)}, "give connection counts from 1 to 1024"),
    ({"kind": "p99", "concurrency": (1, 8), "at": 16}, "--at 16: not one of --concurrency 1,8"),
    ({"kind": "fastest"}, "objective 'fastest': choose throughput or p99"),
    ({"latency_budget_ms": 0}, "--latency-budget-ms 0: give more than 0"),
])
def test_a_bad_objective_is_one_line(kwargs, message):
    with pytest.raises(TuneError, match=message.replace("(", r"\(")):
        Objective(**kwargs)


def test_one_connection_is_always_measured_for_the_guard():
    assert Objective(concurrency=(32, 8)).measured_at == (1, 8, 32)


def test_the_default_report_folder_is_beside_the_repository(tmp_path):
    assert default_out(tmp_path / "model_repository") == tmp_path / "model_repository-tune"


# --- on the real server (one, shared by these tests) ---------------------------------------------

# Every request may wait half a second for a batch of 64: no p99 within 250 ms at one connection, while any
# candidate (delays of 2 ms at most) keeps it far below that even on a loaded 2-core machine.
SLOW = "dynamic_batching: {max_queue_delay_microseconds: 500000, preferred_batch_size: [64]}\n"


@pytest.fixture(scope="module")
def tuned_server(tmp_path_factory):
    """relu, and rows behind a tabular step, whose current config cannot keep a 250 ms p99 at one
    connection (SLOW). One server for the module."""
    models = tmp_path_factory.mktemp("tune_models")
    tiny_onnx(models / "relu.onnx")
    (models / "relu.yaml").write_text(SLOW)
    tiny_onnx(models / "rows.onnx")
    (models / "rows.yaml").write_text(SLOW + "preprocess: {step: tabular}\n")
    repo = tmp_path_factory.mktemp("tune") / "repo"
    assert all(r.ok for r in build_repository(models, repo))
    with serve(repo, control_mode="explicit", load_models=("relu", "rows", "rows_preprocess", "rows_ensemble"),
               recovery=False) as server:
        yield server, repo


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


OBJECTIVE = Objective(concurrency=(1, 8), latency_budget_ms=250)


@pytest.mark.slow
def test_tuning_writes_a_better_variant_that_loads_and_is_recorded_with_its_curve(tuned_server):
    server, repo = tuned_server
    result = tune_model(repo, "relu", TritonControl(server.http_url), objective=OBJECTIVE, budget_s=30)
    assert result.changed and result.written == repo / "relu" / "configs" / "cpu.pbtxt", result.why
    tuned = configs.read_variant(repo / "relu", "cpu")
    assert tuned.dynamic_batching.max_queue_delay_microseconds < 500000
    server.load("relu")  # the written variant loads (serve-repo serves configs/cpu.pbtxt)
    assert server.model_states()[("relu", "1")] == "READY"
    record = json.loads((repo / "manifest.json").read_text())["models"]["relu"]["variants"]["cpu"]
    assert record["by"] == "tune-repo" and record["candidate"] == result.winner.candidate.describe()
    assert set(record["curve"]) == {"1", "8"} and all(p["p99_ms"] <= 250 for p in record["curve"].values())
    assert record["baseline_curve"]["1"]["p99_ms"] > 250  # the current config waited for its batch
    assert configs.read(repo / "relu").dynamic_batching.max_queue_delay_microseconds == 500000  # config.pbtxt untouched


@pytest.mark.slow
def test_a_second_run_within_the_margin_changes_nothing_and_reports_beside_the_repository(tuned_server, tmp_path):
    server, repo = tuned_server
    before = _digest(repo / "relu" / "configs" / "cpu.pbtxt"), _digest(repo / "manifest.json")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([TUNE_REPO, str(repo), "--model", "relu", "--budget-s", "30", "--margin", "10",
                           "--concurrency", "1,8", "--latency-budget-ms", "250", "--url", server.http_url], cwd=elsewhere,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "relu: kept the current config" in done.stdout and "req/s @8" in done.stdout
    assert (_digest(repo / "relu" / "configs" / "cpu.pbtxt"), _digest(repo / "manifest.json")) == before
    assert list(elsewhere.iterdir()) == []  # nothing in the current folder
    page = (default_out(repo) / "tune-report.html").read_text()
    assert page.count("<svg") == 2 and "p99 latency by connections" in page and "latency budget 250 ms" in page
    figures = json.loads((default_out(repo) / "tune-report.json").read_text())[0]
    assert figures["model"] == "relu" and not figures["changed"] and figures["candidates"][0]["mark"] == "current"


@pytest.mark.slow
def test_an_ensemble_is_tuned_with_its_steps_and_each_member_gets_the_variant(tuned_server):
    server, repo = tuned_server
    result = tune_model(repo, "rows_ensemble", TritonControl(server.http_url), objective=OBJECTIVE, budget_s=30)
    assert result.changed, result.why
    assert server.model_states()[("rows_ensemble", "1")] == "READY"
    variants = json.loads((repo / "manifest.json").read_text())["models"]
    for member in ("rows", "rows_preprocess"):
        assert configs.read_variant(repo / member, "cpu").dynamic_batching.max_queue_delay_microseconds < 500000
        assert variants[member]["variants"]["cpu"]["tuned_through"] == "rows_ensemble"


def test_a_budget_too_small_to_measure_is_refused(tuned_server):
    _, repo = tuned_server
    with pytest.raises(TuneError, match="too small to measure three candidates"):
        tune_model(repo, "relu", TritonControl("127.0.0.1:1"), budget_s=2)


def test_a_server_that_refuses_model_control_is_named(tuned_server):
    _, repo = tuned_server
    with pytest.raises(TuneError, match="cannot be measured|cannot reach"):
        tune_model(repo, "relu", TritonControl("127.0.0.1:1"), budget_s=30)


@pytest.mark.parametrize("argv, message", [
    (["--concurrency", "1,x"], "give connection counts separated by commas"),
    (["--objective", "p99", "--concurrency", "1,8", "--at", "4"], "--at 4: not one of --concurrency 1,8"),
])
def test_bad_tuning_options_are_one_line(tuned_server, capsys, argv, message):
    _, repo = tuned_server
    try:
        code = tune_main([str(repo), "--url", "127.0.0.1:1", *argv])
    except SystemExit as exc:  # argparse's own refusal
        code = exc.code
    assert code == 2 and message in capsys.readouterr().err
