"""Per-hardware configs: a portable config.pbtxt, configs/gpu.pbtxt and configs/cpu.pbtxt, with only
the keys the targeted release's backends read (tritonforge/builder/releases.py)."""
from __future__ import annotations

import json

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from test_build_hostile import tiny_onnx
from tritonforge.builder import BuildOptions, build_repository
from tritonforge.builder.releases import RULES, parse_release
from tritonforge.repository.layout import REFUSE_NAN_PARAMETER
from tritonforge.repository import config as configs

GROUP = mc.ModelInstanceGroup
RELEASES = ["24.10", "25.09"]


def _build(tmp_path, sidecar: str = "", release: str = "24.10", device: str = "gpu", name: str = "mlp"):
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    tiny_onnx(models / f"{name}.onnx")
    if sidecar:
        (models / f"{name}.yaml").write_text(sidecar)
    repo = tmp_path / "repo"
    [result] = build_repository(models, repo, BuildOptions(triton_version=release, device=device))
    assert result.status == "OK", result.reason
    return repo / name


def _kinds(config) -> list[int]:
    return [g.kind for g in config.instance_group]


@pytest.mark.parametrize("device, portable, gpu", [("gpu", GROUP.KIND_AUTO, GROUP.KIND_GPU), ("cpu", GROUP.KIND_CPU, GROUP.KIND_CPU)])
def test_config_pbtxt_is_portable_and_each_host_has_its_variant(tmp_path, device, portable, gpu):
    model = _build(tmp_path, device=device)
    assert _kinds(configs.read(model)) == [portable]  # never KIND_GPU: a CPU-only Triton refuses it at load
    assert _kinds(configs.read_variant(model, "gpu")) == [gpu]
    assert _kinds(configs.read_variant(model, "cpu")) == [GROUP.KIND_CPU]


@pytest.mark.parametrize("release", RELEASES)
def test_variants_use_only_the_keys_of_the_targeted_release(tmp_path, release):
    rules = parse_release(release).rules
    model = _build(tmp_path, "tensorrt: {precision: fp16}\n", release=release)
    gpu = configs.read_variant(model, "gpu")
    [trt] = gpu.optimization.execution_accelerators.gpu_execution_accelerator
    allowed = set(rules.ort_tensorrt_keys) | ({"trt_cuda_graph_enable"} if rules.ort_cuda_graphs else set())
    assert trt.name == "tensorrt" and set(trt.parameters) <= allowed
    assert ("trt_cuda_graph_enable" in trt.parameters) == rules.ort_cuda_graphs
    assert trt.parameters["precision_mode"] == "FP16" and trt.parameters["trt_engine_cache_enable"] == "1"
    assert not trt.parameters["trt_engine_cache_path"].startswith(str(model))  # the repository may be mounted read-only
    assert [w.batch_size for w in gpu.model_warmup] == [gpu.max_batch_size]  # TensorRT builds its engine on first use
    cpu = configs.read_variant(model, "cpu")
    assert not cpu.optimization.execution_accelerators.gpu_execution_accelerator
    threads = {k: v.string_value for k, v in cpu.parameters.items() if k != REFUSE_NAN_PARAMETER}  # (tests/test_nan_policy.py)
    assert threads == {"intra_op_thread_count": "0", "inter_op_thread_count": "1"}


def test_every_release_rule_cites_its_documentation():
    assert all(rule.source and ("README" in rule.source or "docs" in rule.source) for rule in RULES)
    assert [r.since for r in RULES] == sorted(r.since for r in RULES)


def test_sidecar_serving_options_reach_every_variant(tmp_path):
    sidecar = ("queue: {max_queue_size: 4, default_timeout_microseconds: 50000, timeout_action: reject}\n"
               "priority_levels: 2\nresponse_cache: true\n"
               "onnxruntime: {intra_op_threads: 2, inter_op_threads: 1, graph_level: extended}\n")
    model = _build(tmp_path, sidecar)
    for config in (configs.read(model), configs.read_variant(model, "gpu"), configs.read_variant(model, "cpu")):
        policy = config.dynamic_batching.default_queue_policy
        assert (policy.max_queue_size, policy.default_timeout_microseconds, policy.timeout_action) == (4, 50000, mc.ModelQueuePolicy.REJECT)
        assert config.dynamic_batching.priority_levels == 2 and config.response_cache.enable
    cpu = configs.read_variant(model, "cpu")
    assert cpu.parameters["intra_op_thread_count"].string_value == "2" and cpu.optimization.graph.level == 1


def test_openvino_is_refused_for_a_release_that_does_not_offer_it(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    tiny_onnx(models / "mlp.onnx")
    (models / "mlp.yaml").write_text("onnxruntime: {openvino: true}\n")
    [result] = build_repository(models, tmp_path / "repo", BuildOptions(triton_version="25.09"))
    assert result.status == "FAILED" and "OpenVINO is not offered for Triton 25.09" in result.reason
    [result] = build_repository(models, tmp_path / "repo", BuildOptions(triton_version="24.10"))
    assert result.status == "OK"


BAD_OPTIONS = [
    ("tensorrt: {precision: int4}\n", "'tensorrt.precision' must be one of fp32, fp16"),
    ("queue: {max_queue_size: -1}\n", "'queue.max_queue_size' must be an integer >= 0"),
    ("queue: {timeout_action: drop}\n", "'queue.timeout_action' must be one of reject, delay"),
    ("onnxruntime: {threads: 4}\n", "unknown key 'onnxruntime.threads'"),
    ("response_cache: yes please\n", "'response_cache' must be true or false"),
]


@pytest.mark.parametrize("sidecar, message", BAD_OPTIONS, ids=[row[1] for row in BAD_OPTIONS])
def test_bad_serving_options_are_refused(tmp_path, sidecar, message):
    models = tmp_path / "models"
    models.mkdir()
    tiny_onnx(models / "mlp.onnx")
    (models / "mlp.yaml").write_text(sidecar)
    [result] = build_repository(models, tmp_path / "repo")
    assert result.status == "FAILED" and message in result.reason, result.reason


def test_a_rebuild_keeps_a_variant_another_command_recorded(tmp_path):
    from tritonforge.repository.manifest import Manifest

    model = _build(tmp_path)
    tuned = configs.read_variant(model, "cpu")
    tuned.instance_group[0].count = 3
    configs.write(model / "configs" / "cpu.pbtxt", tuned)
    manifest = Manifest(model.parent)
    manifest.record_variant("mlp", "cpu", "tune-repo", {"throughput": 1234.0})
    manifest.save()
    (tmp_path / "models" / "mlp.yaml").write_text("sample_rows: 4\n")  # a change: the next build writes v2
    [result] = build_repository(tmp_path / "models", model.parent)
    assert result.status == "OK" and result.version == 2
    assert configs.read_variant(model, "cpu").instance_group[0].count == 3
    assert configs.read_variant(model, "gpu").instance_group[0].kind == GROUP.KIND_GPU  # generated anew
    recorded = json.loads((model.parent / "manifest.json").read_text())["models"]["mlp"]["variants"]
    assert recorded == {"cpu": {"by": "tune-repo", "throughput": 1234.0}, "gpu": {"by": "build-repo"}}
