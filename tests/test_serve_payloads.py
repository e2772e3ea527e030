"""Hostile payloads over HTTP and gRPC, against every example model and ensemble: each gets its
expected code and one clear line with no traceback and nothing of the server's file system, and
a good request succeeds right after it."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from fixtures_build import EXAMPLE_MODELS
from tritonforge.repository import latest_samples, numpy_dtype, read_samples

PROTOCOLS = ("http", "grpc")
BAD_INPUT = {"http": "400", "grpc": "StatusCode.INVALID_ARGUMENT"}
LEAKS = ("At:", "Traceback", "/tmp/", "/work/", "/root/", "site-packages", ".py(")


def png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def raw(*rows: bytes) -> dict:
    return {"RAW": (np.array([[r] for r in rows], dtype=object), "BYTES")}


def text(*rows: bytes) -> dict:
    return {"TEXT": (np.array([[r] for r in rows], dtype=object), "BYTES")}


# (case, model, inputs: {name: (array, datatype)}, message fragment the client must see)
ENSEMBLE_ROWS = [
    ("broken JSON", "churn_pipeline_ensemble", raw(b'{"city": "nice", "age": 3'), "row 0: not valid JSON"),
    ("missing field", "churn_pipeline_ensemble", raw(b'{"city": "nice", "age": 30}'), "missing field"),
    ("text for a number", "churn_pipeline_ensemble", raw(b'{"city": "nice", "age": "old", "income": 1}'), "must be a number"),
    ("invalid UTF-8", "churn_pipeline_ensemble", raw(b'{"city": "\xff\xfe", "age": 1, "income": 1}'), "not UTF-8 text"),
    ("JSON nested 5000 deep", "churn_pipeline_ensemble", raw(b"[" * 5000 + b"]" * 5000), "nested too deeply"),
    ("a number of 5000 digits", "churn_pipeline_ensemble", raw(b'{"city": "x", "age": ' + b"9" * 5000 + b', "income": 1}'), "not valid JSON"),
    ("NaN where none is allowed", "churn_pipeline_ensemble", raw(b'{"city": "x", "age": NaN, "income": 1}'), "is NaN"),
    ("Infinity", "churn_pipeline_ensemble", raw(b'{"city": "x", "age": Infinity, "income": 1}'), "must be a finite number"),
    ("unknown field", "churn_pipeline_ensemble", raw(b'{"city": "x", "age": 1, "income": 1, "zip": 9}'), "unknown field"),
    ("CSV with too few values", "churn_pipeline_ensemble", raw(b"nice,30"), "CSV row has 2 values"),
    ("a JSON array", "churn_pipeline_ensemble", raw(b"[1, 2]"), "must be an object"),
    ("a 70 KB row", "churn_pipeline_ensemble", raw(b"x," + b"1" * (70 << 10) + b",1"), "is longer than"),
    ("a bad second row", "churn_pipeline_ensemble", raw(b'{"city": "x", "age": 1, "income": 1}', b"{"), "row 1"),
    ("truncated PNG", "digits_cnn_ensemble", raw(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0"), "cannot decode image"),
    ("not an image", "digits_cnn_ensemble", raw(b"hello, world"), "cannot decode image"),
    ("an empty image", "digits_cnn_ensemble", raw(b""), "empty image"),
    ("a header claiming 4097x4097", "digits_cnn_ensemble", raw(png_claiming(4097, 4097)), "is larger than"),
    ("a decompression bomb", "digits_cnn_ensemble", raw(png_claiming(100_000, 100_000)), "cannot decode image"),
    ("unknown feature", "house_price_xgb_ensemble", text(b"rooms=3 pool=1"), "unknown feature 'pool'"),
    ("a word for a number", "house_price_xgb_ensemble", text(b"rooms=three"), "must be a number"),
    ("invalid UTF-8 line", "house_price_xgb_ensemble", text(b"rooms=\xff"), "utf-8"),
]


def model_rows(spec: dict) -> list[tuple[str, dict]]:
    """Bad requests made from a model's own metadata: wrong dtype, wrong width, wrong rank,
    unknown name, a batch over max_batch_size."""
    inputs, mbs = spec["inputs"], spec["max_batch_size"]

    def good(tensor, rows=1):
        shape = [rows if d == -1 and i == 0 and mbs else (1 if d == -1 else d) for i, d in enumerate(tensor["shape"])]
        dtype = numpy_dtype(tensor["datatype"])
        return np.full(shape, b"a", dtype=object) if dtype == object else np.zeros(shape, dtype)

    def request(replace: dict, drop: str | None = None, rows: int = 1) -> dict:
        out = {t["name"]: (good(t, rows), t["datatype"]) for t in inputs if t["name"] != drop}
        out.update(replace)
        return out

    first = inputs[0]
    wrong_type = ("FP32", np.zeros(good(first).shape, np.float32)) if first["datatype"] == "BYTES" else \
                 ("BYTES", np.full(good(first).shape, b"x", dtype=object))
    rows = [
        ("a wrong datatype", request({first["name"]: (wrong_type[1], wrong_type[0])})),
        ("one column too many", request({first["name"]: (np.concatenate([good(first)] * 2, axis=-1), first["datatype"])})),
        ("one dimension too many", request({first["name"]: (good(first)[..., None], first["datatype"])})),
        ("an unknown input name", request({"no_such_input": (good(first), first["datatype"])}, drop=first["name"])),
    ]
    if mbs:
        rows.append(("a batch over max_batch_size", request({}, rows=mbs + 1)))
    return rows


def _client(server, protocol):
    return (httpclient.InferenceServerClient(server.http_url) if protocol == "http"
            else grpcclient.InferenceServerClient(server.grpc_url))


def _send(client, protocol, model, inputs):
    module = httpclient if protocol == "http" else grpcclient
    tensors = []
    for name, (array, datatype) in inputs.items():
        tensor = module.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return client.infer(model, tensors)


def _assert_refused_cleanly(served, protocol, model, inputs, fragment):
    server, repo = served
    client = _client(server, protocol)
    with pytest.raises(InferenceServerException) as refused:
        _send(client, protocol, model, inputs)
    message = refused.value.message()
    assert str(refused.value.status()) == BAD_INPUT[protocol], message
    assert fragment.lower() in message.lower(), message
    assert not [leak for leak in LEAKS if leak in message], message
    assert len(message.splitlines()) == 1 and len(message) < 600, message
    # ... and the model answers a good request right after.
    from tritonforge.clients import TritonClient

    samples = read_samples(latest_samples(repo / model))
    url = server.http_url if protocol == "http" else server.grpc_url
    with TritonClient(url, protocol) as good:
        result = good.infer(model, {name: value[:1] for name, value in samples.inputs.items()})
    assert result.outputs


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case, model, inputs, fragment", ENSEMBLE_ROWS, ids=[row[0] for row in ENSEMBLE_ROWS])
def test_a_bad_row_into_an_ensemble_is_refused_cleanly(served_examples, protocol, case, model, inputs, fragment):
    _assert_refused_cleanly(served_examples, protocol, model, inputs, fragment)


MODEL_CASES = ["a wrong datatype", "one column too many", "one dimension too many", "an unknown input name",
               "a batch over max_batch_size"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("model", EXAMPLE_MODELS)
@pytest.mark.parametrize("case", MODEL_CASES)
def test_a_bad_request_to_a_model_is_refused_cleanly(served_examples, protocol, model, case):
    server, _ = served_examples
    metadata = httpclient.InferenceServerClient(server.http_url).get_model_metadata(model)
    config = httpclient.InferenceServerClient(server.http_url).get_model_config(model)
    spec = {"inputs": metadata["inputs"], "max_batch_size": int(config.get("max_batch_size", 0))}
    rows = dict(model_rows(spec))
    if case not in rows:
        pytest.skip(f"{model} does not batch")
    _assert_refused_cleanly(served_examples, protocol, model, rows[case], "")
