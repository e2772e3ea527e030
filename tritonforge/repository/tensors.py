"""A model's contract: its input and output tensors, batch dimension included."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .dtypes import config_type, kserve_type

DYNAMIC = -1
STRING = np.dtype(object)


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor, batch dimension included.

    >>> TensorSpec("input", np.dtype("float32"), (-1, 28, 28, 1))
    Strings are ``np.dtype(object)``; a dynamic dimension is ``-1``; ``shape`` is ``None`` only
    where an artifact does not say its rank.
    """

    name: str
    dtype: np.dtype
    shape: tuple[int, ...] | None

    @property
    def batch_dynamic(self) -> bool:
        return bool(self.shape) and self.shape[0] == DYNAMIC

    @property
    def config_type(self) -> str:
        """``TYPE_FP32``: how a config.pbtxt spells the dtype."""
        return config_type(self.dtype)

    @property
    def datatype(self) -> str:
        """``FP32``, ``BYTES``: how the KServe v2 protocol spells the dtype."""
        return kserve_type(self.dtype)

    def describe(self) -> str:
        dims = "x".join("?" if d == DYNAMIC else str(d) for d in self.shape or ())
        return f"{self.name}:{dtype_label(self.dtype)}[{dims}]"


@dataclass(frozen=True)
class Signature:
    """The inputs and outputs of a model, in order."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def batched(self) -> bool:
        """True when every tensor has a dynamic first dimension, so Triton may batch it."""
        return all(t.batch_dynamic for t in self.inputs + self.outputs)

    def describe(self) -> str:
        ins = ", ".join(t.describe() for t in self.inputs)
        outs = ", ".join(t.describe() for t in self.outputs)
        return f"{ins} -> {outs}"


_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def tensor_name(name: str) -> str:
    """A name as a Triton tensor name: kept as given where it is letters, digits, '_', '.' and '-',
    other characters (':', '/', spaces) made '_'. Those names mean the same in every backend,
    in KServe JSON, in gRPC and in a shell; a name that starts with a digit gets a leading '_'."""
    cleaned = _UNSAFE.sub("_", name) or "tensor"
    return cleaned if not cleaned[0].isdigit() else f"_{cleaned}"


def dtype_label(dtype: np.dtype) -> str:
    return "string" if np.dtype(dtype) == STRING else np.dtype(dtype).name
