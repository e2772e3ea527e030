"""CatBoost, the sixth framework: ``.cbm`` files (recognised by their bytes) and pickled
CatBoostClassifier/CatBoostRegressor objects become ONNX through CatBoost's own exporter, verified
against CatBoost's predict_proba/predict, served by serve-repo and checked by check-repo; what the
exporter cannot write (categorical, text features; MultiRMSE) is refused in one line."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tritonforge.builder import BuildOptions, build_repository
from tritonforge.repository import config as configs

QUIET = {"verbose": 0, "random_seed": 0, "thread_count": 1, "iterations": 30, "depth": 4,
         "allow_writing_files": False}  # no catboost_info/ folder in the working directory
FLOWERS = np.array(["setosa", "versicolor", "virginica"])
# name -> (file, the rows CatBoost answers for, labels.txt: None for a regressor)
CATBOOST_MODELS = {
    "cb_binary": ("cb_binary.cbm", "cancer", ["0", "1"]),
    "cb_multi": ("cb_multi.joblib", "iris", list(FLOWERS)),
    "cb_regression": ("cb_regression.cbm", "diabetes", None),
    "cb_regressor_pickle": ("cb_regressor_pickle.pkl", "diabetes", None),
}


def _data(name: str):
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

    return {"cancer": load_breast_cancer, "iris": load_iris, "diabetes": load_diabetes}[name](return_X_y=True)


def _rooms(rows: int = 300):
    """A table with a categorical (string) column, which CatBoost's ONNX exporter cannot write."""
    import pandas as pd

    rng = np.random.default_rng(0)
    rooms = pd.DataFrame({"colour": rng.choice(["red", "green", "blue"], rows), "size": rng.random(rows)})
    return rooms, (rooms.colour == "green") * 2.0 + rooms["size"]


def train_catboost(folder: Path) -> None:
    """Small models on scikit-learn's bundled data, seeded and single-threaded."""
    import catboost as cb
    import joblib

    folder.mkdir(parents=True, exist_ok=True)
    cb.CatBoostClassifier(**QUIET).fit(*_data("cancer")).save_model(str(folder / "cb_binary.cbm"))
    iris, species = _data("iris")
    joblib.dump(cb.CatBoostClassifier(**QUIET).fit(iris, FLOWERS[species]), folder / "cb_multi.joblib")
    cb.CatBoostRegressor(**QUIET).fit(*_data("diabetes")).save_model(str(folder / "cb_regression.cbm"))
    joblib.dump(cb.CatBoostRegressor(**QUIET, loss_function="MAE").fit(*_data("diabetes")), folder / "cb_regressor_pickle.pkl")


@pytest.fixture(scope="session")
def catboost_models(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("catboost") / "models"
    train_catboost(folder)
    return folder


@pytest.fixture(scope="session")
def catboost_build(catboost_models, tmp_path_factory):
    repo = tmp_path_factory.mktemp("catboost-repo") / "repo"
    results = build_repository(catboost_models, repo, BuildOptions(allow_pickle=True))
    return repo, {r.name: r for r in results}


def _source(catboost_models: Path, name: str):
    import catboost as cb
    import joblib

    path = catboost_models / CATBOOST_MODELS[name][0]
    if path.suffix != ".cbm":
        return joblib.load(path)
    model = cb.CatBoostClassifier() if CATBOOST_MODELS[name][2] else cb.CatBoostRegressor()
    return model.load_model(str(path))


def _expected(source, rows: np.ndarray) -> np.ndarray:
    return source.predict_proba(rows) if hasattr(source, "predict_proba") else source.predict(rows).reshape(len(rows), -1)


def test_every_catboost_model_builds_to_a_verified_onnx_entry(catboost_build):
    repo, results = catboost_build
    assert set(results) == set(CATBOOST_MODELS)
    for name, (_, _, labels) in CATBOOST_MODELS.items():
        result = results[name]
        assert (result.status, result.framework, result.format) == ("OK", "catboost", "onnx"), result.reason
        assert (repo / name / "1" / "model.onnx").is_file()
        assert result.errors and all(e.ok for e in result.errors)
        outputs = [spec.name for spec in result.signature.outputs]
        assert outputs == (["label", "probabilities"] if labels else ["predictions"])


@pytest.mark.parametrize("name", CATBOOST_MODELS)
def test_the_onnx_artifact_answers_like_catboost_on_the_data_it_learned(catboost_build, catboost_models, name):
    import onnxruntime as ort

    repo, _ = catboost_build
    rows = _data(CATBOOST_MODELS[name][1])[0].astype(np.float32)
    source = _source(catboost_models, name)
    session = ort.InferenceSession(str(repo / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    answers = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"features": rows})))
    expected = _expected(source, rows)
    if CATBOOST_MODELS[name][2]:
        np.testing.assert_allclose(answers["probabilities"], expected, atol=1e-5)
        assert [str(v) for v in answers["label"]] == [str(v) for v in source.predict(rows).reshape(-1)]
        assert len(set(answers["label"])) == len(CATBOOST_MODELS[name][2])  # the rows reach every class
    else:
        np.testing.assert_allclose(answers["predictions"], expected, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("name", CATBOOST_MODELS)
def test_classifiers_get_their_class_names_as_labels(catboost_build, name):
    repo, _ = catboost_build
    labels = CATBOOST_MODELS[name][2]
    if labels is None:
        assert not (repo / name / "labels.txt").exists()
        return
    assert (repo / name / "labels.txt").read_text().split() == labels
    assert [o.label_filename for o in configs.read(repo / name).output] == ["", "labels.txt"]


def test_samples_cover_missing_values_and_the_split_borders(catboost_build, catboost_models):
    from tritonforge.repository import read_samples

    repo, _ = catboost_build
    rows = read_samples(repo / "cb_regression" / "1" / "samples.npz").inputs["features"]
    assert np.isnan(rows).any()  # CatBoost routes NaN, and the exporter keeps the routing
    borders = _source(catboost_models, "cb_regression").get_borders()
    crossed = [np.nanmin(rows[:, int(i)]) < min(b) and np.nanmax(rows[:, int(i)]) > max(b) for i, b in borders.items() if b]
    assert crossed and all(crossed)


def _categorical_regressor(folder: Path) -> None:
    import catboost as cb

    rooms, price = _rooms()
    cb.CatBoostRegressor(**QUIET, cat_features=["colour"]).fit(rooms, price).save_model(str(folder / "rooms.cbm"))


def _categorical_classifier(folder: Path) -> None:
    import catboost as cb
    import joblib

    rooms, price = _rooms()
    joblib.dump(cb.CatBoostClassifier(**QUIET, cat_features=["colour"]).fit(rooms, price > 1.5), folder / "rooms.joblib")


def _text_classifier(folder: Path) -> None:
    import catboost as cb
    import pandas as pd

    rng = np.random.default_rng(0)
    words = rng.choice(["good value", "bad service", "great room", "dirty floor"], 200)
    reviews = pd.DataFrame({"review": words, "stars": rng.integers(1, 6, 200)})
    model = cb.CatBoostClassifier(**QUIET, text_features=["review"])
    model.fit(reviews, np.char.startswith(words.astype(str), "g") | np.char.startswith(words.astype(str), "great"))
    model.save_model(str(folder / "reviews.cbm"))


def _two_targets(folder: Path) -> None:
    import catboost as cb

    rows, target = _data("diabetes")
    cb.CatBoostRegressor(**QUIET, loss_function="MultiRMSE").fit(rows, np.stack([target, target / 10], axis=1)).save_model(
        str(folder / "two_targets.cbm"))


def _truncated(folder: Path) -> None:
    import catboost as cb

    cb.CatBoostRegressor(**QUIET).fit(*_data("diabetes")).save_model(str(folder / "cut.cbm"))
    data = (folder / "cut.cbm").read_bytes()
    (folder / "cut.cbm").write_bytes(data[: len(data) // 2])


REFUSALS = [  # (name, how to make it, the words of its one line)
    ("rooms", _categorical_regressor, "rooms.cbm: the model uses categorical features (colour), which CatBoost's ONNX "
                                      "exporter cannot write; encode them as numbers before training (one-hot or ordinal)"),
    ("rooms", _categorical_classifier, "the model uses categorical features (colour)"),
    ("reviews", _text_classifier, "the model uses text features (review)"),
    ("two_targets", _two_targets, "a CatBoost MultiRMSE model (one value per target)"),
    ("cut", _truncated, "cut.cbm: CatBoost cannot load it"),
]


@pytest.mark.parametrize("name, make, words", REFUSALS, ids=[make.__name__ for _, make, _ in REFUSALS])
def test_what_the_exporter_cannot_write_is_refused_in_one_line(tmp_path, name, make, words):
    models = tmp_path / "models"
    models.mkdir()
    make(models)
    [result] = build_repository(models, tmp_path / "repo", BuildOptions(allow_pickle=True))
    assert result.status == "FAILED" and words in result.reason and "\n" not in result.reason, result.reason
    assert not (tmp_path / "repo" / name).exists()


def test_a_pickled_catboost_model_needs_allow_pickle(tmp_path, catboost_models):
    models = tmp_path / "models"
    models.mkdir()
    (models / "cb_multi.joblib").write_bytes((catboost_models / "cb_multi.joblib").read_bytes())
    [result] = build_repository(models, tmp_path / "repo", BuildOptions())
    assert result.status == "FAILED" and "--allow-pickle" in result.reason


@pytest.mark.slow
def test_served_catboost_entries_answer_like_catboost_and_pass_check_repo(catboost_build, catboost_models):
    import tritonclient.http as http

    from tritonforge.serving.check import check_repository
    from tritonforge.serving.server import serve

    repo, _ = catboost_build
    with serve(repo, control_mode="explicit", load_models=("*",)) as server:
        rows = check_repository(repo, http_url=server.http_url, grpc_url=server.grpc_url)
        assert {(r.model, r.protocol) for r in rows} == {(m, p) for m in CATBOOST_MODELS for p in ("http", "grpc")}
        assert all(r.ok for r in rows), [r for r in rows if not r.ok]
        client = http.InferenceServerClient(server.http_url.removeprefix("http://"))
        for name, (_, data, labels) in CATBOOST_MODELS.items():
            features = _data(data)[0][::10].astype(np.float32)
            tensor = http.InferInput("features", list(features.shape), "FP32")
            tensor.set_data_from_numpy(features)
            output = "probabilities" if labels else "predictions"
            answer = client.infer(name, [tensor], outputs=[http.InferRequestedOutput(output)]).as_numpy(output)
            np.testing.assert_allclose(answer, _expected(_source(catboost_models, name), features), rtol=1e-5, atol=1e-3)
