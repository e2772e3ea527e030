"""One rule for labels across frameworks: a classifier entry has ``labels.txt`` on its scores output
(scikit-learn, XGBoost wrapper or booster with a binary/multiclass objective, LightGBM wrapper or
booster, CatBoost, Keras or torch with a sidecar ``labels:``), and the scores triton-infer shows
are probabilities: a model that answers logits has them turned into probabilities by a softmax,
and the answer says so."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tritonforge.builder import BuildOptions, build_repository
from tritonforge.repository import config as configs

FLOWERS = ["setosa", "versicolor", "virginica"]
INDICES = ["0", "1", "2"]
# entry -> (framework, labels.txt, whether the scores output holds logits)
CLASSIFIERS = {
    "sk_logistic": ("sklearn", FLOWERS, False),
    "xgb_booster_binary": ("xgboost", ["0", "1"], False),
    "xgb_wrapper": ("xgboost", INDICES, False),
    "lgb_booster": ("lightgbm", INDICES, False),
    "lgb_wrapper": ("lightgbm", FLOWERS, False),
    "cb_classifier": ("catboost", FLOWERS, False),
    "keras_softmax": ("tensorflow", FLOWERS, False),
    "torch_logits": ("pytorch", FLOWERS, True),
}


def _iris():
    from sklearn.datasets import load_iris

    rows, species = load_iris(return_X_y=True)
    return rows.astype(np.float32), species


def train_classifiers(folder: Path) -> None:
    """One small classifier per framework on iris (cancer for the binary booster), seeded."""
    import catboost as cb
    import joblib
    import lightgbm as lgb
    import torch
    import xgboost as xgb
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    folder.mkdir(parents=True, exist_ok=True)
    rows, species = _iris()
    names = np.array(FLOWERS)[species]
    joblib.dump(LogisticRegression(max_iter=500).fit(rows, names), folder / "sk_logistic.joblib")
    xgb.train({"objective": "binary:logistic", "nthread": 1, "seed": 0}, xgb.DMatrix(*load_breast_cancer(return_X_y=True)),
              5).save_model(folder / "xgb_booster_binary.json")
    joblib.dump(xgb.XGBClassifier(n_estimators=5, n_jobs=1, random_state=0).fit(rows, species), folder / "xgb_wrapper.joblib")
    quiet = {"verbose": -1, "num_threads": 1, "seed": 0, "deterministic": True, "min_data_in_leaf": 5}
    lgb.train({**quiet, "objective": "multiclass", "num_class": 3}, lgb.Dataset(rows, species), 5).save_model(
        folder / "lgb_booster.txt")
    joblib.dump(lgb.LGBMClassifier(n_estimators=5, min_child_samples=5, verbose=-1, n_jobs=1, random_state=0).fit(rows, names),
                folder / "lgb_wrapper.joblib")
    cb.CatBoostClassifier(iterations=10, depth=3, verbose=0, random_seed=0, thread_count=1, allow_writing_files=False).fit(
        rows, names).save_model(str(folder / "cb_classifier.cbm"))
    _keras_softmax(folder, rows, species)
    torch.manual_seed(0)
    logits = torch.nn.Linear(4, 3).eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(logits, (torch.randn(2, 4),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(folder / "torch_logits.pt2"))
    for name in ("keras_softmax", "torch_logits"):
        (folder / f"{name}.yaml").write_text("labels: [" + ", ".join(FLOWERS) + "]\n")


def _keras_softmax(folder: Path, rows: np.ndarray, species: np.ndarray) -> None:
    import keras

    keras.utils.set_random_seed(0)
    features = keras.Input((4,), name="features")
    model = keras.Model(features, keras.layers.Dense(3, activation="softmax", name="probabilities")(features))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(rows, species, epochs=2, verbose=0)
    model.save(folder / "keras_softmax.keras")


@pytest.fixture(scope="module")
def classifiers_build(tmp_path_factory):
    """(models folder, repository, results by name): every classifier built to its default format."""
    models = tmp_path_factory.mktemp("classifiers") / "models"
    train_classifiers(models)
    repo = tmp_path_factory.mktemp("classifiers-repo") / "repo"
    results = build_repository(models, repo, BuildOptions(allow_pickle=True))
    return models, repo, {r.name: r for r in results}


def _labelled(repo: Path, name: str) -> list[tuple[str, str]]:
    return [(o.name, o.label_filename) for o in configs.read(repo / name).output if o.label_filename]


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_every_classifier_entry_has_labels_on_its_scores(classifiers_build, name):
    _, repo, results = classifiers_build
    framework, labels, _ = CLASSIFIERS[name]
    result = results[name]
    assert (result.status, result.framework) == ("OK", framework), result.reason
    assert (repo / name / "labels.txt").read_text().split() == labels
    [(output, filename)] = _labelled(repo, name)
    assert filename == "labels.txt"
    [spec] = [s for s in result.signature.outputs if s.name == output]
    assert spec.dtype.kind == "f" and spec.shape[-1] == len(labels)


@pytest.mark.parametrize("name", ["xgb_booster_binary", "lgb_booster"])
def test_tree_boosters_built_for_fil_get_the_same_labels(tmp_path, classifiers_build, name):
    models = tmp_path / "models"
    models.mkdir()
    [source] = classifiers_build[0].glob(f"{name}.*")
    (models / source.name).write_bytes(source.read_bytes())
    [result] = build_repository(models, tmp_path / "repo", BuildOptions(format="fil"))
    assert (result.status, result.format) == ("OK", "fil"), result.reason
    assert (tmp_path / "repo" / name / "labels.txt").read_text().split() == CLASSIFIERS[name][1]
    assert _labelled(tmp_path / "repo", name) == [("output__0", "labels.txt")]


def test_boosters_that_answer_no_probabilities_get_no_labels(tmp_path):
    import xgboost as xgb

    rows, species = _iris()
    models = tmp_path / "models"
    models.mkdir()
    xgb.train({"objective": "reg:squarederror", "nthread": 1}, xgb.DMatrix(rows, species), 3).save_model(models / "reg.json")
    xgb.train({"objective": "reg:logistic", "nthread": 1}, xgb.DMatrix(rows, species == 0), 3).save_model(models / "share.json")
    # FIL: onnxmltools answers reg:logistic wrongly (verification refuses it)
    results = build_repository(models, tmp_path / "repo", BuildOptions(format="fil"))
    assert {r.name: r.status for r in results} == {"reg": "OK", "share": "OK"}, [r.reason for r in results]
    assert not list((tmp_path / "repo").glob("*/labels.txt"))


def _rows_for(name: str) -> np.ndarray:
    from sklearn.datasets import load_breast_cancer

    if name == "xgb_booster_binary":
        return load_breast_cancer().data[::100].astype(np.float32)
    return _iris()[0][::25]


@pytest.mark.slow
def test_triton_infer_shows_probabilities_and_says_when_they_are_a_softmax_of_logits(classifiers_build):
    import torch

    from tritonforge.clients import TritonClient, format_text
    from tritonforge.serving.server import serve

    models, repo, _ = classifiers_build
    with serve(repo, control_mode="explicit", load_models=tuple(CLASSIFIERS)) as server:
        with TritonClient(server.http_url.removeprefix("http://")) as client:
            for name, (_, labels, logits) in CLASSIFIERS.items():
                spec = client.spec(name)
                [output] = spec.labelled_outputs
                arrays = {spec.inputs[0].name: _rows_for(name)}
                every = client.infer(name, arrays, top_k=len(labels))
                for row in every.classes[output]:
                    scores = [c.score for c in row]
                    assert all(0 <= s <= 1 for s in scores) and abs(sum(scores) - 1) < 1e-3, (name, scores)
                    assert sorted(c.label for c in row) == sorted(labels), (name, row)
                assert every.softmax == ((output,) if logits else ()), name
                top = client.infer(name, arrays, top_k=2)
                assert [[c.index for c in row] for row in top.classes[output]] == [
                    [c.index for c in row[:2]] for row in every.classes[output]]
                assert ("softmax of the model's logits" in format_text(top)) == logits, name
            # the torch entry's probabilities are the softmax of the logits torch computes
            rows = _rows_for("torch_logits")
            program = torch.export.load(str(models / "torch_logits.pt2")).module()
            with torch.no_grad():
                expected = torch.softmax(program(torch.from_numpy(rows)), dim=1).numpy()
            [output] = client.spec("torch_logits").labelled_outputs
            answer = client.infer("torch_logits", {client.spec("torch_logits").inputs[0].name: rows}, top_k=3)
            for row, probabilities in zip(answer.classes[output], expected):
                np.testing.assert_allclose([c.score for c in row], probabilities[[c.index for c in row]], atol=1e-5)
