"""Ensembles: wired and checked at build time, served end to end, and bad payloads answered with 400s."""
from __future__ import annotations

import io
from copy import deepcopy

import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from tritonforge.builder import configure
from tritonforge.repository import config as configs
from tritonforge.errors import BuildError
from tritonforge.repository import Signature, TensorSpec
from tritonforge.ensembles import wiring
from tritonforge.ensembles.library import STEPS, ModelFacts, make_step, top_classes


def read(repo, name):
    return configs.read(repo / name / "config.pbtxt")


@pytest.mark.parametrize("ensemble, chain, scores", [
    ("churn_pipeline_ensemble", ["churn_pipeline_preprocess", "churn_pipeline"], "probabilities"),
    ("digits_cnn_ensemble", ["digits_cnn_preprocess", "digits_cnn"], "digit"),
])
def test_ensemble_is_one_parsing_step_then_the_model_answering_labelled_scores(built_examples_repo, ensemble, chain, scores):
    config = read(built_examples_repo, ensemble)
    assert config.platform == "ensemble" and not config.instance_group
    # classify is no Python step: Triton's classification extension names the classes from the labels file.
    assert [s.model_name for s in config.ensemble_scheduling.step] == chain
    assert [t.name for t in config.input] == ["RAW"] and [t.name for t in config.output] == [scores]
    assert config.output[0].label_filename == "labels.txt"
    model = chain[-1]
    assert (built_examples_repo / ensemble / "labels.txt").read_text() == (built_examples_repo / model / "labels.txt").read_text()
    assert config.parameters["tritonforge_top_k"].string_value == {"churn_pipeline": "2", "digits_cnn": "3"}[model]
    members = {name: read(built_examples_repo, name) for name in chain}
    assert all(config.max_batch_size <= m.max_batch_size for m in members.values())
    wiring.check(config, members)  # the repository's own files pass the build-time check
    assert not (built_examples_repo / f"{model}_postprocess").exists()


@pytest.mark.parametrize("step", ["churn_pipeline_preprocess", "digits_cnn_preprocess"])
def test_steps_are_batched_python_models_on_cpu(built_examples_repo, step):
    config = read(built_examples_repo, step)
    assert config.backend == "python" and config.HasField("dynamic_batching")
    assert [g.kind for g in config.instance_group] == [config.instance_group[0].KIND_CPU]
    assert (built_examples_repo / step / "1" / "model.py").is_file()


def _break_dtype(ensemble, members):
    members["m_preprocess"].output[0].data_type = configs.data_type(np.dtype("float64"))


def _break_dims(ensemble, members):
    members["m"].input[0].dims[0] = 5


def _too_big_batch(ensemble, members):
    ensemble.max_batch_size = 128


def _instance_group(ensemble, members):
    ensemble.instance_group.add()


def _unfed_input(ensemble, members):
    ensemble.ensemble_scheduling.step[1].input_map["x"] = "nowhere"


BROKEN_WIRING = [
    ("dtype mismatch", _break_dtype, "step 'm' input 'x' expects TYPE_FP32 [4], step 'm_preprocess' gives TYPE_FP64 [4]"),
    ("dims mismatch", _break_dims, "step 'm' input 'x' expects TYPE_FP32 [5], step 'm_preprocess' gives TYPE_FP32 [4]"),
    ("ensemble batch larger than a step's", _too_big_batch, "max_batch_size 128 exceeds step 'm_preprocess' (8)"),
    ("ensemble with instance_group", _instance_group, "ensembles take no instance_group"),
    ("input fed by nothing", _unfed_input, "input 'x' is fed by 'nowhere', which no earlier step produces"),
]


SMALL_MODEL = Signature((TensorSpec("x", np.dtype("float32"), (-1, 4)),), (TensorSpec("p", np.dtype("float32"), (-1, 2)),))
SMALL_FACTS = ModelFacts(SMALL_MODEL, ("a", "b", "c", "d"), False, ("no", "yes"), "p", True)


@pytest.fixture()
def small_chain():
    model = configure.build_config("m", "onnxruntime_onnx", SMALL_MODEL, configure.ServingSettings(8, "cpu", 1, "p", False))
    pre = wiring.step_config("m_preprocess", make_step("preprocess", {"step": "tabular"}, SMALL_FACTS, "m.json"), 8)
    classify = make_step("postprocess", {"step": "classify", "top_k": 5}, SMALL_FACTS, "m.json")
    ensemble = wiring.ensemble_config("m_ensemble", [pre, model], classify)
    return ensemble, {c.name: c for c in (pre, model)}


def test_classify_makes_the_models_labelled_scores_the_answer_with_a_default_top_k(small_chain):
    ensemble, _ = small_chain
    assert [(o.name, o.label_filename) for o in ensemble.output] == [("p", "labels.txt")]
    assert ensemble.parameters["tritonforge_top_k"].string_value == "2"  # top_k 5 of two classes


def test_top_classes_are_best_first_as_the_classification_extension_names_them():
    classify = make_step("postprocess", {"step": "classify", "top_k": 1}, SMALL_FACTS, "m.json")
    assert top_classes({"p": np.array([[0.2, 0.8], [0.9, 0.1]], np.float32)}, classify) == [["yes"], ["no"]]


@pytest.mark.parametrize("case, breaks, message", BROKEN_WIRING, ids=[r[0] for r in BROKEN_WIRING])
def test_broken_wiring_is_refused_at_build_time(small_chain, case, breaks, message):
    ensemble, members = deepcopy(small_chain[0]), {k: deepcopy(v) for k, v in small_chain[1].items()}
    breaks(ensemble, members)
    with pytest.raises(BuildError) as error:
        wiring.check(ensemble, members)
    assert message in str(error.value)


IMAGE_MODEL = Signature((TensorSpec("img", np.dtype("float32"), (-1, 3, 32, 32)),), (TensorSpec("logits", np.dtype("float32"), (-1, 5)),))
TABLE_MODEL = Signature((TensorSpec("x", np.dtype("float32"), (-1, 4)),), (TensorSpec("y", np.dtype("float32"), (-1, 1)),))
BAD_STEPS = [
    ("unknown step", "preprocess", {"step": "magic"}, TABLE_MODEL, f"unknown step 'magic' (the library has: {', '.join(STEPS)})"),
    ("postprocess step as preprocess", "preprocess", {"step": "classify"}, TABLE_MODEL, "step 'classify' is a postprocess step"),
    ("no step key", "postprocess", {"top_k": 2}, TABLE_MODEL, "must be a mapping with 'step'"),
    ("classify without labels", "postprocess", {"step": "classify"}, IMAGE_MODEL, "the classify step needs class names"),
    ("image step on a table model", "preprocess", {"step": "image"}, TABLE_MODEL, "the image step needs one 4-D image input"),
    ("mean of the wrong length", "preprocess", {"step": "image", "mean": [0.5]}, IMAGE_MODEL, "'mean' and 'std' need 3 values"),
    ("unknown step setting", "preprocess", {"step": "tabular", "sep": ";"}, TABLE_MODEL, "unknown key 'sep'"),
    ("field names of the wrong count", "preprocess", {"step": "tabular", "fields": ["a"]}, TABLE_MODEL, "1 field names for input 'x' of width 4"),
    ("user step without a file", "preprocess", {"step": "user", "function": "f"}, TABLE_MODEL, "a user step needs 'file'"),
    ("user step file that is not there", "preprocess", {"step": "user", "file": "nope.py", "function": "f"}, TABLE_MODEL,
     "user step file 'nope.py' does not exist"),
]


@pytest.mark.parametrize("case, role, raw, signature, message", BAD_STEPS, ids=[r[0] for r in BAD_STEPS])
def test_bad_step_settings_are_refused_with_the_sidecar_named(case, role, raw, signature, message):
    facts = ModelFacts(signature, None, False, None, None, False)
    with pytest.raises(BuildError) as error:
        make_step(role, raw, facts, "model.yaml")
    assert str(error.value).startswith(f"model.yaml: {role}: ") and message in str(error.value)


LOGITS = ModelFacts(IMAGE_MODEL, None, False, tuple("abcde"), "logits", False)
BAD_CLASSIFY = [
    ("logits, softmax auto", {"step": "classify"}, "output 'logits' gives logits, not probabilities"),
    ("softmax asked for", {"step": "classify", "softmax": True}, "softmax is tensor math that belongs in the model"),
    ("top_k of zero", {"step": "classify", "softmax": False, "top_k": 0}, "'top_k' must be a whole number of at least 1"),
]


@pytest.mark.parametrize("case, raw, message", BAD_CLASSIFY, ids=[r[0] for r in BAD_CLASSIFY])
def test_classify_refuses_what_it_cannot_do_without_a_python_step(case, raw, message):
    with pytest.raises(BuildError, match="^model.yaml: postprocess: ") as error:
        make_step("postprocess", raw, LOGITS, "model.yaml")
    assert message in str(error.value)


def test_logits_can_be_answered_as_scores_when_the_sidecar_says_so():
    classify = make_step("postprocess", {"step": "classify", "softmax": False}, LOGITS, "model.yaml")
    assert (classify.output.name, classify.top_k, classify.labels) == ("logits", 3, tuple("abcde"))


# ---- served ----------------------------------------------------------------------------------
def client_for(server, protocol):
    return server.http_client() if protocol == "http" else server.grpc_client()


def infer_raw(server, protocol, model, raw: np.ndarray, datatype="BYTES", input_name="RAW"):
    module = httpclient if protocol == "http" else grpcclient
    tensor = module.InferInput(input_name, list(raw.shape), datatype)
    tensor.set_data_from_numpy(raw)
    return client_for(server, protocol).infer(model, [tensor])


def classes(server, protocol, model, raw: np.ndarray, output: str, top_k: int):
    """Labels and scores of the ``top_k`` best classes per row, as Triton's classification extension answers."""
    module = httpclient if protocol == "http" else grpcclient
    tensor = module.InferInput("RAW", list(raw.shape), "BYTES")
    tensor.set_data_from_numpy(raw)
    asked = module.InferRequestedOutput(output, class_count=top_k)
    answer = client_for(server, protocol).infer(model, [tensor], outputs=[asked]).as_numpy(output)
    items = [[v.decode().split(":", 2) for v in row] for row in answer.reshape(len(raw), -1)]
    return [[label for _, _, label in row] for row in items], np.array([[float(s) for s, _, _ in row] for row in items])


def as_bytes(rows) -> np.ndarray:
    array = np.empty((len(rows), 1), dtype=object)
    array[:, 0] = [r if isinstance(r, bytes) else r.encode() for r in rows]
    return array


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_tabular_ensemble_answers_like_the_source_pipeline_on_the_same_rows(examples_server, example_models, protocol):
    import joblib

    rows = ['{"city": "nice", "age": 25, "income": 2100}', "paris,61,4200.5", '{"city": "lyon", "age": 44, "income": 3000}']
    labels, scores = classes(examples_server, protocol, "churn_pipeline_ensemble", as_bytes(rows), "probabilities", 2)
    pipeline = joblib.load(example_models / "churn_pipeline.joblib")
    frame = pd.DataFrame({"city": ["nice", "paris", "lyon"], "age": [25.0, 61.0, 44.0], "income": [2100.0, 4200.5, 3000.0]})
    probabilities = pipeline.predict_proba(frame)
    best = np.argsort(-probabilities, axis=1)
    assert labels == [[["stays", "churns"][i] for i in row] for row in best]
    assert np.allclose(scores, np.take_along_axis(probabilities, best, axis=1), atol=1e-5)
    raw = infer_raw(examples_server, protocol, "churn_pipeline_ensemble", as_bytes(rows)).as_numpy("probabilities")
    assert np.allclose(raw, probabilities, atol=1e-5)  # unclassified, the same scores for every class


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_image_ensemble_answers_like_keras_on_the_same_png(examples_server, example_models, protocol):
    import keras

    pixels = np.random.default_rng(3).integers(0, 256, (28, 28), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    labels, scores = classes(examples_server, protocol, "digits_cnn_ensemble", as_bytes([buffer.getvalue()]), "digit", 3)
    model = keras.saving.load_model(example_models / "digits_cnn.keras", compile=False)
    probabilities = np.asarray(model(pixels.reshape(1, 28, 28, 1).astype(np.float32) / 255))[0]
    best = np.argsort(-probabilities)[:3]
    assert labels[0] == [str(i) for i in best]
    assert np.allclose(scores[0], probabilities[best], atol=1e-5)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_user_step_ensemble_answers_like_the_booster_on_the_parsed_lines(examples_server, example_models, protocol):
    import xgboost as xgb

    lines = ["rooms=3 age=12 area=80", "garden=1", "rooms=1 age=3 area=20 floor=4 garden=0 distance=9"]
    served = infer_raw(examples_server, protocol, "house_price_xgb_ensemble", as_bytes(lines), input_name="TEXT").as_numpy("variable")
    booster = xgb.Booster(model_file=str(example_models / "house_price_xgb.ubj"))
    features = np.full((3, 6), np.nan, np.float32)
    features[0, :3] = [3, 12, 80]
    features[1, 4] = 1
    features[2] = [1, 3, 20, 4, 0, 9]
    assert np.allclose(served.reshape(-1), booster.predict(xgb.DMatrix(features, missing=np.nan)), rtol=1e-5, atol=1e-4)


def _png(size=28) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (size, size), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


BAD_PAYLOADS = [
    ("broken JSON", "churn_pipeline_ensemble", as_bytes(['{"city": "nice", "age": 3']), "BYTES", "row 0: not valid JSON"),
    ("line the user step refuses", "house_price_xgb_ensemble", as_bytes(["rooms=3 pool=1"]), "BYTES",
     "row 0: unknown feature 'pool' (known: rooms, age, area, floor, garden, distance)"),
    ("missing field", "churn_pipeline_ensemble", as_bytes(['{"city": "nice", "age": 30}']), "BYTES", "row 0: missing field 'income'"),
    ("wrong type", "churn_pipeline_ensemble", as_bytes(['{"city": "nice", "age": "old", "income": 1}']), "BYTES",
     "row 0: field 'age' must be a number"),
    ("truncated PNG", "digits_cnn_ensemble", as_bytes([_png()[:300]]), "BYTES", "row 0: cannot decode image"),
    ("empty tensor", "churn_pipeline_ensemble", np.empty((0, 1), dtype=object), "BYTES", "string elements for inference input 'RAW'"),
    ("wrong dtype", "churn_pipeline_ensemble", np.zeros((1, 1), np.float32), "FP32", "data-type is 'FP32', but model 'churn_pipeline_ensemble' expects 'BYTES'"),
]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("case, model, payload, datatype, message", BAD_PAYLOADS, ids=[r[0] for r in BAD_PAYLOADS])
def test_bad_payload_gets_a_client_error_and_the_server_keeps_answering(examples_server, protocol, case, model, payload, datatype, message):
    with pytest.raises(InferenceServerException) as error:
        infer_raw(examples_server, protocol, model, payload, datatype, "TEXT" if model.startswith("house") else "RAW")
    status = str(error.value.status())
    assert status in ("400", "StatusCode.INVALID_ARGUMENT"), (status, error.value.message())
    assert message in error.value.message()
    labels, _ = classes(examples_server, protocol, "churn_pipeline_ensemble", as_bytes(["nice,30,2500"]), "probabilities", 2)
    assert labels[0][0] == "stays"  # young and from nice: (age < 35) xor (city == nice) is false
