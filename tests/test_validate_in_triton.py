"""build-repo's validate stage: Triton itself loads each entry and answers its samples before the
entry is moved in, so a config Triton refuses is a FAILED line, never OK: the model's own entry,
its Python steps and ensembles (loaded as one set), and its reduced entries."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fixtures_build import tree_digest
from fixtures_serving import onnx_linear
from test_dynamic_axes import SEQUENCE_SIDECAR, LastStep, _seeded
from tritonforge import ensembles
from tritonforge.builder import BuildOptions, build_repository, configure, reduced

VENV_BIN = Path(sys.executable).parent


def _models(folder: Path) -> Path:
    import torch

    folder.mkdir()
    onnx_linear(folder / "linear.onnx")
    torch.jit.script(_seeded(LastStep, 0)).save(str(folder / "series.pt"))
    (folder / "series.yaml").write_text(SEQUENCE_SIDECAR)
    return folder


@pytest.mark.slow
def test_entries_triton_loads_and_that_answer_their_samples_are_ok(tmp_path):
    results = build_repository(_models(tmp_path / "models"), tmp_path / "repo", BuildOptions(validate=True))
    assert [(r.name, r.status) for r in results] == [("linear", "OK"), ("series", "OK")], [r.reason for r in results]


@pytest.mark.slow
def test_a_config_triton_refuses_fails_the_model_with_tritons_message_and_writes_nothing(tmp_path, monkeypatch):
    """The warmup of round 2 (dims -1 for a dynamic sequence), which Triton refuses at load."""
    def old_warmup(config, signature, settings, batch_size):
        warmup = config.model_warmup.add(name="sample_row", batch_size=batch_size)
        for index, spec in enumerate(signature.inputs):
            data = warmup.inputs[spec.name]
            data.data_type = configure.triton_type(spec.dtype)
            data.dims.extend(configure._dims(spec, True)[0])
            data.input_data_file = f"input_{index}"

    monkeypatch.setattr(configure, "_warmup", old_warmup)
    results = {r.name: r for r in build_repository(_models(tmp_path / "models"), tmp_path / "repo", BuildOptions(validate=True))}
    assert results["linear"].status == "OK"
    failed = results["series"]
    assert failed.status == "FAILED"
    assert failed.reason.startswith("series.pt: Triton refuses the entry:"), failed.reason
    assert "warmup setting expects all variable-size dimensions are specified" in failed.reason
    assert not (tmp_path / "repo" / "series").exists()


def test_build_repo_validates_by_default_and_says_how_to_skip_it():
    done = subprocess.run([VENV_BIN / "build-repo", "--help"], capture_output=True, text=True, timeout=120)
    assert "--no-validate" in done.stdout


def _refused_batching(config) -> None:
    """A preferred batch size above max_batch_size: a config Triton refuses at load, whatever the backend."""
    config.dynamic_batching.preferred_batch_size[:] = [config.max_batch_size + 1]


def _linear_with_steps(folder: Path, sidecar: str) -> Path:
    folder.mkdir()
    onnx_linear(folder / "linear.onnx")
    (folder / "linear.yaml").write_text(sidecar)
    return folder


@pytest.mark.slow
def test_steps_ensembles_and_reduced_entries_triton_loads_are_ok(tmp_path):
    models = _linear_with_steps(tmp_path / "models", "preprocess: {step: tabular}\nprecision: [fp16]\n")
    results = build_repository(models, tmp_path / "repo", BuildOptions(validate=True))
    assert {r.name: r.status for r in results} == {"linear": "OK", "linear_preprocess": "OK", "linear_ensemble": "OK",
                                                   "linear_fp16": "OK"}, [r.reason for r in results]


@pytest.mark.slow
def test_an_ensemble_whose_step_config_triton_refuses_fails_the_model_and_changes_nothing(tmp_path, monkeypatch):
    """Before, steps and ensembles were written without Triton loading them: this one was OK."""
    models = _linear_with_steps(tmp_path / "models", "preprocess: {step: tabular}\n")
    repo = tmp_path / "repo"
    onnx_linear(tmp_path / "kept" / "kept.onnx")
    assert [r.status for r in build_repository(tmp_path / "kept", repo, BuildOptions(validate=True))] == ["OK"]
    before = tree_digest(repo)
    plan = ensembles.plan

    def broken_step(*args, **kwargs):
        entries, errors = plan(*args, **kwargs)
        for entry in entries:
            if entry.template:
                _refused_batching(entry.config)
        return entries, errors

    monkeypatch.setattr(ensembles, "plan", broken_step)
    [failed] = build_repository(models, repo, BuildOptions(validate=True))
    assert (failed.name, failed.status) == ("linear", "FAILED")
    assert failed.reason == ("linear.onnx: Triton refuses the entry: model 'linear_preprocess': "
                             "dynamic batching preferred size must be <= max batch size for linear_preprocess")
    assert tree_digest(repo) == before


@pytest.mark.slow
def test_a_reduced_entry_triton_refuses_fails_alone(tmp_path, monkeypatch):
    """Before, the _fp16 entry was written without Triton loading it: this one was OK."""
    models = _linear_with_steps(tmp_path / "models", "precision: [fp16]\n")
    renamed = reduced._renamed

    def broken(message, name):
        copy = renamed(message, name)
        _refused_batching(copy)
        return copy

    monkeypatch.setattr(reduced, "_renamed", broken)
    results = {r.name: r for r in build_repository(models, tmp_path / "repo", BuildOptions(validate=True))}
    assert results["linear"].status == "OK", results["linear"].reason
    failed = results["linear_fp16"]
    assert failed.status == "FAILED"
    assert failed.reason == ("linear.onnx: Triton refuses the entry: model 'linear_fp16': "
                             "dynamic batching preferred size must be <= max batch size for linear_fp16")
    assert not (tmp_path / "repo" / "linear_fp16").exists()
