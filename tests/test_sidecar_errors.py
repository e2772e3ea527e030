"""A sidecar mistake is one line that names the sidecar file and the key, and builds nothing."""
from __future__ import annotations

import pytest

from fixtures_serving import onnx_linear
from tritonforge.builder import build_repository
from tritonforge.errors import BuildError

OWN = [  # (case, linear.yaml, what the FAILED line must say)
    ("a number past int32", "max_batch_size: 99999999999999999999999999999",
     "linear.yaml: 'max_batch_size' must be an integer <= 2147483647"),
    ("a negative size", "max_batch_size: -1", "linear.yaml: 'max_batch_size' must be an integer >= 0"),
    ("preferred sizes above the maximum", "max_batch_size: 8\ndynamic_batching: {preferred_batch_size: [1000]}",
     "linear.yaml: 'dynamic_batching.preferred_batch_size' 1000 is larger than max_batch_size 8"),
    ("an infinite tolerance", "tolerance: {atol: .inf}", "linear.yaml: 'tolerance.atol' must be a finite number >= 0"),
    ("too many instances", "instances: 100000", "linear.yaml: 'instances' must be an integer <= 1024"),
    ("an unknown key", "max_batchsize: 4", "linear.yaml: unknown key 'max_batchsize'"),
    ("fuse as a word", "fuse: 'yes'", "linear.yaml: 'fuse' must be true or false, got 'yes'"),
    ("fuse as a number", "fuse: 1", "linear.yaml: 'fuse' must be true or false, got 1"),
    ("fuse as a mapping", "fuse: {detect: true}", "linear.yaml: 'fuse' must be true or false, got {'detect': True}"),
]


@pytest.mark.parametrize("case, sidecar, message", OWN, ids=[c[0] for c in OWN])
def test_a_bad_sidecar_fails_its_model_naming_file_and_key(tmp_path, case, sidecar, message):
    models = tmp_path / "models"
    onnx_linear(models / "linear.onnx")
    (models / "linear.yaml").write_text(sidecar + "\n")
    [result] = build_repository(models, tmp_path / "repo")
    assert result.status == "FAILED" and message in result.reason, result.reason
    assert "\n" not in result.reason
    assert not (tmp_path / "repo" / "linear").exists()


FOLDER = [
    ("a key that escapes", "models:\n  ../../evil: {max_batch_size: 4}", "tritonforge.yaml: 'models.'../../evil'' names no model"),
    ("a key that is no name", "models:\n  'a b!': {max_batch_size: 4}", "tritonforge.yaml: 'models.'a b!'' names no model"),
    ("a default past int32", "defaults: {max_batch_size: 4294967296}",
     "tritonforge.yaml defaults: 'max_batch_size' must be an integer <= 2147483647"),
    ("a default fuse that is no boolean", "defaults: {fuse: maybe}", "tritonforge.yaml defaults: 'fuse' must be true or false"),
]


@pytest.mark.parametrize("case, sidecar, message", FOLDER, ids=[c[0] for c in FOLDER])
def test_a_bad_folder_sidecar_stops_the_build_before_anything_is_written(tmp_path, case, sidecar, message):
    models = tmp_path / "models"
    onnx_linear(models / "linear.onnx")
    (models / "tritonforge.yaml").write_text(sidecar + "\n")
    with pytest.raises(BuildError) as info:
        build_repository(models, tmp_path / "repo")
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "repo").exists()
