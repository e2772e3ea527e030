"""Headless Locust runs (triton-load) against the served examples: an ONNX model and each ensemble.

Each run is a real Locust process bounded by its duration (a few seconds, never over 20).
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

import fixtures_build
from fixtures_clients import ensembles_in
from tritonforge.loadtests.run import LoadOptions, locust_command, read_summary, run_load, summary_line

PROTOCOLS = ("http", "grpc")
SECONDS = 6
EXAMPLE_ENSEMBLES = getattr(fixtures_build, "EXAMPLE_ENSEMBLES", ())


def _options(server, repo, model, protocol, out, **extra) -> LoadOptions:
    host = f"http://{server.http_url}" if protocol == "http" else server.grpc_url
    return LoadOptions(model=model, protocol=protocol, users=4, duration=SECONDS, host=host,
                       repo=repo, out=out, **extra)


def _assert_clean_run_with_reports(options: LoadOptions, summary) -> None:
    assert summary.requests > 0
    assert summary.failures == 0, summary.failure_messages
    assert summary.exceptions == []
    out = Path(options.out)
    # The reports are on disk and say the same as the summary returned.
    written = json.loads((out / "summary.json").read_text())
    assert written == summary.to_json() == read_summary(options).to_json()
    with open(out / "locust_stats.csv", newline="") as f:
        names = {row["Name"] for row in csv.DictReader(f)}
    assert any(options.model in name for name in names)
    assert options.model in (out / "report.html").read_text()
    assert 0 < summary.p50_ms <= summary.p95_ms <= summary.p99_ms


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_onnx_model_takes_load_with_no_failures_and_reports(served_examples, tmp_path, protocol):
    server, repo = served_examples
    options = _options(server, repo, "churn_pipeline", protocol, tmp_path / "report")
    _assert_clean_run_with_reports(options, run_load(options))


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("ensemble", EXAMPLE_ENSEMBLES or [None])
def test_ensemble_takes_load_with_no_failures_and_reports(served_examples, tmp_path, ensemble, protocol):
    server, repo = served_examples
    found = ensembles_in(repo)
    if ensemble is None or ensemble not in found:
        pytest.skip(f"no ensemble {ensemble or ''} in the built repository (found: {found or 'none'})")
    options = _options(server, repo, ensemble, protocol, tmp_path / "report")
    _assert_clean_run_with_reports(options, run_load(options))


def test_http_user_sends_json_tensor_data_when_asked(served_examples, tmp_path):
    server, repo = served_examples
    options = _options(server, repo, "iris_xgb", "http", tmp_path / "report", json_data=True)
    summary = run_load(options)
    assert summary.failures == 0 and summary.requests > 0
    with open(Path(options.out) / "locust_stats.csv", newline="") as f:
        assert "iris_xgb http json" in {row["Name"] for row in csv.DictReader(f)}


def test_payload_made_from_metadata_alone_is_accepted(served_examples, tmp_path):
    server, _ = served_examples
    options = _options(server, None, "torch_cnn", "grpc", tmp_path / "report", payload="metadata")
    summary = run_load(options)
    assert summary.failures == 0 and summary.requests > 0


def test_step_shape_adds_users_in_steps_up_to_the_ceiling(served_examples, tmp_path):
    server, repo = served_examples
    options = LoadOptions(model="iris_xgb", protocol="http", users=6, duration=8, host=f"http://{server.http_url}",
                          repo=repo, out=tmp_path / "report", step_users=2, step_seconds=2)
    summary = run_load(options)
    assert summary.failures == 0
    with open(Path(options.out) / "locust_stats_history.csv", newline="") as f:
        users = [int(row["User Count"]) for row in csv.DictReader(f) if row["Name"] == "Aggregated"]
    seen = sorted(set(users) - {0})
    assert seen[0] == 2 and seen[-1] == 6 and len(seen) >= 2, users


def test_unknown_model_makes_the_command_fail_with_the_servers_message(served_examples, tmp_path):
    server, _ = served_examples
    script = Path(sys.executable).with_name("triton-load")
    done = subprocess.run([str(script), "no_such_model", "--host", f"http://{server.http_url}", "-u", "1",
                           "-t", "2", "--out", str(tmp_path / "report")],
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 1
    assert "Request for unknown model: 'no_such_model' is not found" in done.stdout
    assert "1 users, 2 s of load:" in done.stdout  # the printed duration is the summary's
    assert (tmp_path / "report" / "summary.json").is_file()


STATS_HEADER = "Type,Name,Request Count,Failure Count,Requests/s,50%,95%,99%,Average Response Time,Max Response Time"


@pytest.mark.parametrize("duration, seconds", [(6, 6), (2.4, 2), (0.2, 1)])
def test_the_printed_duration_is_the_summary_s_and_the_one_locust_ran(tmp_path, duration, seconds):
    """Locust runs whole seconds: the summary says what it ran, and the printed line says the same
    (not the wall time around it, start-up included: once "10s" for a 6 s run)."""
    options = LoadOptions(model="iris_xgb", duration=duration, out=tmp_path)
    command = locust_command(options)
    assert command[command.index("-t") + 1] == f"{seconds}s"
    (tmp_path / "locust_stats.csv").write_text(STATS_HEADER + "\n,Aggregated,120,0,20.0,4,9,12,5.1,30\n")
    summary = read_summary(options)
    assert summary.duration_s == seconds
    assert summary_line(summary).startswith(f"iris_xgb over http, 8 users, {seconds} s of load: 120 requests, 0 failures")
