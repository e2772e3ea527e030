"""``<version>/samples.npz``: sample inputs, the source framework's outputs, and the tolerances.

Keys: ``input/<name>``, ``output/<name>``, ``atol``, ``rtol``. Text is stored as unicode and
binary (encoded images) as fixed-width bytes, so that it loads back without pickle.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .layout import SAMPLES_FILE, versions

INPUT_PREFIX = "input/"
OUTPUT_PREFIX = "output/"


@dataclass(frozen=True)
class Samples:
    """What a version's samples.npz holds."""

    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    atol: float = 0.0
    rtol: float = 0.0
    # Reduced-precision entries are judged by a gate, not atol/rtol:
    # {"precision", "min_agreement", "max_error", "classifier_outputs": [...]}
    gate: dict | None = None

    @property
    def rows(self) -> int:
        return len(next(iter(self.inputs.values()))) if self.inputs else 0


def _storable(value) -> np.ndarray:
    value = np.asarray(value)
    if value.dtype != object:
        return value
    try:
        return np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else str(v), otypes=[str])(value).astype(str)
    except UnicodeDecodeError:
        return value.astype(bytes)


def write_samples(path: Path, samples: Samples) -> None:
    arrays = {f"{INPUT_PREFIX}{k}": _storable(v) for k, v in samples.inputs.items()}
    arrays.update({f"{OUTPUT_PREFIX}{k}": _storable(v) for k, v in samples.outputs.items()})
    buffer = io.BytesIO()
    extra = {"gate": np.array(json.dumps(samples.gate, sort_keys=True))} if samples.gate else {}
    np.savez(buffer, atol=np.float64(samples.atol), rtol=np.float64(samples.rtol), **extra, **arrays)
    Path(path).write_bytes(buffer.getvalue())


def read_samples(path: Path) -> Samples:
    """A samples.npz (or any npz of ``input/<name>`` / ``<name>`` arrays); never unpickles."""
    with np.load(path, allow_pickle=False) as data:
        inputs, outputs = {}, {}
        for key in data.files:
            if key.startswith(OUTPUT_PREFIX):
                outputs[key[len(OUTPUT_PREFIX):]] = data[key]
            elif key not in ("atol", "rtol", "gate"):
                inputs[key.removeprefix(INPUT_PREFIX)] = data[key]
        atol = float(data["atol"]) if "atol" in data.files else 0.0
        rtol = float(data["rtol"]) if "rtol" in data.files else 0.0
        gate = json.loads(str(data["gate"])) if "gate" in data.files else None
    return Samples(inputs, outputs, atol, rtol, gate)


def latest_samples(model_dir: Path) -> Path | None:
    """The newest version's samples.npz in a model folder (None when no version has one)."""
    model_dir = Path(model_dir)
    for version in reversed(versions(model_dir)):
        if (model_dir / str(version) / SAMPLES_FILE).is_file():
            return model_dir / str(version) / SAMPLES_FILE
    return None
