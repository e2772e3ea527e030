"""Models as users save them, which the examples never were: each builds, loads in Triton and
answers like its source on inputs that exercise what it does."""
from __future__ import annotations

import shutil

import joblib
import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from fixtures_serving import load_copy
from tritonforge.builder import BuildOptions, build_repository

WORDS = "good bad great awful fine poor nice terrible ok meh".split()
REPEATING = np.array([["good good good bad"], ["awful awful nice"], [""], ["zqxjv good"], [" ".join(["great"] * 40 + ["poor"] * 3)]],
                     dtype=object)


def _tfidf_pipeline():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, int(rng.integers(3, 12)))) for _ in range(300)]
    positive = {"good", "great", "fine", "nice"}
    labels = [int(sum(w in positive for w in t.split()) * 2 > len(t.split())) for t in texts]
    return make_pipeline(TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2)), LogisticRegression()).fit(texts, labels)


def _named_keras():
    import keras
    from sklearn.datasets import load_wine

    features, target = load_wine(return_X_y=True)
    keras.utils.set_random_seed(0)
    norm = keras.layers.Normalization(name="norm")
    norm.adapt(features.astype("float32"))
    inputs = keras.Input(shape=(13,), name="features")
    outputs = keras.layers.Dense(3, activation="softmax", name="cultivar")(keras.layers.Dense(16, activation="relu")(norm(inputs)))
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(features.astype("float32"), target, epochs=3, verbose=0)
    return model


@pytest.fixture(scope="module")
def users_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("users")
    models = root / "models"
    models.mkdir()
    tfidf = _tfidf_pipeline()
    joblib.dump(tfidf, models / "reviews_tfidf.joblib")
    keras_model = _named_keras()
    keras_model.save(models / "wine_named.keras")
    results = build_repository(models, root / "repo", BuildOptions(allow_pickle=True))
    return root / "repo", {r.name: r for r in results}, {"reviews_tfidf": tfidf, "wine_named": keras_model}


def test_a_tfidf_pipeline_with_sublinear_tf_builds_and_is_verified_on_repeated_words(users_build):
    repo, results, _ = users_build
    assert results["reviews_tfidf"].status == "OK", results["reviews_tfidf"].reason
    from tritonforge.repository import read_samples

    texts = [row[0] for row in read_samples(repo / "reviews_tfidf" / "1" / "samples.npz").inputs["text"]]
    assert "" in texts and any(len(t.split()) != len(set(t.split())) for t in texts)


def test_a_named_keras_input_with_an_adapted_layer_builds_with_only_its_own_input(users_build):
    _, results, _ = users_build
    result = results["wine_named"]
    assert result.status == "OK", result.reason
    assert [spec.name for spec in result.signature.inputs] == ["features"]


def _served(tiny_server, tiny_repo, repo, name):
    return load_copy(tiny_server, tiny_repo, repo / name, f"users_{name}")


@pytest.mark.slow
def test_the_served_tfidf_pipeline_answers_repeated_words_like_scikit_learn(users_build, tiny_server, tiny_repo):
    import tritonclient.http as http

    repo, _, sources = users_build
    served = _served(tiny_server, tiny_repo, repo, "reviews_tfidf")
    client = http.InferenceServerClient(tiny_server.http_url.removeprefix("http://"))
    tensor = http.InferInput("text", list(REPEATING.shape), "BYTES")
    tensor.set_data_from_numpy(REPEATING)
    answer = client.infer(served, [tensor]).as_numpy("probabilities")
    np.testing.assert_allclose(answer, sources["reviews_tfidf"].predict_proba(REPEATING.ravel()), atol=1e-5)


@pytest.mark.slow
def test_the_served_named_keras_model_answers_like_keras(users_build, tiny_server, tiny_repo):
    import tritonclient.http as http
    from sklearn.datasets import load_wine

    repo, _, sources = users_build
    served = _served(tiny_server, tiny_repo, repo, "wine_named")
    wines = load_wine().data[[0, 70, 140]].astype(np.float32)
    client = http.InferenceServerClient(tiny_server.http_url.removeprefix("http://"))
    tensor = http.InferInput("features", list(wines.shape), "FP32")
    tensor.set_data_from_numpy(wines)
    answer = client.infer(served, [tensor]).as_numpy("cultivar")
    np.testing.assert_allclose(answer, np.asarray(sources["wine_named"](wines)), atol=1e-5)


def test_a_pickle_that_needs_a_missing_package_names_it_and_the_alternative(tmp_path, monkeypatch):
    """A torch.save'd model whose module is not installed here (torchvision's classifiers, say)."""
    import sys

    import torch

    package = tmp_path / "vision_stand_in"
    package.mkdir()
    (package / "__init__.py").write_text("import torch\nclass Net(torch.nn.Linear):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import vision_stand_in

    models = tmp_path / "models"
    models.mkdir()
    torch.save(vision_stand_in.Net(4, 2), models / "net.pt")
    (models / "net.yaml").write_text("inputs: [{name: x, shape: [-1, 4], dtype: float32}]\n")
    monkeypatch.delitem(sys.modules, "vision_stand_in")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
    [result] = build_repository(models, tmp_path / "repo", BuildOptions(allow_pickle=True))
    assert result.status == "FAILED"
    assert "needs the Python package 'vision_stand_in'" in result.reason
    assert "pip install vision_stand_in" in result.reason and "torch.export (.pt2)" in result.reason
