"""Adapters register here by framework name; the build asks the registry and never names a framework."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .errors import BuildError
from .probe import FileProbe
from .sidecar import Sidecar
from .spec import Signature


class Adapter(Protocol):
    """One framework: how to recognise its files, load them, convert them and run them for reference."""

    framework: str
    formats: tuple[str, ...]  # target formats it can write; the first is the default
    neural: bool  # neural networks default to GPU instances, trees and linear models to CPU
    accepts_missing: bool  # NaN is a legal input value

    def detect(self, probe: FileProbe) -> bool: ...

    def load(self, probe: FileProbe, sidecar: Sidecar) -> Any: ...

    def convert(self, model: Any, sidecar: Sidecar, fmt: str, dest: Path) -> Signature | None:
        """Write the artifact at ``dest``; return its signature when the artifact cannot tell it."""

    def reference(self, model: Any, inputs: dict[str, np.ndarray], signature: Signature) -> dict[str, np.ndarray]:
        """Run the source model on the artifact's inputs; answer keyed by the artifact's output names."""

    def sample_inputs(self, model: Any, signature: Signature, rows: int, rng: np.random.Generator) -> dict[str, np.ndarray] | None:
        """Inputs that mean something to this model (known categories, say), or None for generic ones."""

    def labels(self, model: Any) -> tuple[str, ...] | None:
        """Class names the model itself knows, or None."""

    def feature_names(self, model: Any) -> tuple[str, ...] | None:
        """Names of the columns of a single matrix input, when the model knows them."""

    def mismatch_hint(self, model: Any) -> str:
        """A known converter trap to name when verification fails, or ''."""


_ADAPTERS: dict[str, Adapter] = {}
# Only to word the refusal of a file no adapter recognised; detection itself reads the bytes.
SUFFIX_FRAMEWORKS = {".keras": "Keras", ".h5": "Keras", ".pt2": "torch.export", ".pt": "PyTorch", ".pth": "PyTorch",
                     ".onnx": "ONNX", ".json": "XGBoost JSON", ".ubj": "XGBoost UBJSON", ".pkl": "pickle",
                     ".joblib": "joblib"}


def register(adapter: Adapter) -> Adapter:
    _ADAPTERS[adapter.framework] = adapter
    return adapter


def detect(probe: FileProbe) -> Adapter:
    """The adapter that recognises this file, or a one-line refusal naming it."""
    _load_builtin()
    for adapter in _ADAPTERS.values():
        if adapter.detect(probe):
            return adapter
    kind = "folder" if probe.path.is_dir() else "file"
    expected = SUFFIX_FRAMEWORKS.get(probe.suffix)
    if expected and not probe.path.is_dir():
        raise BuildError(f"{probe.path.name}: named like a {expected} file but not readable as one (truncated or corrupt?)")
    raise BuildError(
        f"{probe.path.name}: not a model this tool recognises ({kind} matched none of the "
        f"{len(_ADAPTERS)} registered adapters: {', '.join(_ADAPTERS)})"
    )


_BUILTIN_LOADED = False


def _load_builtin() -> None:
    global _BUILTIN_LOADED
    if not _BUILTIN_LOADED:
        _BUILTIN_LOADED = True
        from . import adapters  # noqa: F401  (each adapter module registers itself)
