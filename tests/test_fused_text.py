"""Fused text pipelines (ensembles/fused/text.py): the text step's tokenizer as onnxruntime-extensions
ops in front of the model, one ONNX graph that answers as the Python-step ensemble does.

The tokenizer graph is held to the Python step's own tokens (the step's template, the tokenizers
library) exactly, on the check texts and past the model's length, for every truncation and
padding side; a folder whose tokens the ops do not reproduce is not fused, and the build says on
which text. Built with ``fuse``, served by serve-repo and by Triton's C++ ONNX Runtime backend
(where ../shared/reference-backends has it), the fused entry answers as the ensemble over HTTP and
gRPC."""
from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from fixtures_serving import load_copy
from fixtures_text import MAX_LENGTH, TEXTS
from tritonforge.ensembles.fused import text as fused_text

PROTOCOLS = ("http", "grpc")
ATOL = 1e-5
# What the text step writes for the fixtures' folders (ensembles/library/text.py), one per folder
ROBERTA = {"tokenizer": "tokenizer.json", "max_length": MAX_LENGTH, "max_text_bytes": 131072, "pad_id": 1, "pad_type_id": 0,
           "pad_token": "<pad>", "padding_side": "right", "truncation_side": "right", "cut_chars": 1024,
           "outputs": [{"name": "input_ids", "field": "ids"}, {"name": "attention_mask", "field": "attention_mask"}]}
BERT = {**ROBERTA, "pad_id": 0, "pad_token": "[PAD]",
        "outputs": [{"name": "input_ids", "field": "ids"}, {"name": "token_type_ids", "field": "type_ids"},
                    {"name": "attention_mask", "field": "attention_mask"}]}
# Words of the fixtures' vocabulary with pieces missing (no 'k', 'x', 'z' in its words): the ops
# find pieces of them, then none; the tokenizers library answers such a word as [UNK] alone.
UNKNOWN_WORDS = ("zebra qwerty xylophone unknownword", "the cat sat on a kayak", "tab\there\nnewline")


def spec(folder) -> dict:
    return json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))


def every_text(folder, settings) -> list[str]:
    return list(TEXTS) + fused_text.check_texts(spec(folder), settings)


def step_tokens(folder, settings, texts) -> dict[str, np.ndarray]:
    from tritonforge.ensembles.library.base import load_template

    module = load_template("text")
    tokenizer = module.load_tokenizer(str(folder), settings)
    return module.texts_to_inputs(tokenizer, [t.encode("utf-8") for t in texts], settings)


def graph_tokens(graph, settings, texts) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(graph.SerializeToString(), fused_text.session_options(), providers=["CPUExecutionProvider"])
    names = [o["name"] for o in settings["outputs"]]
    answers = session.run([fused_text.PREFIX + n for n in names], {"RAW": np.array(texts, dtype=object).reshape(-1, 1)})
    return dict(zip(names, answers))


@pytest.mark.parametrize("truncation, padding", [("right", "right"), ("left", "left"), ("right", "left"), ("left", "right")])
def test_roberta_bpe_graph_gives_the_text_steps_tokens_exactly(text_models, truncation, padding):
    folder = text_models / "roberta_reviews"
    settings = {**ROBERTA, "truncation_side": truncation, "padding_side": padding}
    graph = fused_text.tokenizer_graph(spec(folder), settings, 18)
    # RobertaTokenizer: the vocabulary has its <s> </s> <pad> <unk>, not GPT2Tokenizer's <|endoftext|>
    assert [n.op_type for n in graph.graph.node if n.domain == fused_text.DOMAIN] == ["RobertaTokenizer"]
    texts = every_text(folder, settings)
    expected, answer = step_tokens(folder, settings, texts), graph_tokens(graph, settings, texts)
    for name in ("input_ids", "attention_mask"):
        np.testing.assert_array_equal(answer[name], expected[name])
    assert answer["input_ids"].shape[1] == MAX_LENGTH  # the long text is cut to the model's length
    assert fused_text.first_difference(graph, folder / "tokenizer.json", settings, texts) == ""  # and each text alone


def test_wordpiece_graph_answers_a_word_it_cannot_finish_as_unknown_alone(text_models):
    """The WordpieceTokenizer op keeps the pieces it found before a piece it cannot match; the graph
    drops them, so the word is [UNK] alone, as the tokenizers library answers it."""
    folder = text_models / "bert_reviews"
    graph = fused_text.tokenizer_graph(spec(folder), BERT, 18)
    texts = list(TEXTS) + list(UNKNOWN_WORDS)
    answer, expected = graph_tokens(graph, BERT, texts), step_tokens(folder, BERT, texts)
    for name in ("input_ids", "token_type_ids", "attention_mask"):
        np.testing.assert_array_equal(answer[name], expected[name])
    unk = spec(folder)["model"]["vocab"]["[UNK]"]
    assert (answer["input_ids"][len(TEXTS)] == unk).sum() >= 3  # zebra, xylophone, unknownword: one [UNK] each


def test_wordpiece_folder_is_not_fused_and_the_reason_names_the_text(text_models):
    """onnxruntime-extensions' BasicTokenizer leaves DEL and U+FFFD in a word (BERT's normalizer
    removes them) and normalises little beyond Latin-1: the check texts find it."""
    folder = text_models / "bert_reviews"
    graph = fused_text.tokenizer_graph(spec(folder), BERT, 18)
    reason = fused_text.first_difference(graph, folder / "tokenizer.json", BERT, every_text(folder, BERT))
    assert reason.startswith("on text 'control\\x01\\x02chars\\x7f") and "\n" not in reason


def without_roberta_specials(tokenizer: dict) -> None:
    """The ops' own special tokens gone from the vocabulary (another folder's BPE spells them otherwise)."""
    for token in ("<s>", "</s>"):
        tokenizer["model"]["vocab"][f"[{token}]"] = tokenizer["model"]["vocab"].pop(token)
    tokenizer["added_tokens"] = [t for t in tokenizer["added_tokens"] if t["content"] not in ("<s>", "</s>")]


UNFUSABLE = [  # (folder, a change to its tokenizer.json, words the one-line reason has)
    ("roberta_reviews", lambda t: t["model"].update(type="WordLevel"), "no tokenizer op reproduces a 'WordLevel' model"),
    ("roberta_reviews", lambda t: t["model"].update(type="Unigram"), "no tokenizer op reproduces a 'Unigram' model"),
    ("roberta_reviews", lambda t: t["pre_tokenizer"].update(add_prefix_space=True), "ByteLevel pre-tokenizer"),
    ("roberta_reviews", lambda t: t.update(normalizer={"type": "NFC"}), "a byte-level BPE with a normalizer"),
    ("roberta_reviews", lambda t: t.update(post_processor={"type": "Sequence", "processors": []}), "post-processor 'Sequence'"),
    ("roberta_reviews", without_roberta_specials, "neither GPT2Tokenizer's special token <|endoftext|> nor RobertaTokenizer's"),
    ("bert_reviews", lambda t: t.update(pre_tokenizer={"type": "Whitespace"}), "BertNormalizer and BertPreTokenizer"),
]


@pytest.mark.parametrize("folder, change, words", UNFUSABLE, ids=[w.split(" ")[-1] for _, _, w in UNFUSABLE])
def test_a_tokenizer_the_ops_cannot_express_is_refused_in_one_line(text_models, folder, change, words):
    settings = BERT if folder == "bert_reviews" else ROBERTA
    tokenizer = copy.deepcopy(spec(text_models / folder))
    change(tokenizer)
    reason = fused_text.tokenizer_graph(tokenizer, settings, 18)
    assert isinstance(reason, str) and words in reason and "\n" not in reason


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    """A GPT-2-style tokenizer: byte-level BPE, <|endoftext|> its only special token, no special
    tokens around a text (a ByteLevel post-processor)."""
    from fixtures_text import corpus
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.train_from_iterator(corpus(), trainers.BpeTrainer(vocab_size=400, show_progress=False, special_tokens=["<|endoftext|>"],
                                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.decoder = decoders.ByteLevel()
    folder = tmp_path_factory.mktemp("gpt2")
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


@pytest.mark.parametrize("truncation, padding", [("right", "right"), ("left", "left")])
def test_gpt2_style_bpe_graph_gives_the_text_steps_tokens_exactly(gpt2_folder, truncation, padding):
    settings = {**ROBERTA, "pad_id": 0, "pad_token": "<|endoftext|>", "truncation_side": truncation, "padding_side": padding}
    graph = fused_text.tokenizer_graph(spec(gpt2_folder), settings, 18)
    assert [n.op_type for n in graph.graph.node if n.domain == fused_text.DOMAIN] == ["GPT2Tokenizer"]
    texts = every_text(gpt2_folder, settings)
    expected, answer = step_tokens(gpt2_folder, settings, texts), graph_tokens(graph, settings, texts)
    for name in ("input_ids", "attention_mask"):
        np.testing.assert_array_equal(answer[name], expected[name])
    assert fused_text.first_difference(graph, gpt2_folder / "tokenizer.json", settings, texts) == ""


# -------------------------------------------------------------------------------------------------
# Built with fuse, served


@pytest.fixture(scope="session")
def fused_text_build(text_models, tmp_path_factory):
    """The text models built with ``fuse``: (repository, results by name)."""
    from tritonforge.builder import BuildOptions, build_repository

    repo = tmp_path_factory.mktemp("fused_text") / "model_repository"
    results = build_repository(text_models, repo, BuildOptions(max_batch_size=16, fuse=True))
    return repo, {r.name: r for r in results}


@pytest.fixture(scope="session")
def fused_text_server(fused_text_build):
    from tritonforge.serving.server import serve

    repo, results = fused_text_build
    failed = {n: r.reason for n, r in results.items() if r.status.name not in ("OK", "SKIPPED")}
    if failed:
        pytest.fail(f"text models did not build: {failed}")
    with serve(repo, control_mode="none", ready_timeout=600) as server:
        yield server


@pytest.mark.slow
def test_build_writes_the_bpe_fused_entry_and_says_why_not_for_wordpiece(fused_text_build):
    from tritonforge.repository import config as configs

    repo, results = fused_text_build
    assert results["roberta_reviews_ensemble_fused"].status.name == "OK"
    config = configs.read(repo / "roberta_reviews_ensemble_fused" / "config.pbtxt")
    assert config.platform == "onnxruntime_onnx" and [i.name for i in config.input] == ["RAW"]
    assert list(config.model_operations.op_library_filename) == ["libortextensions.so"]
    for name in ("bert_reviews", "distil_embed"):
        result = results[f"{name}_ensemble_fused"]
        assert result.status.name == "SKIPPED" and "on text 'control" in result.reason and "the Python step stays" in result.reason
        assert not (repo / f"{name}_ensemble_fused").exists() and results[f"{name}_ensemble"].status.name == "OK"


def infer(client_module, client, model, texts, output="probabilities", class_count=0) -> np.ndarray:
    raw = np.array([t.encode("utf-8") for t in texts], dtype=object).reshape(-1, 1)
    tensor = client_module.InferInput("RAW", list(raw.shape), "BYTES")
    tensor.set_data_from_numpy(raw)
    asked = client_module.InferRequestedOutput(output, class_count=class_count) if class_count else client_module.InferRequestedOutput(output)
    return client.infer(model, [tensor], outputs=[asked]).as_numpy(output)


def clients(server, protocol):
    return (httpclient, server.http_client()) if protocol == "http" else (grpcclient, server.grpc_client())


@pytest.mark.slow
@pytest.mark.parametrize("together", [True, False], ids=["one-request", "each-alone"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_fused_entry_answers_as_the_python_step_ensemble(fused_text_server, text_models, protocol, together):
    module, client = clients(fused_text_server, protocol)
    texts = every_text(text_models / "roberta_reviews", ROBERTA)
    batches = [texts[i:i + 16] for i in range(0, len(texts), 16)] if together else [[t] for t in texts]
    for batch in batches:
        ensemble = infer(module, client, "roberta_reviews_ensemble", batch)
        fused = infer(module, client, "roberta_reviews_ensemble_fused", batch)
        np.testing.assert_allclose(fused, ensemble, atol=ATOL, rtol=0)
    # Triton's classification extension on both: "score:index:label", the same labels in the same order
    top = {m: infer(module, client, m, texts[:8], class_count=3) for m in ("roberta_reviews_ensemble", "roberta_reviews_ensemble_fused")}
    parsed = {m: [[v.decode().split(":", 1) for v in row] for row in answer] for m, answer in top.items()}
    assert [[i for _, i in row] for row in parsed["roberta_reviews_ensemble_fused"]] == [[i for _, i in row] for row in parsed["roberta_reviews_ensemble"]]
    assert {i.split(":")[1] for row in parsed["roberta_reviews_ensemble_fused"] for _, i in row} == {"negative", "neutral", "positive"}
    np.testing.assert_allclose([[float(p) for p, _ in row] for row in parsed["roberta_reviews_ensemble_fused"]],
                               [[float(p) for p, _ in row] for row in parsed["roberta_reviews_ensemble"]], atol=ATOL)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_fused_entry_on_triton_cpp_onnxruntime_backend(reference_server, fused_text_build, fused_text_server, text_models, protocol):
    """Triton's own C++ ONNX Runtime backend (r24.10, ONNX Runtime 1.19.2) loads the fused entry
    with libortextensions.so from LD_LIBRARY_PATH and answers as serve-repo's ensemble."""
    repo, _ = fused_text_build
    name = load_copy(reference_server, reference_server.repo, repo / "roberta_reviews_ensemble_fused", "ref_roberta_text_fused")
    texts = every_text(text_models / "roberta_reviews", ROBERTA)[:16]
    module, client = clients(reference_server, protocol)
    expected = infer(*clients(fused_text_server, protocol), "roberta_reviews_ensemble", texts)
    np.testing.assert_allclose(infer(module, client, name, texts), expected, atol=ATOL, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_fused_entry_refuses_text_that_is_not_utf8_and_answers_the_next(fused_text_server, protocol):
    """serve-repo's ONNX Runtime backend decodes each request's strings as it reads it: a 400 of
    its own naming the input and row (the ensemble's step refuses it too)."""
    module, client = clients(fused_text_server, protocol)
    raw = np.array([[b"good"], [b"bad \xe9 x"]], dtype=object)
    tensor = module.InferInput("RAW", list(raw.shape), "BYTES")
    tensor.set_data_from_numpy(raw)
    with pytest.raises(Exception) as refused:
        client.infer("roberta_reviews_ensemble_fused", [tensor])
    message = str(refused.value)
    assert "input 'RAW' row 1 is not valid UTF-8 (byte 0xe9 at offset 4)" in message
    assert ("[400]" in message) if protocol == "http" else ("INVALID_ARGUMENT" in message)
    assert infer(module, client, "roberta_reviews_ensemble_fused", ["good"]).shape == (1, 3)
