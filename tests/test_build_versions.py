"""Writing: a no-op rebuild changes nothing, a changed model becomes the next version, old versions stay."""
from __future__ import annotations

import shutil

import pytest
from fixtures_build import tree_digest

from tritonforge.builder import BuildOptions, build_repository
from tritonforge.builder.staging import STAGING_PREFIX


@pytest.fixture()
def small_models(example_models, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for name in ("iris_xgb.json", "iris_xgb.yaml", "house_price_xgb.ubj"):
        shutil.copy(example_models / name, models / name)
    return models


def test_rebuild_of_unchanged_models_changes_nothing(small_models, tmp_path):
    repo = tmp_path / "repo"
    build_repository(small_models, repo)
    before = tree_digest(repo)
    results = build_repository(small_models, repo)
    assert [r.status for r in results] == ["UNCHANGED", "UNCHANGED"]
    assert tree_digest(repo) == before


def test_changed_model_becomes_the_next_version_and_keeps_the_old(small_models, example_models, tmp_path):
    repo = tmp_path / "repo"
    build_repository(small_models, repo)
    first = tree_digest(repo / "iris_xgb" / "1")
    (small_models / "iris_xgb.yaml").write_text("labels: [a, b, c]\nmax_batch_size: 16\n")
    results = {r.name: r for r in build_repository(small_models, repo)}
    assert results["iris_xgb"].status == "OK" and results["iris_xgb"].version == 2
    assert results["house_price_xgb"].status == "UNCHANGED"
    assert tree_digest(repo / "iris_xgb" / "1") == first
    assert (repo / "iris_xgb" / "labels.txt").read_text().split() == ["a", "b", "c"]
    assert "max_batch_size: 16" in (repo / "iris_xgb" / "config.pbtxt").read_text()


def test_no_staging_folder_is_left_behind(small_models, tmp_path):
    repo = tmp_path / "repo"
    (small_models / "broken.onnx").write_bytes(b"not onnx")
    build_repository(small_models, repo)
    assert not [p for p in repo.rglob("*") if STAGING_PREFIX in p.name]
    assert not [p for p in tmp_path.iterdir() if STAGING_PREFIX in p.name]


def test_another_format_is_a_new_version_with_the_new_platform(example_models, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(example_models / "price_two_inputs.h5", models)
    repo = tmp_path / "repo"
    build_repository(models, repo)
    [result] = build_repository(models, repo, BuildOptions(format="savedmodel"))
    assert result.version == 2 and (repo / "price_two_inputs" / "1" / "model.onnx").is_file()
    assert 'platform: "tensorflow_savedmodel"' in (repo / "price_two_inputs" / "config.pbtxt").read_text()


def test_a_single_model_file_builds_alone_with_its_sidecar(small_models, tmp_path):
    results = build_repository(small_models / "iris_xgb.json", tmp_path / "repo")
    assert [(r.name, r.status) for r in results] == [("iris_xgb", "OK")]
    assert (tmp_path / "repo" / "iris_xgb" / "labels.txt").read_text().split() == ["setosa", "versicolor", "virginica"]
    assert not (tmp_path / "repo" / "house_price_xgb").exists()


def test_a_second_build_of_the_same_repository_is_refused_while_one_runs(small_models, tmp_path):
    from tritonforge.errors import BuildError
    from tritonforge.builder.staging import exclusive

    repo = tmp_path / "repo"
    with exclusive(repo):
        with pytest.raises(BuildError, match="another build-repo is writing this repository"):
            build_repository(small_models, repo)
    assert [r.status for r in build_repository(small_models, repo)] == ["OK", "OK"]
