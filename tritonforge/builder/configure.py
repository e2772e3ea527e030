"""A model's ``ModelConfig`` messages, built from its artifact's signature and serving settings:
the portable ``config.pbtxt`` and one variant per kind of host (``configs/gpu.pbtxt``,
``configs/cpu.pbtxt``, picked with ``tritonserver --model-config-name``).

Writing and reading the files is :mod:`tritonforge.repository.config`'s job.
"""
from __future__ import annotations

from dataclasses import dataclass
import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from ..errors import BuildError
from ..repository import Signature, TensorSpec
from ..repository.config import data_type
from ..repository.dtypes import UnknownDtype
from ..repository.layout import LABELS_FILE, warmup_file
from ..sidecar import Batching, OnnxRuntimeSettings, TensorRTSettings
from .releases import TritonRelease

ONNX_PLATFORM = "onnxruntime_onnx"
FIL_BACKEND = "fil"
# TensorRT writes its engines here, inside the container: a read-only repository mount is not
# written to, and a restart on the same node reuses them.
TRT_CACHE_ROOT = "/tmp/tritonforge-trt-cache"
GRAPH_LEVEL = {"basic": -1, "extended": 1, "disabled": 2}  # the ONNX Runtime backend's optimization.graph.level
GROUP = mc.ModelInstanceGroup


def triton_type(dtype) -> int:
    try:
        return data_type(dtype)
    except UnknownDtype:
        raise BuildError(f"dtype {np.dtype(dtype).name} has no Triton equivalent") from None


@dataclass(frozen=True)
class ServingSettings:
    """How the model is served: the sidecar's groups, resolved against the command line."""

    max_batch_size: int  # the sidecar's, else --max-batch-size
    kind: str  # "gpu" or "cpu": where the model belongs on a host that has both
    instances: int
    labels_output: str | None  # the output that class names describe
    warmup: bool
    batching: Batching = Batching()
    response_cache: bool = False
    tensorrt: TensorRTSettings = TensorRTSettings()
    onnxruntime: OnnxRuntimeSettings = OnnxRuntimeSettings()
    warmup_shapes: dict[str, tuple[int, ...]] | None = None  # per input, one sample row's shape (no batch)


def _dims(spec: TensorSpec, batched: bool) -> tuple[list[int], bool]:
    """Config dims, and whether a reshape to a scalar row is needed (Triton dims may not be empty)."""
    dims = list(spec.shape[1:] if batched else spec.shape)
    return (dims, False) if dims else ([1], True)


def _tensor(message, spec: TensorSpec, batched: bool) -> None:
    message.name = spec.name
    message.data_type = triton_type(spec.dtype)
    dims, scalar = _dims(spec, batched)
    message.dims.extend(dims)
    if scalar:
        message.reshape.SetInParent()


def build_config(name: str, platform: str, signature: Signature, settings: ServingSettings, *,
                 backend: str = "", parameters: dict[str, str] | None = None) -> mc.ModelConfig:
    """The portable config: loads unchanged on a GPU host and on a CPU-only host. A model that
    belongs on a GPU gets KIND_AUTO (a GPU where there is one, else the CPU: a CPU-only Triton
    refuses KIND_GPU at load); one that belongs on the CPU gets KIND_CPU. ``backend`` names the
    backend of a format that has no platform (FIL), ``parameters`` what its backend reads on any host."""
    batched = settings.max_batch_size > 0 and signature.batched
    config = mc.ModelConfig(name=name, platform=platform, backend=backend,
                            max_batch_size=settings.max_batch_size if batched else 0)
    for key, value in (parameters or {}).items():
        config.parameters[key].string_value = value
    for spec in signature.inputs:
        _tensor(config.input.add(), spec, batched)
    for spec in signature.outputs:
        output = config.output.add()
        _tensor(output, spec, batched)
        if spec.name == settings.labels_output:
            output.label_filename = LABELS_FILE
    if batched and settings.batching.dynamic:
        batching = config.dynamic_batching
        batching.max_queue_delay_microseconds = settings.batching.max_queue_delay_microseconds
        sizes = settings.batching.preferred_batch_size or _default_preferred(settings.max_batch_size)
        batching.preferred_batch_size.extend(s for s in sizes if s <= settings.max_batch_size)
        _queue_policy(batching, settings)
    group = config.instance_group.add()
    group.kind = GROUP.KIND_AUTO if settings.kind == "gpu" else GROUP.KIND_CPU
    group.count = settings.instances
    if settings.response_cache:
        config.response_cache.enable = True
    if settings.warmup and batched:
        _warmup(config, signature, settings, batch_size=1)
    return config


def _queue_policy(batching, settings: ServingSettings) -> None:
    policy = dict(settings.batching.queue)
    if policy:
        queue = batching.default_queue_policy
        if "max_queue_size" in policy:
            queue.max_queue_size = policy["max_queue_size"]
        if "default_timeout_microseconds" in policy:
            queue.default_timeout_microseconds = policy["default_timeout_microseconds"]
        if "allow_timeout_override" in policy:
            queue.allow_timeout_override = policy["allow_timeout_override"]
        # A full queue is refused at once whatever the action; the action says what a request
        # that waited past its timeout gets: REJECT (an error) or DELAY (served late).
        queue.timeout_action = mc.ModelQueuePolicy.DELAY if policy.get("timeout_action") == "delay" else mc.ModelQueuePolicy.REJECT
    levels = settings.batching.priority_levels
    if levels:
        batching.priority_levels = levels
        batching.default_priority_level = settings.batching.default_priority_level or levels


def _warmup(config: mc.ModelConfig, signature: Signature, settings: ServingSettings, batch_size: int) -> None:
    """Warmup with the first sample row (written beside the config). Triton refuses a warmup whose
    dims are -1, so a dynamic axis takes the sample row's size; without one, no warmup."""
    del config.model_warmup[:]
    dims = {}
    for spec in signature.inputs:
        declared, _ = _dims(spec, True)
        row = (settings.warmup_shapes or {}).get(spec.name)
        if -1 in declared:
            if row is None or len(row) != len(declared):
                return
            declared = [size if size != -1 else row[i] for i, size in enumerate(declared)]
        dims[spec.name] = declared
    warmup = config.model_warmup.add(name="sample_row" if batch_size == 1 else f"batch_of_{batch_size}", batch_size=batch_size)
    for index, spec in enumerate(signature.inputs):
        data = warmup.inputs[spec.name]
        data.data_type = triton_type(spec.dtype)
        data.dims.extend(dims[spec.name])
        data.input_data_file = warmup_file(index)


def _default_preferred(max_batch_size: int) -> tuple[int, ...]:
    return tuple(s for s in (8, 16, 32) if s <= max_batch_size) or (max_batch_size,)


def gpu_variant(config: mc.ModelConfig, signature: Signature, settings: ServingSettings, release: TritonRelease) -> mc.ModelConfig:
    """``configs/gpu.pbtxt``: KIND_GPU for models that belong there; for ONNX, ONNX Runtime's
    TensorRT accelerator with an engine cache outside the repository, and a warmup at the largest
    batch, since TensorRT builds its engine on first use; for FIL, the GPU settings of the release."""
    variant = mc.ModelConfig()
    variant.CopyFrom(config)
    if settings.kind != "gpu":
        return variant  # trees and linear models stay on the CPU even where a GPU is
    for group in variant.instance_group:
        group.kind = GROUP.KIND_GPU
    if variant.platform == ONNX_PLATFORM:
        rules = release.rules
        trt = variant.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        parameters = {
            "precision_mode": settings.tensorrt.precision.upper(),
            "max_workspace_size_bytes": str(settings.tensorrt.max_workspace_bytes),
            "trt_engine_cache_enable": "1",
            "trt_engine_cache_path": f"{TRT_CACHE_ROOT}/{config.name}",
        }
        if rules.ort_cuda_graphs:
            parameters["trt_cuda_graph_enable"] = "1"
        for key, value in parameters.items():
            trt.parameters[key] = value
        if settings.warmup and variant.max_batch_size > 0:
            _warmup(variant, signature, settings, batch_size=variant.max_batch_size)
    elif variant.backend == FIL_BACKEND:
        for key, value in release.rules.fil_gpu_parameters:
            variant.parameters[key].string_value = value
    return variant


def cpu_variant(config: mc.ModelConfig, settings: ServingSettings, release: TritonRelease) -> mc.ModelConfig:
    """``configs/cpu.pbtxt``: KIND_CPU; for ONNX, ONNX Runtime's thread counts (portable defaults:
    one intra-op pool of ORT's own size per instance, sequential graphs; tune-repo picks per host),
    the graph level and OpenVINO where asked."""
    variant = mc.ModelConfig()
    variant.CopyFrom(config)
    for group in variant.instance_group:
        group.kind = GROUP.KIND_CPU
    if variant.platform == ONNX_PLATFORM:
        ort = settings.onnxruntime
        intra = ort.intra_op_threads if ort.intra_op_threads is not None else 0
        inter = ort.inter_op_threads if ort.inter_op_threads is not None else 1
        variant.parameters["intra_op_thread_count"].string_value = str(intra)
        variant.parameters["inter_op_thread_count"].string_value = str(inter)
        if ort.graph_level:
            variant.optimization.graph.level = GRAPH_LEVEL[ort.graph_level]
        if ort.openvino:
            if not release.rules.ort_openvino:
                raise BuildError(f"OpenVINO is not offered for Triton {release.name} (see tritonforge/builder/releases.py)")
            variant.optimization.execution_accelerators.cpu_execution_accelerator.add(name="openvino")
    return variant


def variants(config: mc.ModelConfig, signature: Signature, settings: ServingSettings,
             release: TritonRelease) -> dict[str, mc.ModelConfig]:
    """Per-hardware variants by name (``configs/<name>.pbtxt``)."""
    return {"gpu": gpu_variant(config, signature, settings, release), "cpu": cpu_variant(config, settings, release)}
