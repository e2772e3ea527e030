"""PyTorch builds as TorchScript and TensorFlow as SavedModel, on request, with the matching platforms."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from tritonforge.repository import config as configs
from tritonforge.builder import BuildOptions, build_repository
from tritonforge.converters.formats import get as get_format


@pytest.fixture(scope="module")
def framework_formats(example_models, tmp_path_factory):
    models = tmp_path_factory.mktemp("nn_models")
    for name in ("torch_cnn.pt2", "digits_cnn.keras", "digits_cnn.yaml", "price_two_inputs.h5"):
        shutil.copy(example_models / name, models / name)
    repos = {}
    for fmt in ("torchscript", "savedmodel"):
        repo = tmp_path_factory.mktemp(fmt) / "repo"
        repos[fmt] = (repo, {r.name: r for r in build_repository(models, repo, BuildOptions(format=fmt))})
    return repos


@pytest.mark.slow
def test_torchscript_entry_uses_the_libtorch_naming_convention(framework_formats):
    repo, results = framework_formats["torchscript"]
    assert results["torch_cnn"].status == "OK", results["torch_cnn"].reason
    config = configs.read(repo / "torch_cnn" / "config.pbtxt")
    assert config.platform == "pytorch_libtorch" and config.max_batch_size > 0
    assert [t.name for t in config.input] == ["INPUT__0"] and [t.name for t in config.output] == ["OUTPUT__0"]
    assert list(config.input[0].dims) == [3, 32, 32] and list(config.output[0].dims) == [5]
    assert (repo / "torch_cnn" / "1" / "model.pt").is_file()


@pytest.mark.slow
def test_torchscript_entry_answers_any_batch_size(framework_formats):
    repo, _ = framework_formats["torchscript"]
    run = get_format("torchscript").runner(repo / "torch_cnn" / "1" / "model.pt")
    for rows in (1, 5):
        assert run({"INPUT__0": np.zeros((rows, 3, 32, 32), np.float32)})["OUTPUT__0"].shape == (rows, 5)


@pytest.mark.slow
@pytest.mark.parametrize("name, inputs, output", [
    ("digits_cnn", ["input_layer"], "output_0"),
    ("price_two_inputs", ["extra", "numeric"], "output_0"),
])
def test_savedmodel_entry_uses_the_serving_signature(framework_formats, name, inputs, output):
    repo, results = framework_formats["savedmodel"]
    assert results[name].status == "OK", results[name].reason
    config = configs.read(repo / name / "config.pbtxt")
    assert config.platform == "tensorflow_savedmodel" and config.max_batch_size > 0
    assert sorted(t.name for t in config.input) == inputs and [t.name for t in config.output] == [output]
    assert (repo / name / "1" / "model.savedmodel" / "saved_model.pb").is_file()


@pytest.mark.slow
def test_format_flag_leaves_other_frameworks_on_onnx(framework_formats):
    _, results = framework_formats["torchscript"]
    assert results["digits_cnn"].format == "onnx" and results["digits_cnn"].status == "OK"
