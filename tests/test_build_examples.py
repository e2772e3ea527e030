"""Every example model builds to ONNX, verifies, and gets a config that agrees with its artifact."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from tritonforge.repository import config as configs
from tritonforge.converters.formats.onnx import signature_of
from tritonforge.repository import SAMPLES_FILE
from fixtures_build import EXAMPLE_ENSEMBLES, EXAMPLE_FORMATS, EXAMPLE_MODELS, EXAMPLE_STEPS

FRAMEWORKS = {"cancer_keras": "tensorflow", "cancer_xgb": "xgboost", "churn_pipeline": "sklearn", "digits_cnn": "tensorflow", "house_price_xgb": "xgboost",
              "iris_xgb": "xgboost", "price_two_inputs": "tensorflow", "torch_cnn": "pytorch", "wine_lgbm": "lightgbm"}
ONNX_EXAMPLES = tuple(name for name in EXAMPLE_MODELS if name not in EXAMPLE_FORMATS)


def test_every_example_builds_and_verifies(built_examples):
    _, results = built_examples
    assert sorted(results) == sorted(EXAMPLE_MODELS + EXAMPLE_ENSEMBLES + EXAMPLE_STEPS)
    for name, result in results.items():
        assert result.status == "OK", f"{name}: {result.reason}"
    for name in EXAMPLE_MODELS + EXAMPLE_ENSEMBLES:
        assert results[name].errors and all(e.ok for e in results[name].errors)
    for name in EXAMPLE_MODELS:
        assert results[name].framework == FRAMEWORKS[name]


@pytest.mark.parametrize("name", ONNX_EXAMPLES)
def test_config_agrees_with_onnx_artifact(built_examples_repo, name):
    config = configs.read(built_examples_repo / name / "config.pbtxt")
    signature = signature_of(onnx.load(str(built_examples_repo / name / "1" / "model.onnx")))
    assert config.name == name and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size > 0 and signature.batched
    for tensors, specs in ((config.input, signature.inputs), (config.output, signature.outputs)):
        assert [t.name for t in tensors] == [s.name for s in specs]
        for tensor, spec in zip(tensors, specs):
            assert tensor.data_type == configs.data_type(spec.dtype)
            expected_dims = list(spec.shape[1:]) or [1]
            assert list(tensor.dims) == expected_dims
            assert tensor.HasField("reshape") == (len(spec.shape) == 1)


def test_string_column_becomes_a_string_input(built_examples_repo):
    config = configs.read(built_examples_repo / "churn_pipeline" / "config.pbtxt")
    types = {t.name: t.data_type for t in config.input}
    assert types == {"city": configs.data_type(np.dtype(object)), "age": configs.data_type(np.dtype("float32")),
                     "income": configs.data_type(np.dtype("float32"))}
    label = next(o for o in config.output if o.name == "label")
    assert label.data_type == configs.data_type(np.dtype("int64"))


@pytest.mark.parametrize("name, labels", [
    ("digits_cnn", [str(i) for i in range(10)]),
    ("iris_xgb", ["setosa", "versicolor", "virginica"]),
    ("churn_pipeline", ["stays", "churns"]),
    ("wine_lgbm", ["cultivar_1", "cultivar_2", "cultivar_3"]),
])
def test_classifiers_get_a_labels_file_on_their_scores(built_examples_repo, name, labels):
    config = configs.read(built_examples_repo / name / "config.pbtxt")
    labelled = [o for o in config.output if o.label_filename]
    assert len(labelled) == 1 and labelled[0].dims[-1] == len(labels)
    assert (built_examples_repo / name / labelled[0].label_filename).read_text().split() == labels


@pytest.mark.parametrize("name, portable, gpu", [("digits_cnn", "KIND_AUTO", "KIND_GPU"), ("torch_cnn", "KIND_AUTO", "KIND_GPU"),
                                                 ("iris_xgb", "KIND_CPU", "KIND_CPU"), ("churn_pipeline", "KIND_CPU", "KIND_CPU")])
def test_instance_kind_follows_the_framework_in_each_variant(built_examples_repo, name, portable, gpu):
    config = configs.read(built_examples_repo / name / "config.pbtxt")
    assert [g.kind for g in config.instance_group] == [getattr(config.instance_group[0], portable)]
    variant = configs.read_variant(built_examples_repo / name, "gpu")
    assert [g.kind for g in variant.instance_group] == [getattr(variant.instance_group[0], gpu)]
    variant = configs.read_variant(built_examples_repo / name, "cpu")
    assert [g.kind for g in variant.instance_group] == [variant.instance_group[0].KIND_CPU]


@pytest.mark.parametrize("name", EXAMPLE_MODELS)
def test_dynamic_batching_and_warmup_from_the_samples(built_examples_repo, name):
    config = configs.read(built_examples_repo / name / "config.pbtxt")
    assert config.HasField("dynamic_batching")
    assert all(s <= config.max_batch_size for s in config.dynamic_batching.preferred_batch_size)
    warmup = config.model_warmup[0]
    assert set(warmup.inputs) == {t.name for t in config.input}
    for data in warmup.inputs.values():
        assert (built_examples_repo / name / "warmup" / data.input_data_file).stat().st_size > 0


@pytest.mark.parametrize("name", EXAMPLE_MODELS)
def test_samples_hold_inputs_and_source_outputs(built_examples_repo, name):
    config = configs.read(built_examples_repo / name / "config.pbtxt")
    with np.load(built_examples_repo / name / "1" / SAMPLES_FILE, allow_pickle=False) as samples:
        assert {f"input/{t.name}" for t in config.input} | {f"output/{t.name}" for t in config.output} | {"atol", "rtol"} == set(samples)
        rows = {samples[f"input/{t.name}"].shape[0] for t in config.input}
        assert rows == {samples[f"output/{t.name}"].shape[0] for t in config.output} and rows.pop() >= 2


def test_manifest_records_every_entry(built_examples_repo):
    manifest = json.loads((built_examples_repo / "manifest.json").read_text())
    assert sorted(manifest["models"]) == sorted(EXAMPLE_MODELS + EXAMPLE_ENSEMBLES + EXAMPLE_STEPS)
    for name in EXAMPLE_MODELS:
        entry = manifest["models"][name]
        record = entry["versions"][str(entry["latest_version"])]
        assert entry["framework"] == FRAMEWORKS[name] and entry["format"] == EXAMPLE_FORMATS.get(name, "onnx")
        assert len(record["fingerprint"]) == 64 and record["tools"]["onnx"] == onnx.__version__
        assert set(record["errors"]) == {t.name for t in configs.read(built_examples_repo / name / "config.pbtxt").output}
