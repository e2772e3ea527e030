"""Reduced precision: <name>_int8 and <name>_fp16 entries beside the FP32 one, each judged by its gate."""
from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tritonforge.builder import BuildOptions, build_repository
from tritonforge.repository import config as configs
from tritonforge.repository import latest_samples, read_samples
from tritonforge.serving import serve
from tritonforge.serving.check import check_repository

# An x86-64 CPU with AVX2 and no AVX-512/VNNI, where ONNX Runtime's u8s8 kernels use VPMADDUBSW,
# whose int16 pair sums saturate with full-range int8 weights. qemu-user emulates it on any x86-64 host.
NO_VNNI_CPU = "Haswell-v4"
RUN_ARTIFACT = """
import sys, numpy as np, onnxruntime as ort
model, rows, out = sys.argv[1:]
with np.load(rows) as data:
    feeds = {k: data[k] for k in data.files}
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
np.savez(out, *session.run(None, feeds))
"""

REDUCED = ["digits_cnn_int8", "digits_cnn_fp16", "price_two_inputs_int8", "price_two_inputs_fp16"]


@pytest.fixture(scope="module")
def precision_build(example_models, tmp_path_factory):
    models = tmp_path_factory.mktemp("precision_models")
    shutil.copy(example_models / "digits_cnn.keras", models / "digits_cnn.keras")  # a CNN: static QDQ
    (models / "digits_cnn.yaml").write_text("labels: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\nprecision: [int8, fp16]\n")
    shutil.copy(example_models / "price_two_inputs.h5", models / "price_two_inputs.h5")  # an MLP: dynamic
    (models / "price_two_inputs.yaml").write_text("precision: [int8, fp16]\n")
    # Constant calibration rows: every activation range collapses, and the gate must say so.
    shutil.copy(example_models / "digits_cnn.keras", models / "digits_badcal.keras")
    np.savez(models / "constant_rows.npz", input=np.zeros((32, 28, 28, 1), np.float32))
    (models / "digits_badcal.yaml").write_text("labels: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\nprecision: int8\ncalibration: constant_rows.npz\n")
    shutil.copy(example_models / "iris_xgb.json", models / "iris_xgb.json")
    (models / "iris_xgb.yaml").write_text("precision: int8\n")
    repo = tmp_path_factory.mktemp("precision") / "repo"
    results = {r.name: r for r in build_repository(models, repo, BuildOptions())}
    return repo, results


@pytest.mark.parametrize("name", REDUCED)
def test_reduced_entries_pass_their_gates_beside_the_fp32_entry(precision_build, name):
    repo, results = precision_build
    assert results[name].status == "OK", results[name].reason
    assert results[name.rsplit("_", 1)[0]].status == "OK"
    config = configs.read(repo / name)
    assert config.name == name and config.platform == "onnxruntime_onnx"
    assert configs.read_variant(repo / name, "cpu") is not None
    record = json.loads((repo / "manifest.json").read_text())["models"][name]
    latest = record["versions"][str(record["latest_version"])]
    assert record["precision"] == name.rsplit("_", 1)[1] and record["of"] == name.rsplit("_", 1)[0]
    assert latest["agreement"] >= latest["gate"]["min_agreement"] and latest["error"] <= latest["gate"]["max_error"]
    assert latest["speed_ratio_vs_fp32"] > 0 and latest["method"]
    assert read_samples(latest_samples(repo / name)).gate["precision"] == record["precision"]


def test_int8_uses_static_calibration_for_a_cnn_and_dynamic_for_an_mlp(precision_build):
    repo, _ = precision_build
    models = json.loads((repo / "manifest.json").read_text())["models"]
    cnn, mlp = models["digits_cnn_int8"]["versions"]["1"], models["price_two_inputs_int8"]["versions"]["1"]
    assert cnn["method"].startswith("static QDQ") and "generated rows" in cnn["calibration"]
    assert mlp["method"].startswith("dynamic") and mlp["calibration"] is None


def test_a_bad_calibration_fails_the_gate_with_the_figures_and_spares_fp32(precision_build):
    _, results = precision_build
    failed = results["digits_badcal_int8"]
    assert failed.status == "FAILED"
    assert "int8 fails its gate: label agreement" in failed.reason and "the FP32 entry is unaffected" in failed.reason
    assert results["digits_badcal"].status == "OK"


def test_a_tree_asked_for_int8_is_refused_in_one_line(precision_build):
    _, results = precision_build
    refused = results["iris_xgb_int8"]
    assert refused.status == "FAILED" and "\n" not in refused.reason
    assert refused.reason.startswith("iris_xgb.json: int8 does not apply to trees and linear models")
    assert results["iris_xgb"].status == "OK"


@pytest.mark.slow
def test_reduced_entries_are_served_with_answers_within_their_gates(precision_build):
    repo, _ = precision_build
    with serve(repo, control_mode="none") as server:
        rows = check_repository(repo, http_url=server.http_url, grpc_url=server.grpc_url, models=REDUCED,
                                protocols=("grpc",), config_name=server.config_name)
    assert [r.model for r in rows] == REDUCED
    assert all(r.ok and r.checked and " gate: " in r.samples for r in rows), [r.samples for r in rows]


def test_replace_makes_the_reduced_artifact_the_fp32_entrys_next_version(example_models, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(example_models / "price_two_inputs.h5", models / "price.h5")
    (models / "price.yaml").write_text("precision: int8\nreplace: true\n")
    repo = tmp_path / "repo"
    results = build_repository(models, repo)
    assert [(r.name, r.format, r.version, r.status) for r in results] == [("price", "onnx", 1, "OK"), ("price", "onnx-int8", 2, "OK")]
    entry = json.loads((repo / "manifest.json").read_text())["models"]["price"]
    assert entry["latest_version"] == 2 and entry["precision"] == "int8" and entry["versions"]["2"]["agreement"] == 1.0
    assert read_samples(repo / "price" / "2" / "samples.npz").gate["precision"] == "int8"
    assert read_samples(repo / "price" / "1" / "samples.npz").gate is None
    assert [r.status for r in build_repository(models, repo)] == ["UNCHANGED"]  # a rebuild changes nothing


def test_replace_needs_exactly_one_precision(example_models, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(example_models / "price_two_inputs.h5", models / "price.h5")
    (models / "price.yaml").write_text("precision: [int8, fp16]\nreplace: true\n")
    [result] = build_repository(models, tmp_path / "repo")
    assert result.status == "FAILED" and "'replace: true' needs exactly one reduced 'precision'" in result.reason


@pytest.mark.slow
@pytest.mark.skipif(platform.machine() != "x86_64", reason="emulates an x86-64 CPU without VNNI")
@pytest.mark.parametrize("name", ["digits_cnn_int8", "price_two_inputs_int8"])
def test_an_int8_artifact_answers_alike_on_a_cpu_without_vnni(precision_build, name, tmp_path):
    repo, _ = precision_build
    rows = tmp_path / "rows.npz"
    np.savez(rows, **read_samples(latest_samples(repo / name)).inputs)
    model = next((repo / name).glob("*/model.onnx"))
    answers = {}
    for cpu, prefix in (("host", []), (NO_VNNI_CPU, ["qemu-x86_64", "-cpu", NO_VNNI_CPU])):
        out = tmp_path / f"{cpu}.npz"
        subprocess.run([*prefix, sys.executable, "-c", RUN_ARTIFACT, str(model), str(rows), str(out)],
                       check=True, capture_output=True, timeout=600)
        with np.load(out) as data:
            answers[cpu] = [data[k] for k in sorted(data.files)]
    for host, emulated in zip(answers["host"], answers[NO_VNNI_CPU]):
        spread = float(host.max() - host.min()) or 1.0
        assert float(np.abs(host - emulated).max()) <= 0.01 * spread  # saturation was 0.22 of the spread


def test_a_rebuild_remakes_reduced_entries_an_earlier_recipe_built(example_models, tmp_path, monkeypatch):
    from dataclasses import replace

    from tritonforge.converters import precision

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(example_models / "price_two_inputs.h5", models / "price.h5")
    (models / "price.yaml").write_text("precision: int8\n")
    repo = tmp_path / "repo"
    assert [r.status for r in build_repository(models, repo)] == ["OK", "OK"]
    monkeypatch.setitem(precision.PRECISIONS, "int8", replace(precision.PRECISIONS["int8"], recipe=99))
    rebuilt = build_repository(models, repo)
    assert [(r.name, r.status) for r in rebuilt] == [("price", "OK"), ("price_int8", "OK")]
