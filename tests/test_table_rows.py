"""Verification rows that exercise a table model: categories no encoder saw at training (where the
encoder ignores them), NaN where the model takes it, each column's far ends, batches of more than
one; the manifest records what the rows covered. A converter wrong on any of them fails the build."""
from __future__ import annotations

import json
import warnings

import joblib
import numpy as np
import pytest

from tritonforge.builder import BuildOptions, build_repository
from tritonforge.converters.adapters.sklearn import UNSEEN_CATEGORY
from tritonforge.repository import read_samples


def _frame():
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = 300
    frame = pd.DataFrame({"color": rng.choice(["red", "green", "blue", "rare"], rows, p=[0.4, 0.3, 0.28, 0.02]),
                          "size": rng.choice(["S", "M", "L"], rows), "x": rng.standard_normal(rows),
                          "y": rng.standard_normal(rows)})
    return frame, ((frame.color == "red") ^ (frame.x > 0)).astype(int)


def _pipeline(encoders, numeric):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    frame, target = _frame()
    return make_pipeline(ColumnTransformer([*encoders, ("num", numeric, ["x", "y"])]), LogisticRegression()).fit(frame, target)


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    root = tmp_path_factory.mktemp("tables")
    models = root / "models"
    models.mkdir()
    imputed = make_pipeline(SimpleImputer(), StandardScaler())
    saved = {
        # both encoders take categories they never saw; the imputer takes NaN
        "shop": _pipeline([("onehot", OneHotEncoder(handle_unknown="ignore"), ["color"]),
                           ("ordinal", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), ["size"])],
                          imputed),
        # scikit-learn maps an unseen category to the infrequent one; skl2onnx's graph raises on it
        "infrequent": _pipeline([("onehot", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=10),
                                  ["color", "size"])], imputed),
        # handle_unknown='error' and no imputer: scikit-learn itself refuses both, so no row has them
        "strict": _pipeline([("onehot", OneHotEncoder(), ["color", "size"])], StandardScaler()),
    }
    rng = np.random.default_rng(1)
    # scikit-learn's forests route NaN (to the larger child when training saw none); skl2onnx's do not,
    # so their rows carry no NaN (a known gap) and the manifest does not say they did
    saved["forest"] = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(
        rng.standard_normal((100, 4)), rng.integers(0, 2, 100))
    for name, model in saved.items():
        joblib.dump(model, models / f"{name}.joblib")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = {r.name: r for r in build_repository(models, root / "repo", BuildOptions(allow_pickle=True))}
    return root / "repo", results


def _cover(repo, name):
    return json.loads((repo / "manifest.json").read_text())["models"][name]["versions"]["1"]["rows_cover"]


def test_the_rows_carry_unseen_categories_nan_and_extremes_and_the_manifest_says_so(tables):
    repo, results = tables
    assert results["shop"].status == "OK", results["shop"].reason
    rows = read_samples(repo / "shop" / "1" / "samples.npz").inputs
    assert UNSEEN_CATEGORY in rows["color"].ravel() and UNSEEN_CATEGORY in rows["size"].ravel()
    assert np.isnan(rows["x"]).any() and np.isnan(rows["y"]).any()
    assert np.nanmax(rows["x"]) >= 1e6 and np.nanmin(rows["x"]) <= -1e6
    assert _cover(repo, "shop") == ["batch>1", "NaN", "extremes", "unseen categories"]


def test_an_onehot_encoder_that_raises_on_unseen_categories_fails_the_build(tables):
    """Before, its rows held only known categories: reported OK, it then failed every request with a new one."""
    _, results = tables
    failed = results["infrequent"]
    assert failed.status == "FAILED"
    assert failed.reason.startswith("infrequent.joblib: onnx artifact fails on rows sklearn answers "
                                    "(batch>1, NaN, extremes, unseen categories): "), failed.reason
    assert "Unknown Category" in failed.reason


def test_rows_the_model_itself_refuses_are_not_claimed(tables):
    repo, results = tables
    assert results["strict"].status == "OK", results["strict"].reason
    rows = read_samples(repo / "strict" / "1" / "samples.npz").inputs
    assert UNSEEN_CATEGORY not in rows["color"].ravel() and not np.isnan(rows["x"]).any()
    assert _cover(repo, "strict") == ["batch>1", "extremes"]


def test_a_forest_gets_no_nan_row_and_does_not_claim_one(tables):
    """skl2onnx routes NaN through scikit-learn's forests otherwise: a known gap, not a claimed row."""
    _, results = tables
    assert results["forest"].status == "OK", results["forest"].reason
    repo = tables[0]
    assert "NaN" not in _cover(repo, "forest") and "extremes" in _cover(repo, "forest")


def test_booster_rows_carry_nan_and_extremes(tmp_path):
    import xgboost as xgb

    rng = np.random.default_rng(2)
    features = rng.standard_normal((200, 5)).astype(np.float32)
    features[rng.random(features.shape) < 0.1] = np.nan
    booster = xgb.XGBClassifier(n_estimators=8, max_depth=3).fit(features, (np.nan_to_num(features[:, 0]) > 0).astype(int))
    models = tmp_path / "models"
    models.mkdir()
    booster.save_model(models / "booster.json")
    [result] = build_repository(models, tmp_path / "repo", BuildOptions())
    assert result.status == "OK", result.reason
    assert _cover(tmp_path / "repo", "booster") == ["batch>1", "NaN", "extremes"]
