"""A text model's task and normalisation are the sidecar's own keys, with or without an ensemble."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from fixtures_text import save_model
from tritonforge import sidecar
from tritonforge.builder import build_repository
from tritonforge.converters.adapters import huggingface


def test_the_sidecar_knows_the_tasks_the_adapter_builds():
    assert sidecar.TEXT_TASKS == huggingface.TASKS


@pytest.mark.slow
def test_a_classifier_folder_built_as_a_normalised_embedding_by_its_own_sidecar_keys(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    save_model(models / "reviews", "bert")
    (models / "reviews.yaml").write_text("task: embedding\nnormalize: true\n")
    [result] = build_repository(models, tmp_path / "repo")
    assert result.status == "OK", result.reason
    assert [spec.name for spec in result.signature.outputs] == ["embedding"]
    from tritonforge.repository import read_samples

    embedding = read_samples(tmp_path / "repo" / "reviews" / "1" / "samples.npz").outputs["embedding"]
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)


def test_a_task_the_adapter_does_not_build_is_refused_naming_the_key(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "m.onnx").write_bytes(b"x")
    (models / "m.yaml").write_text("task: summarisation\n")
    [result] = build_repository(models, tmp_path / "repo")
    assert "m.yaml: 'task' must be one of classification, embedding" in result.reason
