"""Each kind of input file the issue lists is detected from the file itself and builds to a verified entry."""
from __future__ import annotations

import warnings

import joblib
import numpy as np
import pytest

from tritonforge.repository import config as configs
from tritonforge.builder import BuildOptions, build_repository


class TwoHeads:
    """A torch module with two outputs (defined lazily so importing this file needs no torch)."""


def make_inputs(folder):
    import keras
    import onnx
    import torch
    import xgboost as xgb
    from onnx import TensorProto, helper
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(7)
    x, y = rng.random((80, 5)).astype(np.float32), rng.integers(0, 3, 80)

    # Keras SavedModel folder (model.export writes the serving_default signature)
    seq = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])
    seq(x[:2])
    seq.export(str(folder / "keras_savedmodel"), format="tf_saved_model", verbose=False)

    # TorchScript archive: shapes come from the sidecar
    linear = torch.nn.Sequential(torch.nn.Linear(5, 2), torch.nn.Tanh()).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(linear, torch.randn(2, 5)).save(str(folder / "scripted.pt"))
    (folder / "scripted.yaml").write_text("inputs: [{name: features, shape: [-1, 5], dtype: float32}]\n")

    # whole pickled nn.Module (torch.save), shapes from the sidecar
    torch.save(linear, folder / "pickled_module.pth")
    (folder / "pickled_module.yaml").write_text("inputs: [{name: features, shape: [-1, 5]}]\n")

    # Keras model with a dict of outputs (the exporter names them by key)
    features = keras.Input((5,), name="features")
    hidden = keras.layers.Dense(4, activation="relu")(features)
    heads = keras.Model(features, {"score": keras.layers.Dense(1)(hidden), "classes": keras.layers.Dense(3, activation="softmax")(hidden)})
    heads.save(folder / "keras_dict_outputs.keras")

    # scikit-learn estimators on arrays; an SVC without probability=True has no predict_proba
    joblib.dump(RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(x, y), folder / "forest.pkl")
    from sklearn.svm import SVC

    joblib.dump(SVC().fit(x, y), folder / "svc_scores.pkl")
    # outlier detection and clustering: a label and scores, no probabilities
    from sklearn.cluster import KMeans
    from sklearn.ensemble import IsolationForest

    joblib.dump(IsolationForest(n_estimators=5, random_state=0).fit(x), folder / "outliers.pkl")
    joblib.dump(KMeans(3, n_init=2, random_state=0).fit(x), folder / "clusters.pkl")
    # a text classifier: one string per row
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts = ["good movie", "bad film", "great acting", "awful plot"] * 5
    joblib.dump(make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(texts, [1, 0, 1, 0] * 5), folder / "sentiment.pkl")
    # an XGBoost ranker (its score is a raw margin)
    xgb.XGBRanker(n_estimators=5).fit(x, rng.integers(0, 3, 80), qid=np.repeat(np.arange(8), 10)).save_model(folder / "ranker.json")
    joblib.dump(Ridge().fit(x, x @ np.arange(5)), folder / "ridge.joblib")

    # XGBoost: scikit-learn wrapper pickled, and saved as a booster JSON
    clf = xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(x, y)
    joblib.dump(clf, folder / "xgb_wrapper.pkl")
    clf.save_model(folder / "xgb_wrapper_saved.json")

    # ONNX with a fixed first dimension: served without batching
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 3])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), folder / "fixed_batch.onnx")
    return folder


@pytest.fixture(scope="module")
def built_inputs(tmp_path_factory):
    folder = make_inputs(tmp_path_factory.mktemp("inputs"))
    repo = tmp_path_factory.mktemp("repo") / "repo"
    results = {r.name: r for r in build_repository(folder, repo, BuildOptions(allow_pickle=True))}
    return repo, results


@pytest.mark.parametrize("name, framework", [
    ("keras_savedmodel", "tensorflow"),
    ("keras_dict_outputs", "tensorflow"),
    ("svc_scores", "sklearn"),
    ("outliers", "sklearn"),
    ("clusters", "sklearn"),
    ("sentiment", "sklearn"),
    ("ranker", "xgboost"),
    ("scripted", "pytorch"),
    ("pickled_module", "pytorch"),
    ("forest", "sklearn"),
    ("ridge", "sklearn"),
    ("xgb_wrapper", "xgboost"),
    ("xgb_wrapper_saved", "xgboost"),
    ("fixed_batch", "onnx"),
])
def test_input_is_detected_and_verified(built_inputs, name, framework):
    _, results = built_inputs
    assert results[name].status == "OK", results[name].reason
    assert results[name].framework == framework
    assert all(e.ok for e in results[name].errors)


@pytest.mark.parametrize("name", ["scripted", "pickled_module", "keras_savedmodel", "forest", "xgb_wrapper"])
def test_batched_inputs_get_a_batched_config(built_inputs, name):
    repo, _ = built_inputs
    assert configs.read(repo / name / "config.pbtxt").max_batch_size > 0


def test_fixed_first_dimension_gets_max_batch_size_zero_and_full_dims(built_inputs):
    repo, _ = built_inputs
    config = configs.read(repo / "fixed_batch" / "config.pbtxt")
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [4, 3] and list(config.output[0].dims) == [4, 3]


def test_text_pipeline_takes_one_string_per_row(built_inputs):
    repo, results = built_inputs
    config = configs.read(repo / "sentiment" / "config.pbtxt")
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [("text", configs.data_type(np.dtype(object)), [1])]


def test_sklearn_classifier_labels_come_from_the_model(built_inputs):
    repo, _ = built_inputs
    assert (repo / "forest" / "labels.txt").read_text().split() == ["0", "1", "2"]
