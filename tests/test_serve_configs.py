"""What per-hardware configs, queue policy and the response cache do on the served repository."""
from __future__ import annotations

import concurrent.futures
import json
import urllib.error
import urllib.request

import pytest
import tritonclient.http as httpclient

from fixtures_serving import wait_for
from test_build_hostile import tiny_onnx
from tritonforge.builder import BuildOptions, build_repository
from tritonforge.serving import serve

BURST = 48


@pytest.fixture(scope="module")
def policy_server(tmp_path_factory):
    models = tmp_path_factory.mktemp("policy_models")
    tiny_onnx(models / "queued.onnx")
    # A long batching delay holds requests in the queue, which takes one: a burst overflows it.
    (models / "queued.yaml").write_text("dynamic_batching: {max_queue_delay_microseconds: 300000, preferred_batch_size: [64]}\n"
                                        "queue: {max_queue_size: 1}\n")
    tiny_onnx(models / "cached.onnx")
    (models / "cached.yaml").write_text("response_cache: true\n")
    repo = tmp_path_factory.mktemp("policy") / "repo"
    assert all(r.ok for r in build_repository(models, repo, BuildOptions(device="gpu")))
    with serve(repo, control_mode="none") as server:
        yield server


def _infer(url: str, model: str, value: float) -> tuple[int, str]:
    body = json.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [value] * 4}]}).encode()
    request = urllib.request.Request(f"http://{url}/v2/models/{model}/infer", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_a_repository_with_variants_is_served_from_its_cpu_configs_without_override(policy_server):
    assert policy_server.config_name == "cpu"
    for name in ("queued", "cached"):
        config, overridden = policy_server.served_config(name)
        assert not overridden and [g.kind for g in config.instance_group] == [config.instance_group[0].KIND_CPU]


def test_a_full_queue_answers_fast_rejections_and_keeps_serving(policy_server):
    with concurrent.futures.ThreadPoolExecutor(BURST) as pool:
        answers = list(pool.map(lambda i: _infer(policy_server.http_url, "queued", float(i)), range(BURST)))
    codes = [code for code, _ in answers]
    assert set(codes) <= {200, 503}, answers[:3]
    assert codes.count(503) > 0 and codes.count(200) > 0
    assert all("queue" in text.lower() for code, text in answers if code == 503)
    assert _infer(policy_server.http_url, "queued", 1.0)[0] == 200  # and it goes on serving


def test_a_repeated_request_is_answered_from_the_response_cache(policy_server):
    client = httpclient.InferenceServerClient(policy_server.http_url)

    def hits() -> int:
        stats = client.get_inference_statistics("cached")["model_stats"][0]["inference_stats"]
        return int(stats["cache_hit"]["count"])

    before = hits()
    first = _infer(policy_server.http_url, "cached", 0.5)
    second = _infer(policy_server.http_url, "cached", 0.5)
    assert first[0] == second[0] == 200
    assert json.loads(first[1])["outputs"][0]["data"] == json.loads(second[1])["outputs"][0]["data"] == [0.5] * 4
    assert wait_for(lambda: hits() >= before + 1, 5)  # counted just after the answer is sent


def test_the_examples_load_with_no_kind_override(examples_server, built_examples_repo):
    from fixtures_build import EXAMPLE_MODELS

    assert examples_server.config_name == "cpu"
    for name in EXAMPLE_MODELS:
        _, overridden = examples_server.served_config(name)
        assert not overridden, name
        assert examples_server.model_states()[(name, "1")] == "READY"


def test_the_cpu_backend_reads_the_graph_level_and_names_the_gpu_settings_it_ignores(policy_server):
    from google.protobuf import json_format

    from tritonforge.repository import config as configs

    gpu = configs.read_variant(policy_server.repo / "cached", "gpu")
    config, _ = policy_server.served_config("cached")
    config.optimization.CopyFrom(gpu.optimization)  # TensorRT: a GPU-only setting
    config.optimization.graph.level = -1  # basic graph optimisations
    try:
        policy_server.grpc_client().load_model("cached", config=json_format.MessageToJson(config))
        assert _infer(policy_server.http_url, "cached", 2.0)[0] == 200
        assert "model 'cached': serve-repo runs ONNX Runtime on the CPU and ignores tensorrt" in policy_server.log_tail(200)
    finally:
        policy_server.load("cached")
