"""HuggingFace folders: built into model entries and text ensembles that answer as transformers'
own pipelines do, over HTTP and gRPC, on the text table (a text past the model's length, an
empty text, non-ASCII text, all of them in one request of mixed lengths, and each alone)."""
from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from fixtures_text import MAX_LENGTH, TEXTS
from tritonforge.repository import config as configs

pytestmark = pytest.mark.slow
PROTOCOLS = ("http", "grpc")
CLASSIFIERS = ("bert_reviews", "roberta_reviews")
LABELS = ["negative", "neutral", "positive"]
ENTRIES = sorted(f"{m}{suffix}" for m in (*CLASSIFIERS, "distil_embed") for suffix in ("", "_preprocess", "_ensemble"))
ATOL = 1e-5


@lru_cache(maxsize=4)
def pipe(folder: str, task: str):
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer, pipeline

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if task == "text-classification":
        return pipeline(task, model=AutoModelForSequenceClassification.from_pretrained(folder), tokenizer=tokenizer)
    return pipeline(task, model=AutoModel.from_pretrained(folder), tokenizer=tokenizer, tokenize_kwargs={"truncation": True})


def pipeline_classes(folder, texts) -> list[list[tuple[str, float]]]:
    answers = pipe(str(folder), "text-classification")(list(texts), top_k=None, truncation=True)
    return [[(a["label"], a["score"]) for a in row] for row in answers]


def pipeline_embeddings(folder, texts) -> np.ndarray:
    """feature-extraction, then mean pooling and unit length (one text per call: no padding to mask)."""
    rows = [np.asarray(pipe(str(folder), "feature-extraction")(t))[0].mean(axis=0) for t in texts]
    return np.stack([r / np.linalg.norm(r) for r in rows])


def client(server, protocol):
    return server.http_client() if protocol == "http" else server.grpc_client()


def infer(server, protocol, model, inputs: dict[str, np.ndarray], output: str, class_count: int = 0) -> np.ndarray:
    module = httpclient if protocol == "http" else grpcclient
    tensors = []
    for name, value in inputs.items():
        tensor = module.InferInput(name, list(value.shape), "BYTES" if value.dtype == object else "INT64")
        tensor.set_data_from_numpy(value)
        tensors.append(tensor)
    asked = module.InferRequestedOutput(output, class_count=class_count) if class_count else module.InferRequestedOutput(output)
    return client(server, protocol).infer(model, tensors, outputs=[asked]).as_numpy(output)


def strings(texts) -> dict[str, np.ndarray]:
    """The ensemble's input: one UTF-8 string per row."""
    array = np.empty((len(texts), 1), dtype=object)
    array[:, 0] = [t.encode("utf-8") if isinstance(t, str) else t for t in texts]
    return {"RAW": array}


def tokens(folder, texts, names) -> dict[str, np.ndarray]:
    from transformers import AutoTokenizer

    encoded = AutoTokenizer.from_pretrained(str(folder))(list(texts), padding=True, truncation=True, return_tensors="np")
    return {n: encoded[n].astype(np.int64) for n in names}


def test_every_entry_builds_and_is_verified(built_text):
    _, results = built_text
    assert sorted(results) == ENTRIES
    assert {n: r.status.name for n, r in results.items()} == {n: "OK" for n in ENTRIES}
    assert all(e.ok for r in results.values() for e in r.errors)


@pytest.mark.parametrize("model, inputs, outputs", [
    ("bert_reviews", ["input_ids", "token_type_ids", "attention_mask"], [("probabilities", [3]), ("logits", [3])]),
    ("roberta_reviews", ["input_ids", "attention_mask"], [("probabilities", [3]), ("logits", [3])]),
    ("distil_embed", ["input_ids", "attention_mask"], [("embedding", [16])]),
])
def test_model_takes_the_tokenizers_arrays_dynamic_in_batch_and_sequence(built_text, model, inputs, outputs):
    config = configs.read(built_text[0] / model / "config.pbtxt")
    assert config.max_batch_size == 16
    assert [(t.name, configs.mc.DataType.Name(t.data_type), list(t.dims)) for t in config.input] == [(n, "TYPE_INT64", [-1]) for n in inputs]
    assert [(t.name, list(t.dims)) for t in config.output] == outputs
    # Triton refuses a warmup with dims -1: the sequence takes the sample row's length.
    [warmup] = config.model_warmup
    assert sorted(warmup.inputs) == sorted(inputs) and all(d > 0 for t in warmup.inputs.values() for d in t.dims)
    if model in CLASSIFIERS:
        assert config.output[0].label_filename == "labels.txt"
        assert (built_text[0] / model / "labels.txt").read_text().split() == LABELS


@pytest.mark.parametrize("model", [*CLASSIFIERS, "distil_embed"])
def test_ensemble_is_the_text_step_with_the_folders_tokenizer_then_the_model(built_text, model):
    repo = built_text[0]
    ensemble = configs.read(repo / f"{model}_ensemble" / "config.pbtxt")
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == [f"{model}_preprocess", model]
    assert [t.name for t in ensemble.input] == ["RAW"]
    step = repo / f"{model}_preprocess" / "1"
    assert (step / "tokenizer.json").is_file() and (step / "model.py").is_file()
    assert (step / "requirements.txt").read_text().split() == ["tokenizers"]
    settings = json.loads(configs.read(repo / f"{model}_preprocess" / "config.pbtxt").parameters["tritonforge_step"].string_value)
    assert settings["max_length"] == MAX_LENGTH and settings["cut_chars"] == 1024  # both tokenizers split at whitespace first


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("model", CLASSIFIERS)
def test_classifier_entry_fed_tokens_answers_the_pipelines_scores(text_server, text_models, model, protocol):
    folder = text_models / model
    names = [t.name for t in configs.read(text_server.repo / model / "config.pbtxt").input]
    probabilities = infer(text_server, protocol, model, tokens(folder, TEXTS, names), "probabilities")
    expected = pipeline_classes(folder, TEXTS)
    for row, answer in zip(probabilities, expected):
        assert np.allclose([row[LABELS.index(label)] for label, _ in answer], [s for _, s in answer], atol=ATOL)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("model", CLASSIFIERS)
@pytest.mark.parametrize("together", [True, False], ids=["one request of mixed lengths", "each text alone"])
def test_classifier_ensemble_fed_strings_answers_as_the_text_classification_pipeline(text_server, text_models, model, protocol, together):
    expected = pipeline_classes(text_models / model, TEXTS)
    batches = [TEXTS] if together else [[t] for t in TEXTS]
    got = []
    for texts in batches:
        answer = infer(text_server, protocol, f"{model}_ensemble", strings(texts), "probabilities", class_count=3)
        got += [[v.decode().split(":", 2) for v in row] for row in answer.reshape(len(texts), -1)]
    assert [[label for _, _, label in row] for row in got] == [[label for label, _ in row] for row in expected]
    assert np.allclose([[float(s) for s, _, _ in row] for row in got], [[s for _, s in row] for row in expected], atol=ATOL)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("together", [True, False], ids=["one request of mixed lengths", "each text alone"])
def test_embedding_ensemble_answers_as_feature_extraction_with_mean_pooling(text_server, text_models, protocol, together):
    expected = pipeline_embeddings(text_models / "distil_embed", TEXTS)
    batches = [TEXTS] if together else [[t] for t in TEXTS]
    got = np.concatenate([infer(text_server, protocol, "distil_embed_ensemble", strings(t), "embedding") for t in batches])
    assert got.shape == (len(TEXTS), 16)
    assert np.allclose(got, expected, atol=ATOL)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_the_long_text_is_cut_at_the_models_length(text_models):
    """The table's long text really is past the model's length (so the tables above test truncation)."""
    from transformers import AutoTokenizer

    for model in (*CLASSIFIERS, "distil_embed"):
        tokenizer = AutoTokenizer.from_pretrained(str(text_models / model))
        assert len(tokenizer(TEXTS[1])["input_ids"]) > MAX_LENGTH
        assert len(tokenizer(TEXTS[1], truncation=True)["input_ids"]) == MAX_LENGTH


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_embedding_entry_fed_a_padded_batch_of_tokens_answers_the_pooled_pipeline(text_server, text_models, protocol):
    folder = text_models / "distil_embed"
    embedding = infer(text_server, protocol, "distil_embed", tokens(folder, TEXTS, ["input_ids", "attention_mask"]), "embedding")
    assert np.allclose(embedding, pipeline_embeddings(folder, TEXTS), atol=ATOL)


def test_check_repo_passes_every_entry_on_its_stored_samples_over_both_protocols(text_server, built_text):
    from tritonforge.serving.check import check_repository

    rows = check_repository(built_text[0], http_url=text_server.http_url, grpc_url=text_server.grpc_url)
    assert {(r.model, r.protocol, r.result) for r in rows} == {
        (m, p, "config-only" if m.endswith("_preprocess") else "ok") for m in ENTRIES for p in PROTOCOLS}
