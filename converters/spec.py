"""Small typed values that describe a model's contract: tensors, signatures and build results."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DYNAMIC = -1


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor, batch dimension included.

    >>> TensorSpec("input", np.dtype("float32"), (-1, 28, 28, 1))
    Strings are ``np.dtype(object)``; a dynamic dimension is ``-1``.
    """

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def batch_dynamic(self) -> bool:
        return len(self.shape) > 0 and self.shape[0] == DYNAMIC

    def describe(self) -> str:
        dims = "x".join("?" if d == DYNAMIC else str(d) for d in self.shape)
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


def dtype_label(dtype: np.dtype) -> str:
    return "string" if dtype == np.dtype(object) else np.dtype(dtype).name


@dataclass(frozen=True)
class OutputError:
    """How far the converted artifact's output is from the source model's."""

    name: str
    max_abs: float
    max_rel: float
    atol: float
    rtol: float
    ok: bool


@dataclass(frozen=True)
class BuildResult:
    """The outcome of building one model: one line of the report and one manifest record."""

    name: str
    source: str
    framework: str = "?"
    format: str = "?"
    signature: Signature | None = None
    version: int | None = None
    status: str = "FAILED"  # OK, UNCHANGED or FAILED
    reason: str = ""
    errors: tuple[OutputError, ...] = ()
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status in ("OK", "UNCHANGED")

    @property
    def max_error(self) -> float | None:
        return max((e.max_abs for e in self.errors), default=None)
