"""The FIL target: tree models as their own files under ``backend: "fil"``, with the config keys of
the targeted release, verified against the source library and Treelite, served by serve-repo's
FIL stand-in and checked by check-repo over HTTP and gRPC."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2 as mc

from test_build_hostile import tiny_onnx
from tritonforge.builder import BuildOptions, build_repository
from tritonforge.builder.releases import parse_release
from tritonforge.converters.adapters.xgboost import for_fil, intercepts_of
from tritonforge.converters.formats import fil
from tritonforge.errors import BuildError
from tritonforge.repository import config as configs
from tritonforge.repository import read_samples

# name -> (framework, FIL file, classes: 0 for a regressor)
FOREST_MODELS = {
    "xgb_binary": ("xgboost", "xgboost.json", 2),
    "xgb_multi": ("xgboost", "xgboost.json", 3),
    "xgb_regression": ("xgboost", "xgboost.json", 0),
    "xgb_categorical": ("xgboost", "xgboost.json", 0),
    "xgb_intercepts": ("xgboost", "xgboost.json", 3),  # XGBoost 3.1+: one intercept per class
    "xgb_two_targets": ("xgboost", "xgboost.json", 0),  # and one per target
    "lgb_binary": ("lightgbm", "model.txt", 2),
    "lgb_multi": ("lightgbm", "model.txt", 3),
    "lgb_regression": ("lightgbm", "model.txt", 0),
    "lgb_categorical": ("lightgbm", "model.txt", 0),
    "lgb_classifier_wrapper": ("lightgbm", "model.txt", 3),
    "rf_classifier": ("sklearn", "checkpoint.tl", 2),
    "gbr_regressor": ("sklearn", "checkpoint.tl", 0),
}
TARGETS = {"xgb_two_targets": 2}  # regressors of more than one target
RELEASE_KEYS = {  # the keys each release's FIL reads (tritonforge/builder/releases.py cites the docs)
    "24.10": ("output_class", {"algo", "storage_type", "threads_per_tree"}),
    "25.09": ("is_classifier", {"layout"}),
    "26.01": ("is_classifier", {"layout"}),
}
UNBALANCED = np.r_[0:50, 50:70, 100:150]  # iris with fewer versicolor: each class gets its own intercept


def train_forests(folder: Path) -> None:
    """Small forests on scikit-learn's bundled data, seeded and single-threaded."""
    import joblib
    import lightgbm as lgb
    import pandas as pd
    import xgboost as xgb
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier

    folder.mkdir(parents=True, exist_ok=True)
    cancer, iris, diabetes = (load(return_X_y=True) for load in (load_breast_cancer, load_iris, load_diabetes))
    quiet = {"nthread": 1, "seed": 0}
    xgb.train({**quiet, "objective": "binary:logistic", "max_depth": 3}, xgb.DMatrix(*cancer), 20).save_model(folder / "xgb_binary.json")
    xgb.train({**quiet, "objective": "multi:softprob", "num_class": 3}, xgb.DMatrix(*iris), 10).save_model(folder / "xgb_multi.ubj")
    xgb.train(quiet, xgb.DMatrix(*diabetes), 20).save_model(folder / "xgb_regression.json")
    rng = np.random.default_rng(0)
    rooms = pd.DataFrame({"colour": pd.Categorical(rng.choice(["red", "green", "blue"], 300)), "size": rng.random(300)})
    price = (rooms.colour == "green") * 2.0 + rooms["size"]
    xgb.train({**quiet, "tree_method": "hist", "max_cat_to_onehot": 1},
              xgb.DMatrix(rooms, price, enable_categorical=True), 10).save_model(folder / "xgb_categorical.json")
    lgb_quiet = {"verbose": -1, "num_threads": 1, "seed": 0, "deterministic": True}
    lgb.train({**lgb_quiet, "objective": "binary"}, lgb.Dataset(*cancer), 20).save_model(folder / "lgb_binary.txt")
    lgb.train({**lgb_quiet, "objective": "multiclass", "num_class": 3, "min_data_in_leaf": 5},
              lgb.Dataset(*iris), 10).save_model(folder / "lgb_multi.txt")
    lgb.train({**lgb_quiet, "objective": "regression"}, lgb.Dataset(*diabetes), 20).save_model(folder / "lgb_regression.txt")
    codes = np.stack([rng.integers(0, 4, 500), rng.random(500)], axis=1)
    lgb.train({**lgb_quiet, "objective": "regression", "min_data_in_leaf": 5},
              lgb.Dataset(codes, (codes[:, 0] == 2) * 3.0 + codes[:, 1], categorical_feature=[0]), 10
              ).save_model(folder / "lgb_categorical.txt")
    flowers = np.array(["setosa", "versicolor", "virginica"])[iris[1]]
    joblib.dump(lgb.LGBMClassifier(n_estimators=10, min_child_samples=5, **lgb_quiet).fit(iris[0], flowers),
                folder / "lgb_classifier_wrapper.joblib")
    joblib.dump(xgb.XGBClassifier(n_estimators=10, max_depth=3, n_jobs=1, random_state=0).fit(
        iris[0][UNBALANCED], iris[1][UNBALANCED]), folder / "xgb_intercepts.joblib")
    two_targets = np.stack([diabetes[1], diabetes[0][:, 2] * 100], axis=1)
    joblib.dump(xgb.XGBRegressor(n_estimators=10, max_depth=3, n_jobs=1, random_state=0).fit(diabetes[0], two_targets),
                folder / "xgb_two_targets.joblib")
    joblib.dump(RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0).fit(*cancer), folder / "rf_classifier.joblib")
    joblib.dump(GradientBoostingRegressor(n_estimators=20, random_state=0).fit(*diabetes), folder / "gbr_regressor.joblib")


@pytest.fixture(scope="session")
def forest_models(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("forests") / "models"
    train_forests(folder)
    return folder


@pytest.fixture(scope="session")
def fil_builds(forest_models, tmp_path_factory) -> dict[str, tuple[Path, list]]:
    """The forests built for FIL once per release: release -> (repository, results)."""
    built = {}
    for release in RELEASE_KEYS:
        repo = tmp_path_factory.mktemp(f"fil-{release}") / "repo"
        results = build_repository(forest_models, repo, BuildOptions(format="fil", allow_pickle=True, triton_version=release))
        built[release] = (repo, results)
    return built


@pytest.fixture(scope="session")
def fil_server(fil_builds):
    from tritonforge.serving.server import serve

    repo, _ = fil_builds["24.10"]
    with serve(repo, control_mode="explicit", load_models=("*",)) as server:
        yield server


@pytest.mark.parametrize("release", RELEASE_KEYS)
def test_every_forest_builds_to_a_fil_entry_of_its_own_file(fil_builds, release):
    repo, results = fil_builds[release]
    by_name = {r.name: r for r in results}
    assert set(by_name) == set(FOREST_MODELS)
    for name, (framework, filename, _) in FOREST_MODELS.items():
        result = by_name[name]
        assert (result.status, result.framework, result.format) == ("OK", framework, "fil"), result.reason
        assert (repo / name / "1" / filename).is_file()
        assert all(e.ok for e in result.errors)


@pytest.mark.parametrize("release", RELEASE_KEYS)
def test_configs_name_the_fil_backend_with_the_keys_of_the_release(fil_builds, release):
    repo, _ = fil_builds[release]
    classifier_key, gpu_keys = RELEASE_KEYS[release]
    other_release_keys = {k for r, (c, g) in RELEASE_KEYS.items() if r != release for k in g | {c}} - gpu_keys - {classifier_key}
    for name, (_, filename, classes) in FOREST_MODELS.items():
        config = configs.read(repo / name)
        assert (config.backend, config.platform) == ("fil", "")
        assert [(t.name, t.data_type) for t in config.input] == [(fil.INPUT, mc.TYPE_FP32)]
        assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [
            (fil.OUTPUT, mc.TYPE_FP32, [classes or TARGETS.get(name, 1)])]
        parameters = {k: v.string_value for k, v in config.parameters.items()}
        assert parameters["model_type"] == fil.MODEL_TYPES[filename]
        assert parameters[classifier_key] == ("true" if classes else "false")
        assert parameters.get("predict_proba") == ("true" if classes else None)
        assert config.dynamic_batching.preferred_batch_size
        gpu = configs.read_variant(repo / name, "gpu")
        assert [g.kind for g in gpu.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
        assert [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_AUTO]
        assert gpu_keys <= set(gpu.parameters) and not other_release_keys & set(gpu.parameters), name
        assert not gpu_keys & set(config.parameters)  # GPU-only keys stay out of the portable config
        assert parse_release(release).rules.fil_classifier_key == classifier_key


def test_categorical_features_travel_as_codes_and_match_the_source(fil_builds):
    repo, results = fil_builds["24.10"]
    model = json.loads((repo / "xgb_categorical" / "1" / "xgboost.json").read_text())["learner"]
    assert "cats" not in model["gradient_booster"]["model"] and model["feature_types"][0] == "c"
    samples = read_samples(repo / "xgb_categorical" / "1" / "samples.npz")
    codes = samples.inputs[fil.INPUT][:, 0]
    assert set(codes[~np.isnan(codes)]) <= {0.0, 1.0, 2.0}  # red, green, blue as the booster numbered them
    # green (code 1) adds 2 to the price: the served rows show the split the source learned.
    green = samples.outputs[fil.OUTPUT][codes == 1, 0]
    others = samples.outputs[fil.OUTPUT][(codes == 0) | (codes == 2), 0]
    assert green.mean() - others.mean() > 1.0


INTERCEPT_MODELS = {"xgb_intercepts": "predict_proba", "xgb_two_targets": "predict"}  # name -> the answer FIL gives


def _source_rows(name: str) -> np.ndarray:
    from sklearn.datasets import load_diabetes, load_iris

    rows = load_iris().data[UNBALANCED] if name == "xgb_intercepts" else load_diabetes().data
    return rows.astype(np.float32)


def _assert_answers_like_xgboost(artifact: Path, name: str, source) -> None:
    """The FIL stand-in and Treelite's predictor (what FIL compiles from) on the artifact, against the source."""
    rows = _source_rows(name)
    method = INTERCEPT_MODELS[name]
    expected = fil.as_fil_output(getattr(source, method)(rows), len(rows), method == "predict_proba")
    np.testing.assert_allclose(fil.Forest(artifact)(rows), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fil.treelite_predictor(artifact)({fil.INPUT: rows})[fil.OUTPUT], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", INTERCEPT_MODELS)
def test_xgboost_3_intercepts_fold_into_trees_before_26_01(fil_builds, forest_models, name):
    import joblib

    source = joblib.load(forest_models / f"{name}.joblib")
    assert len(set(intercepts_of(json.loads(source.get_booster().save_raw("json"))))) > 1  # the case under test
    for release in ("24.10", "25.09"):
        assert parse_release(release).rules.fil_intercepts == "folded"
        artifact = fil_builds[release][0] / name / "1" / "xgboost.json"
        assert len(intercepts_of(json.loads(artifact.read_text()))) == 1  # a scalar, which Treelite 4.4 reads
        _assert_answers_like_xgboost(artifact, name, source)


@pytest.mark.parametrize("name", INTERCEPT_MODELS)
def test_xgboost_3_intercepts_stay_native_from_26_01(tmp_path, forest_models, name):
    import joblib

    from tritonforge.converters.adapters.xgboost import XGBoostAdapter
    from tritonforge.converters.probe import FileProbe

    rules = parse_release("26.01").rules
    assert rules.fil_intercepts == "native"
    adapter = XGBoostAdapter()
    model = adapter.load(FileProbe(forest_models / f"{name}.joblib", True), None)
    artifact = tmp_path / "xgboost.json"
    adapter.convert(model, None, "fil", artifact, rules=rules)
    saved = intercepts_of(json.loads(artifact.read_text()))
    assert saved == intercepts_of(json.loads(model.booster.save_raw("json"))) and len(set(saved)) > 1
    _assert_answers_like_xgboost(artifact, name, joblib.load(forest_models / f"{name}.joblib"))


def test_a_dart_booster_folds_its_intercepts_through_its_tree_weights(tmp_path):
    import xgboost as xgb
    from sklearn.datasets import load_iris

    rows, classes = load_iris(return_X_y=True)
    booster = xgb.train({"booster": "dart", "objective": "multi:softprob", "num_class": 3, "nthread": 1, "seed": 0,
                         "rate_drop": 0.5, "one_drop": 1}, xgb.DMatrix(rows[UNBALANCED], classes[UNBALANCED]), 4)
    saved = json.loads(booster.save_raw("json"))
    assert len(set(intercepts_of(saved))) > 1 and set(saved["learner"]["gradient_booster"]["weight_drop"]) != {1.0}
    artifact = tmp_path / "xgboost.json"
    artifact.write_text(json.dumps(for_fil(saved)))
    expected = booster.predict(xgb.DMatrix(rows))
    np.testing.assert_allclose(fil.Forest(artifact)(rows), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fil.treelite_predictor(artifact)({fil.INPUT: rows.astype(np.float32)})[fil.OUTPUT], expected,
                               rtol=1e-5, atol=1e-6)


def test_vector_leaf_trees_with_intercepts_per_target_are_refused_before_26_01():
    import xgboost as xgb
    from sklearn.datasets import load_diabetes

    rows, target = load_diabetes(return_X_y=True)
    booster = xgb.train({"multi_strategy": "multi_output_tree", "tree_method": "hist", "nthread": 1},
                        xgb.DMatrix(rows, np.stack([target, target / 10 + 5], axis=1)), 2)
    with pytest.raises(BuildError, match="vector-leaf trees") as refused:
        for_fil(json.loads(booster.save_raw("json")))
    assert "\n" not in str(refused.value)


CLASS_INDEX = fil.FilFormat().for_settings(fil.FilSettings("class_index"))
CLASS_INDEX_MODELS = ("xgb_binary", "xgb_intercepts", "lgb_multi", "lgb_classifier_wrapper")

FIL_SETTINGS = [  # (a sidecar's fil: group, the output it asks for)
    (None, "probabilities"),
    ({}, "probabilities"),
    ({"output": "probabilities"}, "probabilities"),
    ({"output": "class_index"}, "class_index"),
]
FIL_SETTINGS_REFUSED = [  # (a sidecar's fil: group, the one line it gets)
    ("class_index", "m.yaml: 'fil' must be a mapping such as {output: class_index}, got 'class_index'"),
    ({"output": "labels"}, "m.yaml: 'fil.output' must be one of probabilities, class_index, got 'labels'"),
    ({"threshold": 0.3}, "m.yaml: 'fil' has unknown key 'threshold' (allowed: output)"),
]


@pytest.mark.parametrize("raw, output", FIL_SETTINGS)
def test_fil_settings_parse(raw, output):
    assert fil.parse_fil_settings("m.yaml", raw) == fil.FilSettings(output)


@pytest.mark.parametrize("raw, message", FIL_SETTINGS_REFUSED)
def test_bad_fil_settings_are_refused_in_one_line(raw, message):
    with pytest.raises(BuildError) as refused:
        fil.parse_fil_settings("m.yaml", raw)
    assert str(refused.value) == message


@pytest.mark.parametrize("release", RELEASE_KEYS)
def test_class_index_output_is_predict_proba_false_under_the_release_classifier_key(fil_builds, release):
    repo, _ = fil_builds[release]
    rules, classifier_key = parse_release(release).rules, RELEASE_KEYS[release][0]
    for name in CLASS_INDEX_MODELS:
        artifact = repo / name / "1" / FOREST_MODELS[name][1]
        assert CLASS_INDEX.config_parameters(artifact, rules) == {
            "model_type": fil.MODEL_TYPES[artifact.name], classifier_key: "true", "predict_proba": "false"}
        assert CLASS_INDEX.read_signature(artifact, None).outputs[0].shape == (-1, 1)
    regressor = repo / "xgb_regression" / "1" / "xgboost.json"  # a regressor answers its value either way
    assert CLASS_INDEX.config_parameters(regressor, rules) == fil.FilFormat().config_parameters(regressor, rules)
    assert CLASS_INDEX.read_signature(regressor, None) == fil.FilFormat().read_signature(regressor, None)


def _class_rows(name: str) -> dict[str, np.ndarray]:
    """Rows of the data the classifier learned, so the answers reach every class."""
    from sklearn.datasets import load_breast_cancer, load_iris

    rows = load_breast_cancer().data if name == "xgb_binary" else load_iris().data
    return {fil.INPUT: rows.astype(np.float32)}


@pytest.mark.parametrize("name", CLASS_INDEX_MODELS)
def test_class_index_output_is_verified_as_the_likeliest_class_of_the_source(fil_builds, forest_models, name):
    from tritonforge.converters import REGISTRY
    from tritonforge.converters.probe import FileProbe

    artifact, rows = fil_builds["24.10"][0] / name / "1" / FOREST_MODELS[name][1], _class_rows(name)
    [source] = forest_models.glob(f"{name}.*")
    probe = FileProbe(source, True)
    adapter = REGISTRY.detect(probe)
    model = adapter.load(probe, None)
    probabilities = adapter.reference(model, rows, fil.FilFormat().read_signature(artifact, None))[fil.OUTPUT]
    indices = probabilities.argmax(axis=1).astype(np.float32).reshape(-1, 1)
    assert set(indices.ravel()) == set(range(FOREST_MODELS[name][2]))  # the rows reach every class
    np.testing.assert_array_equal(adapter.reference(model, rows, CLASS_INDEX.read_signature(artifact, None))[fil.OUTPUT],
                                  indices)
    np.testing.assert_array_equal(CLASS_INDEX.runner(artifact)(rows)[fil.OUTPUT], indices)
    [(checker, cross)] = CLASS_INDEX.cross_checks(artifact)
    np.testing.assert_array_equal(cross(rows)[fil.OUTPUT], indices)


@pytest.mark.slow
def test_served_class_index_entries_answer_the_likeliest_class(fil_builds, tmp_path):
    """The configs CLASS_INDEX writes (predict_proba false, one output column) load in serve-repo's FIL
    stand-in, which answers the class index of every sample row."""
    import shutil

    import tritonclient.http as http

    from tritonforge.serving.server import serve

    repo = tmp_path / "repo"
    for name in CLASS_INDEX_MODELS:
        built = fil_builds["24.10"][0] / name
        shutil.copytree(built, repo / name)
        parameters = CLASS_INDEX.config_parameters(built / "1" / FOREST_MODELS[name][1], parse_release("24.10").rules)
        for path in [repo / name / "config.pbtxt", *(repo / name / "configs").glob("*.pbtxt")]:  # and per-host variants
            config = configs.read(path)
            for key, value in parameters.items():
                config.parameters[key].string_value = value
            config.output[0].dims[:] = [1]
            config.output[0].label_filename = ""  # the classification extension needs a score per class
            configs.write(path, config)
    with serve(repo, control_mode="explicit", load_models=("*",)) as server:
        client = http.InferenceServerClient(server.http_url.removeprefix("http://"))
        for name in CLASS_INDEX_MODELS:
            rows = _class_rows(name)[fil.INPUT][::10]  # within max_batch_size (64)
            tensor = http.InferInput(fil.INPUT, list(rows.shape), "FP32")
            tensor.set_data_from_numpy(rows)
            answer = client.infer(name, [tensor]).as_numpy(fil.OUTPUT)
            probabilities = fil.FilFormat().runner(repo / name / "1" / FOREST_MODELS[name][1])({fil.INPUT: rows})[fil.OUTPUT]
            assert answer.shape == (len(rows), 1) and len(set(answer.ravel())) == FOREST_MODELS[name][2]
            np.testing.assert_array_equal(answer, probabilities.argmax(axis=1).reshape(-1, 1).astype(np.float32))


def test_classifier_labels_ride_on_the_probabilities(fil_builds):
    repo, _ = fil_builds["24.10"]
    assert (repo / "lgb_classifier_wrapper" / "labels.txt").read_text().split() == ["setosa", "versicolor", "virginica"]
    [output] = configs.read(repo / "lgb_classifier_wrapper").output
    assert output.label_filename == "labels.txt"


@pytest.mark.slow
def test_check_repo_passes_every_fil_entry_over_http_and_grpc(fil_server, fil_builds):
    from tritonforge.serving.check import check_repository

    repo, _ = fil_builds["24.10"]
    rows = check_repository(repo, http_url=fil_server.http_url, grpc_url=fil_server.grpc_url)
    assert {(r.model, r.protocol) for r in rows} == {(m, p) for m in FOREST_MODELS for p in ("http", "grpc")}
    assert all(r.ok for r in rows), [r for r in rows if not r.ok]


@pytest.mark.slow
def test_served_probabilities_and_labels_match_the_source_model(fil_server, forest_models):
    import joblib
    import tritonclient.http as http
    from sklearn.datasets import load_iris

    flowers = load_iris().data[[0, 60, 120]].astype(np.float32)
    source = joblib.load(forest_models / "lgb_classifier_wrapper.joblib")
    client = http.InferenceServerClient(fil_server.http_url.removeprefix("http://"))
    tensor = http.InferInput(fil.INPUT, list(flowers.shape), "FP32")
    tensor.set_data_from_numpy(flowers)
    answer = client.infer("lgb_classifier_wrapper", [tensor], outputs=[http.InferRequestedOutput(fil.OUTPUT)])
    np.testing.assert_allclose(answer.as_numpy(fil.OUTPUT), source.predict_proba(flowers), atol=1e-5)
    top = client.infer("lgb_classifier_wrapper", [tensor], outputs=[http.InferRequestedOutput(fil.OUTPUT, class_count=1)])
    assert [row[0].decode().split(":")[2] for row in top.as_numpy(fil.OUTPUT)] == ["setosa", "versicolor", "virginica"]


def _one_model(tmp_path: Path, make, name: str, sidecar: str = "", **options):
    models = tmp_path / "models"
    models.mkdir()
    path = make(models)
    if sidecar:
        (models / f"{name}.yaml").write_text(sidecar)
    [result] = build_repository(models, tmp_path / "repo", BuildOptions(allow_pickle=True, **options))
    return result, path


def _onnx(models):
    tiny_onnx(models / "linear.onnx")
    return models / "linear.onnx"


def _logistic(models):
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    joblib.dump(LogisticRegression(max_iter=200).fit(*load_iris(return_X_y=True)), models / "logistic.joblib")


def _softmax_booster(models):
    import xgboost as xgb
    from sklearn.datasets import load_iris

    xgb.train({"objective": "multi:softmax", "num_class": 3, "nthread": 1}, xgb.DMatrix(*load_iris(return_X_y=True)),
              3).save_model(models / "softmax.json")


REFUSALS = [  # (model, sidecar, format option, words the one line must hold)
    ("linear", _onnx, "format: fil\n", None, "format 'fil' is not available for onnx models (available: onnx)"),
    ("logistic", _logistic, "", "fil", "FIL serves tree ensembles"),
    ("softmax", _softmax_booster, "", "fil", "multi:softmax booster answers class indices"),
]


@pytest.mark.parametrize("name, make, sidecar, fmt, words", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_fil_on_a_model_it_cannot_serve_is_refused_in_one_line(tmp_path, name, make, sidecar, fmt, words):
    result, _ = _one_model(tmp_path, make, name, sidecar, **({"format": fmt} if fmt else {}))
    assert result.status == "FAILED" and words in result.reason and "\n" not in result.reason
    assert not (tmp_path / "repo" / name).exists()


def test_categorical_xgboost_on_onnx_points_to_fil(tmp_path, forest_models):
    models = tmp_path / "models"
    models.mkdir()
    (models / "xgb_categorical.json").write_bytes((forest_models / "xgb_categorical.json").read_bytes())
    [result] = build_repository(models, tmp_path / "repo", BuildOptions())
    assert result.status == "FAILED" and "--format fil" in result.reason


@pytest.mark.parametrize("name", ["lgb_binary", "lgb_multi", "lgb_regression"])
def test_lightgbm_builds_to_onnx_too(tmp_path, forest_models, name):
    models = tmp_path / "models"
    models.mkdir()
    (models / f"{name}.txt").write_bytes((forest_models / f"{name}.txt").read_bytes())
    [result] = build_repository(models, tmp_path / "repo", BuildOptions())
    assert (result.status, result.framework, result.format) == ("OK", "lightgbm", "onnx"), result.reason


def test_a_tabular_ensemble_sits_in_front_of_a_fil_entry(tmp_path, forest_models):
    models = tmp_path / "models"
    models.mkdir()
    (models / "lgb_multi.txt").write_bytes((forest_models / "lgb_multi.txt").read_bytes())
    (models / "lgb_multi.yaml").write_text("format: fil\nlabels: [setosa, versicolor, virginica]\n"
                                           "preprocess: {step: tabular}\npostprocess: {step: classify, top_k: 2}\n")
    results = {r.name: r for r in build_repository(models, tmp_path / "repo", BuildOptions())}
    assert {name: r.status for name, r in results.items()} == {
        "lgb_multi": "OK", "lgb_multi_ensemble": "OK", "lgb_multi_preprocess": "OK"}  # classify: no Python step
    assert results["lgb_multi_ensemble"].errors and all(e.ok for e in results["lgb_multi_ensemble"].errors)
    steps = {s.model_name for s in configs.read(tmp_path / "repo" / "lgb_multi_ensemble").ensemble_scheduling.step}
    assert "lgb_multi" in steps


@pytest.mark.parametrize("release", ["24.10", "26.01"])
def test_a_sidecar_fil_group_builds_a_class_index_entry_without_labels(tmp_path, release):
    """The sidecar's ``fil: {output: class_index}`` reaches the build: one output column, predict_proba
    false, the release's own classifier key, no labels file, verified against the source's likeliest class."""
    import xgboost as xgb
    from sklearn.datasets import load_iris

    models = tmp_path / "models"
    models.mkdir()
    features, target = load_iris(return_X_y=True)
    booster = xgb.train({"objective": "multi:softprob", "num_class": 3, "nthread": 1}, xgb.DMatrix(features, label=target), 5)
    booster.save_model(str(models / "iris_index.json"))
    (models / "iris_index.yaml").write_text("format: fil\nfil: {output: class_index}\n")
    [result] = build_repository(models, tmp_path / "repo", BuildOptions(triton_version=release))
    assert result.status == "OK", result.reason
    assert result.signature.outputs[0].shape == (-1, 1)
    config = configs.read(tmp_path / "repo" / "iris_index" / "config.pbtxt")
    parameters = {k: v.string_value for k, v in config.parameters.items()}
    assert parameters["predict_proba"] == "false" and parameters[RELEASE_KEYS.get(release, ("is_classifier",))[0]] == "true"
    assert not (tmp_path / "repo" / "iris_index" / "labels.txt").exists()


def test_a_bad_sidecar_fil_group_fails_the_model_naming_the_sidecar(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    tiny_onnx_forest = models / "m.json"
    import xgboost as xgb

    xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(np.eye(4), label=[0, 1, 0, 1]), 2).save_model(str(tiny_onnx_forest))
    (models / "m.yaml").write_text("format: fil\nfil: {output: labels}\n")
    [result] = build_repository(models, tmp_path / "repo")
    assert result.status == "FAILED" and "m.yaml: 'fil.output' must be one of probabilities, class_index" in result.reason
