"""The users' models' ONNX entries on Triton's real C++ ONNX Runtime backend (r24.10, ONNX Runtime
1.19.2), where ../shared/reference-backends has it: the NGC image loads what build-repo wrote, and
answers like the source at sequence lengths the build never used. serve-repo's Python backend runs
a newer ONNX Runtime; an opset, an op or a config field the C++ backend refuses shows here only."""
from __future__ import annotations

import joblib
import numpy as np
import pytest
import torch

from fixtures_serving import load_copy
from test_dynamic_axes import SEQUENCE_SIDECAR, LastStep, _seeded
from test_users_models import REPEATING, _tfidf_pipeline
from tritonforge.builder import BuildOptions, build_repository

LENGTHS = (5, 17)  # the build verified at its own lengths; neither of these


class BertLogits(torch.nn.Module):
    """transformers' BERT classifier (random init) returning its logits, as users export it."""

    def __init__(self):
        super().__init__()
        from transformers import BertConfig, BertForSequenceClassification

        torch.manual_seed(0)
        config = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64, max_position_embeddings=64, num_labels=3)
        self.bert = BertForSequenceClassification(config).eval()

    def forward(self, input_ids, attention_mask):
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).logits


@pytest.fixture(scope="module")
def users_onnx(tmp_path_factory):
    """A BERT-style .pt2 (dynamic batch and sequence), an LSTM saved as TorchScript with a sidecar
    -1 for its sequence, and a sublinear TF-IDF pipeline, built as ONNX entries."""
    root = tmp_path_factory.mktemp("reference_users")
    models = root / "models"
    models.mkdir()
    bert = BertLogits().eval()
    ids = torch.randint(1, 120, (2, 6))
    batch, sequence = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("sequence", min=2, max=64)
    with torch.no_grad():
        program = torch.export.export(bert, (ids, torch.ones_like(ids)), strict=False,
                                      dynamic_shapes={"input_ids": {0: batch, 1: sequence},
                                                      "attention_mask": {0: batch, 1: sequence}})
    torch.export.save(program, str(models / "bert_style.pt2"))
    lstm = _seeded(LastStep, 0)
    torch.jit.script(lstm).save(str(models / "lstm_series.pt"))
    (models / "lstm_series.yaml").write_text(SEQUENCE_SIDECAR)
    tfidf = _tfidf_pipeline()
    joblib.dump(tfidf, models / "reviews_tfidf.joblib")
    results = {r.name: r for r in build_repository(models, root / "repo", BuildOptions(allow_pickle=True))}
    for result in results.values():
        assert result.status == "OK", result.reason
        assert result.format == "onnx", result
    return root / "repo", {"bert_style": bert, "lstm_series": lstm, "reviews_tfidf": tfidf}


def _ask(server, name: str, inputs: dict[str, np.ndarray], output: str) -> np.ndarray:
    import tritonclient.http as http

    tensors = []
    for key, value in inputs.items():
        kind = {"f": "FP32", "i": "INT64", "O": "BYTES"}[value.dtype.kind]
        tensor = http.InferInput(key, list(value.shape), kind)
        tensor.set_data_from_numpy(value)
        tensors.append(tensor)
    return server.http_client().infer(name, tensors).as_numpy(output)


def _tokens(length: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(length)
    ids = rng.integers(1, 120, (3, length)).astype(np.int64)
    mask = np.ones((3, length), np.int64)
    mask[1, length // 2:] = 0  # a padded row
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.slow
@pytest.mark.parametrize("length", LENGTHS)
def test_the_bert_style_encoder_loads_on_the_cpp_backend_and_answers_like_torch(users_onnx, reference_server, length):
    repo, sources = users_onnx
    served = load_copy(reference_server, reference_server.repo, repo / "bert_style", "ref_bert_style")
    inputs = _tokens(length)
    with torch.no_grad():
        want = sources["bert_style"](*(torch.from_numpy(v) for v in inputs.values())).numpy()
    [output] = reference_server.http_client().get_model_config(served)["output"]
    np.testing.assert_allclose(_ask(reference_server, served, inputs, output["name"]), want, atol=1e-4, rtol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("length", LENGTHS)
def test_the_lstm_loads_on_the_cpp_backend_and_answers_every_length_like_torch(users_onnx, reference_server, length):
    repo, sources = users_onnx
    served = load_copy(reference_server, reference_server.repo, repo / "lstm_series", "ref_lstm_series")
    series = np.random.default_rng(length).standard_normal((2, length, 8)).astype(np.float32)
    config = reference_server.http_client().get_model_config(served)
    with torch.no_grad():
        want = sources["lstm_series"](torch.from_numpy(series)).numpy()
    got = _ask(reference_server, served, {config["input"][0]["name"]: series}, config["output"][0]["name"])
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)


@pytest.mark.slow
def test_the_sublinear_tfidf_pipeline_answers_repeated_words_on_the_cpp_backend(users_onnx, reference_server):
    repo, sources = users_onnx
    served = load_copy(reference_server, reference_server.repo, repo / "reviews_tfidf", "ref_reviews_tfidf")
    got = _ask(reference_server, served, {"text": REPEATING}, "probabilities")
    np.testing.assert_allclose(got, sources["reviews_tfidf"].predict_proba(REPEATING.ravel()), atol=1e-5)
