"""build-repo's validate stage: Triton itself loads each entry and answers its samples before the
entry is moved in, so a config Triton refuses is a FAILED line, never OK."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fixtures_serving import onnx_linear
from test_dynamic_axes import SEQUENCE_SIDECAR, LastStep, _seeded
from tritonforge.builder import BuildOptions, build_repository, configure

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
