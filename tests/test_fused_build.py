"""The fused-entry framework (ensembles/fused, the build's fuse_pipelines stage): asked for by the
sidecar's ``fuse:`` or ``--fuse``, a planned ensemble that its fuser can make one ONNX graph gets
``<ensemble>_fused``, verified against the Python-step ensemble and loaded by Triton; one that
cannot is a SKIPPED line with the reason; without either, the build writes what it always did.

The fusers here are real ones of a pipeline the library has no fuser for (a classify-only
ensemble, whose fused graph is the model itself): they exercise the framework alone."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import helper

from fixtures_serving import onnx_linear
from tritonforge.builder import BuildOptions, build_repository
from tritonforge.builder.cli import main as build_main
from tritonforge.ensembles import fused
from tritonforge.repository import read_samples

CLASSIFY = "labels: [a, b, c]\npostprocess: {step: classify, softmax: false}\n"


class ModelAsIs(fused.Fuser):
    """A classify-only ensemble is its model with Triton's labels: the fused graph is the model."""

    kind = "classify"
    shift = 0.0

    def fuse(self, pipeline):
        model = onnx.load(str(pipeline.artifact))
        if self.shift:  # a wrong graph: every score moved
            out = model.graph.output[0].name
            model.graph.node[-1].output[0] = "unshifted"
            model.graph.initializer.append(helper.make_tensor("shift", onnx.TensorProto.FLOAT, [], [self.shift]))
            model.graph.node.append(helper.make_node("Add", ["unshifted", "shift"], [out]))
        inputs, expected = pipeline.ensemble.samples
        return fused.Fused(model, requests=(inputs,), expected=(expected,))


@pytest.fixture
def classify_fuser(monkeypatch):
    fuser = ModelAsIs()
    monkeypatch.setitem(fused.FUSERS, "classify", fuser)
    return fuser


def _models(tmp_path, sidecar: str):
    models = tmp_path / "models"
    onnx_linear(models / "linear.onnx")
    (models / "linear.yaml").write_text(sidecar)
    return models


def test_fuse_true_writes_a_verified_fused_entry_beside_the_ensemble(tmp_path, classify_fuser):
    repo = tmp_path / "repo"
    results = {r.name: r for r in build_repository(_models(tmp_path, CLASSIFY + "fuse: true\n"), repo)}
    assert {n: r.status for n, r in results.items()} == {"linear": "OK", "linear_ensemble": "OK",
                                                         "linear_ensemble_fused": "OK"}
    entry = results["linear_ensemble_fused"]
    assert (entry.framework, entry.format) == ("fused", "onnx")
    assert entry.max_error == 0
    assert (repo / "linear_ensemble_fused" / "1" / "model.onnx").is_file()
    config = (repo / "linear_ensemble_fused" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config and "max_batch_size: 64" in config
    stored = read_samples(repo / "linear_ensemble_fused" / "1" / "samples.npz")
    ensemble = read_samples(repo / "linear_ensemble" / "1" / "samples.npz")
    np.testing.assert_array_equal(stored.inputs["input"], ensemble.inputs["input"])
    np.testing.assert_allclose(stored.outputs["output"], ensemble.outputs["output"], rtol=1e-6)
    manifest = json.loads((repo / "manifest.json").read_text())
    assert "linear_ensemble_fused" in manifest["models"]["linear"]["versions"]["1"]["ensemble"]


def test_a_fused_graph_that_answers_otherwise_fails_alone(tmp_path, classify_fuser):
    classify_fuser.shift = 0.5
    repo = tmp_path / "repo"
    results = {r.name: r for r in build_repository(_models(tmp_path, CLASSIFY + "fuse: true\n"), repo)}
    assert results["linear"].status == "OK" and results["linear_ensemble"].status == "OK"
    failed = results["linear_ensemble_fused"]
    assert failed.status == "FAILED"
    assert "fused entry 'linear_ensemble_fused' does not match ensemble 'linear_ensemble'" in failed.reason
    assert failed.reason.startswith("linear.onnx: ") and "\n" not in failed.reason
    assert not (repo / "linear_ensemble_fused").exists()


def test_a_pipeline_without_a_fuser_is_a_skipped_line_with_the_reason(tmp_path, capsys):
    """No fuser for a classify-only ensemble in the library: --fuse reports it and builds the rest."""
    repo = tmp_path / "repo"
    code = build_main([str(_models(tmp_path, CLASSIFY)), str(repo), "--fuse", "--no-validate"])
    out = capsys.readouterr().out
    assert code == 0
    [line] = [l for l in out.splitlines() if l.startswith("linear_ensemble_fused")]
    assert "SKIPPED" in line and "cannot fuse: no fused form of a 'classify' pipeline" in line
    assert "3 models: 2 built, 0 unchanged, 0 failed, 1 skipped" in out
    assert sorted(p.name for p in repo.iterdir() if p.is_dir()) == ["linear", "linear_ensemble"]


def test_fuse_true_without_an_ensemble_says_so(tmp_path):
    [model, skipped] = build_repository(_models(tmp_path, "fuse: true\n"), tmp_path / "repo")
    assert model.status == "OK"
    assert skipped.name == "linear_fused" and skipped.status == "SKIPPED"
    assert "'fuse: true' but the model has no Python-step ensemble" in skipped.reason


def test_without_fuse_nothing_changes_and_fuse_false_wins_over_the_option(tmp_path, classify_fuser):
    models = _models(tmp_path, CLASSIFY)
    plain = build_repository(models, tmp_path / "plain")
    assert sorted(r.name for r in plain) == ["linear", "linear_ensemble"]
    again = build_repository(models, tmp_path / "plain", BuildOptions(fuse=False))
    assert {r.status for r in again} == {"UNCHANGED"}  # the fingerprint is today's without fusion
    (models / "linear.yaml").write_text(CLASSIFY + "fuse: false\n")
    declined = build_repository(models, tmp_path / "declined", BuildOptions(fuse=True))
    assert sorted(r.name for r in declined) == ["linear", "linear_ensemble"]


def test_asking_for_fusion_later_builds_the_fused_entry_once(tmp_path, classify_fuser):
    models, repo = _models(tmp_path, CLASSIFY), tmp_path / "repo"
    build_repository(models, repo)
    fused_once = {r.name: r.status for r in build_repository(models, repo, BuildOptions(fuse=True))}
    assert fused_once["linear_ensemble_fused"] == "OK"
    assert {r.name: r.status for r in build_repository(models, repo, BuildOptions(fuse=True))} == {
        "linear": "UNCHANGED", "linear_ensemble": "UNCHANGED", "linear_ensemble_fused": "UNCHANGED"}


@pytest.mark.slow
def test_the_bundled_triton_loads_the_fused_entry_before_it_is_moved_in(tmp_path, classify_fuser):
    results = {r.name: r for r in build_repository(_models(tmp_path, CLASSIFY + "fuse: true\n"), tmp_path / "repo",
                                                   BuildOptions(validate=True))}
    assert results["linear_ensemble_fused"].status == "OK", results["linear_ensemble_fused"].reason
