"""triton-infer and the client library against the served examples, over HTTP and gRPC."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

import fixtures_build
from tritonforge.clients import AsyncTritonClient, InputError, TritonClient, read_inputs
from tritonforge.clients.cli import main as triton_infer
from tritonforge.loadtests.payload import samples_path

PROTOCOLS = ("http", "grpc")
EXAMPLE_MODELS = fixtures_build.EXAMPLE_MODELS


def _url(server, protocol: str) -> str:
    return server.http_url if protocol == "http" else server.grpc_url


def _samples(repo: Path, model: str):
    with np.load(samples_path(repo, model)) as data:
        return {k: data[k] for k in data.files}


def _matches(served, expected, atol, rtol) -> bool:
    served, expected = np.asarray(served), np.asarray(expected)
    if expected.dtype.kind in "iuUSOb":
        return served.reshape(expected.shape).astype(expected.dtype).tolist() == expected.tolist()
    return bool(np.all(np.abs(served.reshape(expected.shape) - expected) <= atol + rtol * np.abs(expected)))


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = triton_infer([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("model", EXAMPLE_MODELS)
def test_triton_infer_answers_every_example_as_its_source_model_did(served_examples, capsys, model, protocol):
    server, repo = served_examples
    samples = _samples(repo, model)
    code, out, err = _cli(capsys, model, "--input", samples_path(repo, model), "-i", protocol,
                          "-u", _url(server, protocol), "--top-k", "0", "--json")
    assert code == 0, err
    answer = json.loads(out)
    expected = {k.removeprefix("output/"): v for k, v in samples.items() if k.startswith("output/")}
    assert set(answer["outputs"]) == set(expected)
    for name, values in expected.items():
        assert _matches(answer["outputs"][name], values, samples["atol"], samples["rtol"]), name


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_classifier_answers_are_labels_with_scores_in_order(served_examples, capsys, protocol):
    server, repo = served_examples
    labels = (repo / "iris_xgb" / "labels.txt").read_text().split()
    probabilities = _samples(repo, "iris_xgb")["output/probabilities"]
    code, out, _ = _cli(capsys, "iris_xgb", "--input", samples_path(repo, "iris_xgb"), "-i", protocol,
                        "-u", _url(server, protocol), "--top-k", "2", "--json")
    assert code == 0
    rows = json.loads(out)["classes"]["probabilities"]
    assert [row[0]["label"] for row in rows] == [labels[i] for i in probabilities.argmax(axis=1)]
    assert all(row[0]["score"] >= row[1]["score"] for row in rows)
    assert all(len(row) == 2 for row in rows)


def test_text_output_shows_each_rows_label_and_score(served_examples, capsys):
    server, repo = served_examples
    code, out, _ = _cli(capsys, "iris_xgb", "--input", samples_path(repo, "iris_xgb"), "-u", server.http_url,
                        "--top-k", "1")
    assert code == 0
    probabilities = _samples(repo, "iris_xgb")["output/probabilities"]
    labels = (repo / "iris_xgb" / "labels.txt").read_text().split()
    top = probabilities.argmax(axis=1)[0]
    assert f"row 0: {labels[top]} ({probabilities[0, top]:.4f})" in out


def test_text_output_names_a_classifiers_label_output(served_examples, capsys):
    server, repo = served_examples
    code, out, _ = _cli(capsys, "iris_xgb", "--input", samples_path(repo, "iris_xgb"), "-u", server.http_url, "--top-k", "1")
    assert code == 0
    labels = (repo / "iris_xgb" / "labels.txt").read_text().split()
    expected = _samples(repo, "iris_xgb")["output/label"].reshape(-1)
    block = out.split("  label:int64[", 1)[1].splitlines()
    assert block[1].strip() == f"row 0: {labels[expected[0]]} ({expected[0]})"


def test_an_ensemble_that_classifies_answers_its_builds_top_k_labels_with_scores(served_examples, capsys):
    from fixtures_clients import ensembles_in

    server, repo = served_examples
    if "digits_cnn_ensemble" not in ensembles_in(repo):
        pytest.skip("no digits_cnn_ensemble in the built repository")
    samples = _samples(repo, "digits_cnn_ensemble")
    code, out, _ = _cli(capsys, "digits_cnn_ensemble", "--input", samples_path(repo, "digits_cnn_ensemble"),
                        "-u", server.http_url, "--json")
    assert code == 0
    rows = json.loads(out)["classes"]["digit"]
    # No --top-k: the sidecar's `postprocess: {step: classify, top_k: 3}`, which the ensemble's config records.
    assert {len(row) for row in rows} == {3}
    expected = samples["output/digit"]
    for row, scores in zip(rows, expected):
        assert [c["index"] for c in row] == list(np.argsort(-scores, kind="stable")[:3])
        assert [c["label"] for c in row] == [str(c["index"]) for c in row]  # the digits' labels are the digits
        assert np.allclose([c["score"] for c in row], scores[[c["index"] for c in row]], atol=1e-5)
    code, out, _ = _cli(capsys, "digits_cnn_ensemble", "--input", samples_path(repo, "digits_cnn_ensemble"),
                        "-u", server.http_url, "--top-k", "1")
    assert code == 0 and "digit: top 1 classes per row" in out


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_server_refusals_are_printed_as_the_server_wrote_them(served_examples, capsys, tmp_path, protocol):
    server, _ = served_examples
    rows = tmp_path / "five_columns.csv"
    rows.write_text("1,2,3,4,5\n")
    # What Triton itself says for this request, asked without our client.
    raw = httpclient.InferenceServerClient(server.http_url)
    tensor = httpclient.InferInput("input", [1, 5], "FP32")
    tensor.set_data_from_numpy(np.array([[1, 2, 3, 4, 5]], dtype=np.float32))
    with pytest.raises(Exception) as refusal:
        raw.infer("iris_xgb", [tensor])
    code, out, err = _cli(capsys, "iris_xgb", "--input", rows, "-i", protocol, "-u", _url(server, protocol))
    assert code == 1
    assert out == ""
    assert err.strip() == refusal.value.message()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_async_client_answers_as_the_sync_client_does(served_examples, protocol):
    server, repo = served_examples
    arrays = {k.removeprefix("input/"): v for k, v in _samples(repo, "churn_pipeline").items() if k.startswith("input/")}

    async def call():
        async with AsyncTritonClient(_url(server, protocol), protocol) as client:
            return await client.infer("churn_pipeline", arrays, top_k=2)

    answer = asyncio.run(call())
    with TritonClient(_url(server, protocol), protocol) as client:
        expected = client.infer("churn_pipeline", arrays, top_k=2)
    assert answer.classes == expected.classes
    np.testing.assert_array_equal(answer.outputs["label"], expected.outputs["label"])


# Files a user hands triton-infer, one per way of writing inputs: (model, file name, content, rows).
def _png(path: Path, size, mode):
    from PIL import Image

    pixels = (np.random.default_rng(0).random((*size, 3 if mode == "RGB" else 1)) * 255).astype(np.uint8)
    Image.fromarray(pixels.squeeze(), mode).save(path)


INPUT_FILES = [
    ("churn_pipeline", "rows.csv", "city,age,income\nparis,31,2800\nnice,52,4100\n", 2),
    ("churn_pipeline", "rows.json", '[{"city": "lyon", "age": 25, "income": 3000}]', 1),
    ("churn_pipeline", "row.json", '{"city": "nice", "age": 61, "income": 1900}', 1),
    ("iris_xgb", "no_header.csv", "0.1,0.2,0.3,0.4\n0.9,0.1,0.1,0.1\n0.5,0.5,0.5,0.5\n", 3),
    ("house_price_xgb", "missing.csv", "input_0,input_1,input_2,input_3,input_4,input_5\n0.1,0.2,,0.4,0.5,0.6\n", 1),
    ("price_two_inputs", "named.json", '{"numeric": [[1,2,3,4,5,6]], "extra": [[1,2,3,4]]}', 1),
    ("price_two_inputs", "indexed.csv",
     "numeric_0,numeric_1,numeric_2,numeric_3,numeric_4,numeric_5,extra_0,extra_1,extra_2,extra_3\n"
     "1,2,3,4,5,6,1,2,3,4\n", 1),
    ("digits_cnn", "digit.png", ((40, 40), "L"), 1),  # grey, resized to 28x28, HWC
    ("torch_cnn", "photo.jpg", ((50, 60), "RGB"), 1),  # RGB, resized to 32x32, CHW
    ("iris_xgb", "rows.npy", np.random.default_rng(0).random((4, 4)), 4),  # float64 in, FP32 sent
]


@pytest.mark.parametrize("model,name,content,rows", INPUT_FILES, ids=[f"{m}-{n}" for m, n, _, _ in INPUT_FILES])
def test_each_input_file_kind_becomes_a_request_the_server_answers(served_examples, tmp_path, model, name, content, rows):
    server, _ = served_examples
    path = tmp_path / name
    if isinstance(content, np.ndarray):
        np.save(path, content)
    elif isinstance(content, tuple):
        _png(path, *content)
    else:
        path.write_text(content)
    with TritonClient(server.grpc_url, "grpc") as client:
        answer = client.infer(model, read_inputs([path], client.spec(model)))
    assert all(array.shape[0] == rows for array in answer.outputs.values())


# Files that cannot become the model's inputs, and what the user is told.
BAD_FILES = [
    ("iris_xgb", "data.txt", "1 2 3 4", "unknown input file type '.txt'"),
    ("iris_xgb", "broken.json", "{not json", "not valid JSON"),
    ("churn_pipeline", "short.csv", "city,age\nparis,31\n", "no column for input(s) income"),
    ("price_two_inputs", "plain.json", "[[1, 2, 3]]", "has 2 inputs (numeric, extra)"),
    ("iris_xgb", "other.json", '{"numeric": [[1, 2]]}', "keys numeric are not inputs of model 'iris_xgb'"),
    ("iris_xgb", "words.csv", "sepal\nbig\n", "input 'input' of model 'iris_xgb' is FP32"),
]


@pytest.mark.parametrize("model,name,content,message", BAD_FILES, ids=[n for _, n, _, _ in BAD_FILES])
def test_unusable_input_files_are_refused_with_the_reason(served_examples, capsys, tmp_path, model, name, content, message):
    server, _ = served_examples
    path = tmp_path / name
    path.write_text(content)
    code, out, err = _cli(capsys, model, "--input", path, "-u", server.http_url)
    assert code == 2
    assert message in err


def test_unreachable_server_is_reported_with_the_address(capsys, tmp_path):
    from tritonforge.serving.server import free_port

    path = tmp_path / "row.npy"
    np.save(path, np.zeros((1, 4), np.float32))
    address = f"127.0.0.1:{free_port()}"
    code, _, err = _cli(capsys, "iris_xgb", "--input", path, "-u", address)
    assert code == 2
    assert f"cannot reach {address}" in err


def test_console_script_runs_end_to_end(served_examples):
    server, repo = served_examples
    script = Path(sys.executable).with_name("triton-infer")
    done = subprocess.run([str(script), "digits_cnn", "--input", str(samples_path(repo, "digits_cnn")),
                           "-i", "grpc", "-u", server.grpc_url, "--top-k", "1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("digits_cnn (version 1)")
    assert "top 1 classes per row" in done.stdout


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("ensemble", getattr(fixtures_build, "EXAMPLE_ENSEMBLES", ()) or [None])
def test_triton_infer_answers_each_ensemble_from_its_raw_samples(served_examples, capsys, ensemble, protocol):
    from fixtures_clients import ensembles_in

    server, repo = served_examples
    if ensemble is None or ensemble not in ensembles_in(repo):
        pytest.skip(f"no ensemble {ensemble or ''} in the built repository")
    samples = _samples(repo, ensemble)
    code, out, err = _cli(capsys, ensemble, "--input", samples_path(repo, ensemble), "-i", protocol,
                          "-u", _url(server, protocol), "--json")
    assert code == 0, err
    answer = json.loads(out)
    for name in (k.removeprefix("output/") for k in samples if k.startswith("output/")):
        expected = samples[f"output/{name}"]
        if name in answer["classes"]:  # labels with scores: each score is the stored one for its class
            for row, scores in zip(answer["classes"][name], expected.reshape(len(expected), -1)):
                assert _matches([c["score"] for c in row], scores[[c["index"] for c in row]], samples["atol"], samples["rtol"]), name
                assert [c["score"] for c in row] == sorted((c["score"] for c in row), reverse=True), name
        else:
            assert _matches(answer["outputs"][name], expected, samples["atol"], samples["rtol"]), name
