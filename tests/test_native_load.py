"""The native load generators against a real serve-repo: wrk (HTTP, binary tensors) and h2load
(gRPC, a pre-encoded ModelInferRequest). Each run is bounded (1-2 s); nothing here asserts a speed.
"""
from __future__ import annotations

import numpy as np
import pytest

from tritonforge.loadtests import native
from tritonforge.loadtests.native import LoadError, run_h2load, run_wrk

ROWS = {"input": np.random.default_rng(0).random((1, 4), dtype=np.float32)}


def _clean(result, model):
    assert result.model == model
    assert result.requests > 0
    assert result.errors == 0
    assert 0.0 <= result.client_cpu_share <= 1.0
    assert 0 < result.p50_ms <= result.p90_ms <= result.p99_ms


@pytest.mark.parametrize("generator", ["wrk", "h2load"])
def test_native_generator_loads_a_served_model_with_no_errors(tiny_server, generator):
    if generator == "wrk":
        result = run_wrk(tiny_server.http_url, "onnx_linear", ROWS, connections=4, seconds=1)
    else:
        result = run_h2load(tiny_server.grpc_url, "onnx_linear", ROWS, connections=4, seconds=1)
    _clean(result, "onnx_linear")
    assert result.connections == 4


def test_h2load_sends_string_tensors_and_multiplexed_streams(tiny_server):
    text = np.array([[b"h\xc3\xa9llo"]], dtype=object)
    result = run_h2load(tiny_server.grpc_url, "onnx_strings", {"text": text}, connections=2, streams=3, seconds=1)
    _clean(result, "onnx_strings")
    assert result.connections == 6  # calls in flight


def test_h2load_request_is_the_one_tritonclient_would_send(tiny_server):
    from tritonclient.grpc import service_pb2

    answer = native.grpc_preflight(tiny_server.grpc_url, "onnx_linear", native.grpc_request("onnx_linear", ROWS, ["output"]))
    response = service_pb2.ModelInferResponse.FromString(answer)
    got = np.frombuffer(response.raw_output_contents[0], np.float32).reshape(list(response.outputs[0].shape))
    with tiny_server.grpc_client() as client:
        import tritonclient.grpc as grpcclient

        tensor = grpcclient.InferInput("input", [1, 4], "FP32")
        tensor.set_data_from_numpy(ROWS["input"])
        expected = client.infer("onnx_linear", [tensor]).as_numpy("output")
    np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize("model, inputs, says", [
    ("no_such_model", ROWS, "NOT_FOUND"),
    ("onnx_linear", {"input": np.ones((1, 5), np.float32)}, "INVALID_ARGUMENT"),
])
def test_h2load_refuses_loudly_a_request_the_server_rejects(tiny_server, model, inputs, says):
    # Triton answers a failed gRPC call with HTTP 200 and a grpc-status trailer, which h2load
    # counts as a success: the pre-flight call must stop the run with the server's reason.
    with pytest.raises(LoadError) as caught:
        run_h2load(tiny_server.grpc_url, model, inputs, connections=2, seconds=1)
    message = str(caught.value)
    assert says in message and model in message and "pre-flight" in message


def test_h2load_counts_failed_calls_that_got_past_the_preflight(tiny_server, monkeypatch):
    # Calls that start failing during the run (here: a wrong model, the pre-flight answered with a
    # good model's answer) are HTTP 200s with no message: counted as errors, not successes.
    good = native.grpc_preflight(tiny_server.grpc_url, "onnx_linear", native.grpc_request("onnx_linear", ROWS))
    monkeypatch.setattr(native, "grpc_preflight", lambda *args, **kwargs: good)
    result = run_h2load(tiny_server.grpc_url, "no_such_model", ROWS, connections=2, seconds=1)
    assert result.requests > 0
    assert result.errors == result.requests


def test_missing_generator_is_named_with_its_package(monkeypatch):
    monkeypatch.setattr(native.shutil, "which", lambda name: None)
    with pytest.raises(LoadError, match="nghttp2-client"):
        native.h2load_path()
    with pytest.raises(LoadError, match="apt-get install wrk"):
        native.wrk_path()
