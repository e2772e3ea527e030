"""A NaN where the source model cannot take one is a 400 naming the input, not a class picked
from NaN probabilities; a model that routes NaN (trees) answers it, and a sidecar can allow it."""
from __future__ import annotations

import shutil

import joblib
import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from fixtures_serving import load_copy
from tritonforge.builder import BuildOptions, build_repository
from tritonforge.repository.layout import REFUSE_NAN_PARAMETER


@pytest.fixture(scope="module")
def nan_build(tmp_path_factory):
    import xgboost
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("nan")
    models = root / "models"
    models.mkdir()
    features, target = load_iris(return_X_y=True)
    logistic = LogisticRegression(max_iter=500).fit(features, target)
    joblib.dump(logistic, models / "iris_logistic.joblib")
    joblib.dump(logistic, models / "iris_logistic_allowed.joblib")
    (models / "iris_logistic_allowed.yaml").write_text("allow_nan: true\n")
    booster = xgboost.train({"objective": "multi:softprob", "num_class": 3}, xgboost.DMatrix(features, label=target), 5)
    booster.save_model(str(models / "iris_booster.json"))
    results = build_repository(models, root / "repo", BuildOptions(allow_pickle=True))
    assert all(r.ok for r in results), [r.reason for r in results if not r.ok]
    return root / "repo", {"iris_logistic": logistic}


def _parameters(repo, name) -> dict:
    config = text_format.Parse((repo / name / "config.pbtxt").read_text(), mc.ModelConfig())
    return {k: v.string_value for k, v in config.parameters.items()}


@pytest.mark.parametrize("name, refused", [("iris_logistic", "input"), ("iris_logistic_allowed", None), ("iris_booster", None)])
def test_the_config_names_the_inputs_where_nan_is_refused(nan_build, name, refused):
    repo, _ = nan_build
    assert _parameters(repo, name).get(REFUSE_NAN_PARAMETER) == refused


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_serve_repo_answers_a_nan_row_with_400_naming_the_input_and_rows_without_nan_as_before(nan_build, tiny_server,
                                                                                                  tiny_repo, protocol):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    repo, sources = nan_build
    served = load_copy(tiny_server, tiny_repo, repo / "iris_logistic", "nan_iris_logistic")
    module = httpclient if protocol == "http" else grpcclient
    client = module.InferenceServerClient(tiny_server.http_url.removeprefix("http://") if protocol == "http" else tiny_server.grpc_url)
    rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.0, np.nan, 4.5, 1.5]], np.float32)
    tensor = module.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    with pytest.raises(InferenceServerException) as info:
        client.infer(served, [tensor])
    assert "input 'input' has NaN in row 1, which this model cannot take" in info.value.message()
    assert "Traceback" not in info.value.message()
    assert info.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
    clean = rows[:1]
    tensor = module.InferInput("input", list(clean.shape), "FP32")
    tensor.set_data_from_numpy(clean)
    answer = client.infer(served, [tensor]).as_numpy("probabilities")
    np.testing.assert_allclose(answer, sources["iris_logistic"].predict_proba(clean), atol=1e-5)
