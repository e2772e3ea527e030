"""config.pbtxt as a ``ModelConfig`` message: built from the artifact's signature, printed, parsed back."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from .errors import BuildError
from .spec import Signature, TensorSpec

LABELS_FILE = "labels.txt"
WARMUP_DIR = "warmup"

_TRITON_TYPES = {
    "bool": mc.TYPE_BOOL,
    "uint8": mc.TYPE_UINT8,
    "uint16": mc.TYPE_UINT16,
    "uint32": mc.TYPE_UINT32,
    "uint64": mc.TYPE_UINT64,
    "int8": mc.TYPE_INT8,
    "int16": mc.TYPE_INT16,
    "int32": mc.TYPE_INT32,
    "int64": mc.TYPE_INT64,
    "float16": mc.TYPE_FP16,
    "float32": mc.TYPE_FP32,
    "float64": mc.TYPE_FP64,
    "object": mc.TYPE_STRING,
}


def triton_type(dtype: np.dtype) -> int:
    try:
        return _TRITON_TYPES[np.dtype(dtype).name]
    except KeyError:
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


def warmup_file(index: int) -> str:
    return f"input_{index}"


def warmup_bytes(row: np.ndarray) -> bytes:
    """One input row in the raw layout Triton reads warmup files in (BYTES: 4-byte length + data each)."""
    if row.dtype == object or row.dtype.kind in "US":
        out = bytearray()
        for item in row.reshape(-1):
            data = item if isinstance(item, bytes) else str(item).encode()
            out += len(data).to_bytes(4, "little") + data
        return bytes(out)
    return np.ascontiguousarray(row).tobytes()


def signature_of(config: mc.ModelConfig) -> Signature:
    """The tensors a config declares, batch dimension included when it batches."""
    numpy_of = {v: np.dtype(k) for k, v in _TRITON_TYPES.items()}
    lead = (-1,) if config.max_batch_size > 0 else ()

    def specs(tensors):
        return tuple(TensorSpec(t.name, numpy_of[t.data_type], lead + tuple(t.dims)) for t in tensors)

    return Signature(specs(config.input), specs(config.output))


def render(config: mc.ModelConfig) -> str:
    text = text_format.MessageToString(config)
    parse(text)  # the text must read back as the same message
    return text


def parse(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def read(path: Path) -> mc.ModelConfig:
    return parse(path.read_text())
