"""A model's ``ModelConfig`` message, built from its artifact's signature and serving settings.

Writing and reading the file is :mod:`tritonforge.repository.config`'s job."""
from __future__ import annotations

from dataclasses import dataclass
import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from ..errors import BuildError
from ..repository import Signature, TensorSpec
from ..repository.config import data_type
from ..repository.dtypes import UnknownDtype
from ..repository.layout import LABELS_FILE, warmup_file



def triton_type(dtype) -> int:
    try:
        return data_type(dtype)
    except UnknownDtype:
        raise BuildError(f"dtype {np.dtype(dtype).name} has no Triton equivalent") from None


@dataclass(frozen=True)
class ServingSettings:
    """How the model is served, from the sidecar and the command line."""

    max_batch_size: int
    dynamic_batching: bool
    max_queue_delay_microseconds: int
    preferred_batch_size: tuple[int, ...] | None
    kind: str  # "gpu" or "cpu"
    instances: int
    labels_output: str | None  # the output that class names describe
    warmup: bool


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


def build_config(name: str, platform: str, signature: Signature, settings: ServingSettings) -> mc.ModelConfig:
    batched = settings.max_batch_size > 0 and signature.batched
    config = mc.ModelConfig(name=name, platform=platform, max_batch_size=settings.max_batch_size if batched else 0)
    for spec in signature.inputs:
        _tensor(config.input.add(), spec, batched)
    for spec in signature.outputs:
        output = config.output.add()
        _tensor(output, spec, batched)
        if spec.name == settings.labels_output:
            output.label_filename = LABELS_FILE
    if batched and settings.dynamic_batching:
        config.dynamic_batching.max_queue_delay_microseconds = settings.max_queue_delay_microseconds
        sizes = settings.preferred_batch_size or _default_preferred(settings.max_batch_size)
        config.dynamic_batching.preferred_batch_size.extend(s for s in sizes if s <= settings.max_batch_size)
    group = config.instance_group.add()
    group.kind = mc.ModelInstanceGroup.KIND_GPU if settings.kind == "gpu" else mc.ModelInstanceGroup.KIND_CPU
    group.count = settings.instances
    if settings.warmup and batched:
        warmup = config.model_warmup.add(name="sample_row", batch_size=1)
        for index, spec in enumerate(signature.inputs):
            data = warmup.inputs[spec.name]
            data.data_type = triton_type(spec.dtype)
            data.dims.extend(_dims(spec, True)[0])
            data.input_data_file = warmup_file(index)
    return config


def _default_preferred(max_batch_size: int) -> tuple[int, ...]:
    return tuple(s for s in (8, 16, 32) if s <= max_batch_size) or (max_batch_size,)
