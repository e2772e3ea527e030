"""tune-repo: candidates measured on the real server, the winner written as a variant and recorded,
and a second run within the margin changes nothing."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from test_build_hostile import tiny_onnx
from tritonforge.builder import build_repository
from tritonforge.repository import config as configs
from tritonforge.serving import serve
from tritonforge.tuning import TritonControl, TuneError, tune_model

TUNE_REPO = str(Path(sys.executable).parent / "tune-repo")


@pytest.fixture(scope="module")
def slow_config_repo(tmp_path_factory):
    """A model whose current config cannot keep a 10 ms p99: every request may wait 20 ms for a batch of 64."""
    models = tmp_path_factory.mktemp("tune_models")
    tiny_onnx(models / "relu.onnx")
    (models / "relu.yaml").write_text("dynamic_batching: {max_queue_delay_microseconds: 20000, preferred_batch_size: [64]}\n")
    repo = tmp_path_factory.mktemp("tune") / "repo"
    assert all(r.ok for r in build_repository(models, repo))
    return repo


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_tuning_writes_a_better_variant_that_loads_and_is_recorded(slow_config_repo):
    repo = slow_config_repo
    with serve(repo, control_mode="explicit", load_models=("relu",), recovery=False) as server:
        result = tune_model(repo, "relu", TritonControl(server.http_url), budget_s=30, latency_budget_ms=10)
        assert len([m for m in result.measured if not m.error]) >= 3
        assert result.changed and result.written == repo / "relu" / "configs" / "cpu.pbtxt"
        tuned = configs.read_variant(repo / "relu", "cpu")
        assert tuned.dynamic_batching.max_queue_delay_microseconds < 20000
        server.load("relu")  # the written variant loads (serve-repo serves configs/cpu.pbtxt)
        assert server.model_states()[("relu", "1")] == "READY"
    record = json.loads((repo / "manifest.json").read_text())["models"]["relu"]["variants"]["cpu"]
    assert record["by"] == "tune-repo" and record["throughput"] > record["baseline_throughput"]
    assert record["p99_ms"] <= 10 and record["candidate"] == result.winner.candidate.describe()
    assert configs.read(repo / "relu").dynamic_batching.max_queue_delay_microseconds == 20000  # config.pbtxt untouched


@pytest.mark.slow
def test_a_second_run_within_the_margin_changes_nothing(slow_config_repo):
    repo = slow_config_repo
    before = _digest(repo / "relu" / "configs" / "cpu.pbtxt"), _digest(repo / "manifest.json")
    done = subprocess.run([TUNE_REPO, str(repo), "--model", "relu", "--budget-s", "24", "--margin", "10", "--latency-budget-ms", "10",
                           "--html", str(repo.parent / "report.html")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "relu: kept the current config" in done.stdout
    assert (_digest(repo / "relu" / "configs" / "cpu.pbtxt"), _digest(repo / "manifest.json")) == before
    page = (repo.parent / "report.html").read_text()
    assert "<svg" in page and "Pareto" in page


def test_a_budget_too_small_to_measure_is_refused(slow_config_repo):
    with pytest.raises(TuneError, match="too small to measure three candidates"):
        tune_model(slow_config_repo, "relu", TritonControl("127.0.0.1:1"), budget_s=2)


def test_a_server_that_refuses_model_control_is_named(slow_config_repo):
    with pytest.raises(TuneError, match="cannot be measured|cannot reach"):
        tune_model(slow_config_repo, "relu", TritonControl("127.0.0.1:1"), budget_s=30)


@pytest.mark.slow
def test_an_ensemble_is_tuned_with_its_steps_and_each_member_gets_the_variant(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    tiny_onnx(models / "rows.onnx")
    (models / "rows.yaml").write_text("dynamic_batching: {max_queue_delay_microseconds: 20000, preferred_batch_size: [64]}\n"
                                      "preprocess: {step: tabular}\n")
    repo = tmp_path / "repo"
    assert all(r.ok for r in build_repository(models, repo))
    with serve(repo, control_mode="explicit", load_models=("rows", "rows_preprocess", "rows_ensemble"), recovery=False) as server:
        result = tune_model(repo, "rows_ensemble", TritonControl(server.http_url), budget_s=30, latency_budget_ms=10)
        assert len([m for m in result.measured if not m.error]) >= 3 and result.changed
        assert server.model_states()[("rows_ensemble", "1")] == "READY"
    variants = json.loads((repo / "manifest.json").read_text())["models"]
    for member in ("rows", "rows_preprocess"):
        assert configs.read_variant(repo / member, "cpu").dynamic_batching.max_queue_delay_microseconds < 20000
        assert variants[member]["variants"]["cpu"]["tuned_through"] == "rows_ensemble"
