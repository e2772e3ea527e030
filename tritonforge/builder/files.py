"""What every entry writes beside its version folders, and facts the build records of it."""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np

from ..repository import Signature
from ..repository import config as config_file
from ..repository.layout import LABELS_FILE, WARMUP_DIR, warmup_file

TOOLS = ("tritonforge", "onnx", "onnxruntime", "skl2onnx", "onnxmltools", "tf2onnx", "tensorflow", "keras",
         "torch", "scikit-learn", "xgboost", "lightgbm", "treelite")


def write_model_files(staged: Path, model_config, variants: dict, kept: dict[str, str], labels: tuple[str, ...] | None,
                       samples: dict[str, np.ndarray], signature: Signature) -> None:
    """The configs, the labels file and the warmup rows beside the version folder."""
    config_file.write_model(staged, model_config, variants, kept)
    if labels:
        (staged / LABELS_FILE).write_text("\n".join(labels) + "\n")
    if model_config.model_warmup:
        warm = staged / WARMUP_DIR
        warm.mkdir()
        for index, spec in enumerate(signature.inputs):
            (warm / warmup_file(index)).write_bytes(config_file.warmup_bytes(samples[spec.name][0]))


def are_probabilities(scores: np.ndarray | None) -> bool:
    if scores is None or scores.dtype.kind != "f":
        return False
    return bool(np.all(scores >= 0) and np.all(scores <= 1) and np.allclose(scores.sum(axis=-1), 1, atol=1e-3))


def tool_versions() -> dict[str, str]:
    found = {}
    for name in TOOLS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found
