"""check-repo: served configs equal the files, stored samples give the source outputs, per protocol."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from fixtures_build import EXAMPLE_ENSEMBLES, EXAMPLE_MODELS, EXAMPLE_STEPS
from fixtures_serving import linear_samples, make_config, write_model
from tritonforge.serving.check import check_repository, compare_classes, format_table

CHECK_REPO = str(Path(sys.executable).parent / "check-repo")
TINY_MODELS = ("onnx_linear", "onnx_strings", "torch_linear", "tf_linear")


def _run(*args, timeout=900):
    return subprocess.run([CHECK_REPO, *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_built_examples_pass_over_http_and_grpc_on_a_server_check_repo_starts(built_examples_repo):
    result = _run(built_examples_repo)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines()[1:] if line and not line.startswith("check-repo")]
    assert lines and all(line.split()[3] in ("ok", "config-only") for line in lines), result.stdout
    # Every model and ensemble with stored samples answered them, over both protocols.
    sampled = {(line.split()[0], line.split()[2]) for line in lines if line.split()[3] == "ok"}
    assert sampled == {(m, p) for m in EXAMPLE_MODELS + EXAMPLE_ENSEMBLES for p in ("http", "grpc")}
    assert all(" rows, " in line for line in lines if line.split()[3] == "ok")
    # Classifying ensembles were asked for labels with scores too, as clients ask for them.
    assert all("labels with scores of " in line for line in lines if line.split()[0] in ("churn_pipeline_ensemble", "digits_cnn_ensemble"))
    # Steps have no samples of their own: shown as config only, checked through their ensemble, not counted.
    config_only = [line for line in lines if line.split()[3] == "config-only"]
    assert {line.split()[0] for line in config_only} == set(EXAMPLE_STEPS)
    assert all("answers checked through " in line and "_ensemble" in line for line in config_only)
    assert f"{len(sampled)}/{len(sampled)} checks passed; {len(config_only)} config only" in result.stdout
    # Serving the steps left nothing behind (no bytecode cache): the repository is still exactly as
    # built, so serve-repo, which refuses files the manifest never recorded, serves it next.
    hashes = _run("--hashes-only", built_examples_repo)
    assert hashes.returncode == 0, hashes.stdout + hashes.stderr


def test_every_backend_passes_against_a_running_server(tiny_server, tiny_repo):
    args = [tiny_repo, "--url", tiny_server.http_url, "--grpc-url", tiny_server.grpc_url]
    for model in TINY_MODELS:
        args += ["--model", model]
    result = _run(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8/8 checks passed" in result.stdout
    assert "equal (KIND_GPU served as KIND_CPU)" in result.stdout  # onnx_linear's file says KIND_GPU


def test_outputs_outside_the_tolerance_fail_the_check(tiny_server, tiny_repo):
    x, y = linear_samples()
    wrong = y.copy()
    wrong[0, 0] += 0.01
    config = make_config("tampered", "onnxruntime_onnx", [("input", "TYPE_FP32", [4])], [("output", "TYPE_FP32", [3])])
    write_model(tiny_repo, config, tiny_repo / "onnx_victim" / "1" / "model.onnx", "model.onnx",
                samples={"input/input": x, "output/output": wrong, "atol": np.float64(1e-3), "rtol": np.float64(0)})
    tiny_server.load("tampered")
    rows = check_repository(tiny_repo, http_url=tiny_server.http_url, grpc_url=tiny_server.grpc_url, models=["tampered"])
    assert [(r.protocol, r.ok) for r in rows] == [("http", False), ("grpc", False)]
    assert all("output 'output': 1 values outside atol 0.001 rtol 0" in r.samples for r in rows)
    result = _run(tiny_repo, "--url", tiny_server.http_url, "--grpc-url", tiny_server.grpc_url, "--model", "tampered")
    assert result.returncode == 1
    assert "FAIL" in result.stdout and "0/2 checks passed" in result.stdout


def test_a_server_config_that_differs_from_the_file_fails_the_check(tiny_server, tiny_repo):
    x, y = linear_samples()
    config = make_config("drifted", "onnxruntime_onnx", [("input", "TYPE_FP32", [4])], [("output", "TYPE_FP32", [3])])
    folder = write_model(tiny_repo, config, tiny_repo / "onnx_victim" / "1" / "model.onnx", "model.onnx",
                         samples={"input/input": x, "output/output": y, "atol": np.float64(1e-5), "rtol": np.float64(1e-4)})
    tiny_server.load("drifted")
    config.max_batch_size = 4  # the file changes after the server loaded it
    (folder / "config.pbtxt").write_text(text_format.MessageToString(config))
    rows = check_repository(tiny_repo, http_url=tiny_server.http_url, grpc_url=tiny_server.grpc_url, models=["drifted"])
    assert [r.ok for r in rows] == [False, False]
    assert all(r.config == "differs: max_batch_size: file 4, server 8" for r in rows), format_table(rows)


def test_an_unreachable_server_is_one_line_and_exit_status_2(tiny_repo):
    result = _run(tiny_repo, "--url", "127.0.0.1:9", "--protocol", "http", "--model", "onnx_linear", timeout=120)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("check-repo: ")
    assert "Traceback" not in result.stderr


EXPECTED_SCORES = np.array([[0.2, 0.7, 0.1]])
LABELS = ["cat", "dog", "eel"]


@pytest.mark.parametrize("served, problem", [
    (["0.7:1:dog", "0.2:0:cat", "0.1:2:eel"], ""),
    (["0.7:1:cat", "0.2:0:dog", "0.1:2:eel"], "row 0: class 1 named 'cat', the labels file says 'dog'"),
    (["0.7:1", "0.2:0:cat", "0.1:2:eel"], "row 0: class 1 named '', the labels file says 'dog'"),
    (["0.6:1:dog", "0.2:0:cat", "0.1:2:eel"], "row 0: score 0.6 for 'dog', expected 0.7"),
    (["0.2:0:cat", "0.7:1:dog", "0.1:2:eel"], "row 0: classes not best first ('dog' after a lower score)"),
], ids=["agrees", "labels swapped", "no label", "score off", "not best first"])
def test_labels_with_scores_must_name_each_class_with_its_stored_score_best_first(served, problem):
    answer = np.array([[v.encode() for v in served]], dtype=object)
    assert compare_classes(answer, EXPECTED_SCORES, LABELS, atol=1e-5, rtol=1e-4) == problem
