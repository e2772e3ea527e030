"""Defaults shared by the adapters."""
from __future__ import annotations

from typing import Any

import numpy as np

from tritonforge.repository import Signature


class AdapterBase:
    framework = "?"
    formats: tuple[str, ...] = ("onnx",)
    neural = False
    accepts_missing = False  # NaN is a legal input value (trees route missing values)

    def sample_inputs(self, model: Any, signature: Signature, rows: int, rng: np.random.Generator) -> dict[str, np.ndarray] | None:
        return None

    def labels(self, model: Any) -> tuple[str, ...] | None:
        return None

    def row_coverage(self, model: Any, rows: dict[str, np.ndarray]) -> tuple[str, ...]:
        """What verification rows exercised that only the model can tell ("unseen categories")."""
        return ()

    def feature_names(self, model: Any) -> tuple[str, ...] | None:
        """Names of the columns of a single matrix input, when the model knows them."""
        return None

    def mismatch_hint(self, model: Any) -> str:
        return ""


def by_position(signature: Signature, outputs: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Name a framework's ordered outputs after the artifact's outputs."""
    if len(outputs) != len(signature.outputs):
        raise ValueError(f"source model gave {len(outputs)} output(s), the artifact has {len(signature.outputs)}")
    return {spec.name: np.asarray(value) for spec, value in zip(signature.outputs, outputs)}
