"""The registry of framework adapters: the build asks it and never names a framework.

The adapters are listed once, in detection order, in :mod:`.adapters` and handed to a
:class:`Registry` in :mod:`tritonforge.converters`; no adapter imports this module's state.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tritonforge.errors import BuildError
from .probe import FileProbe
from tritonforge.sidecar import Sidecar
from tritonforge.repository import Signature


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

    def row_coverage(self, model: Any, rows: dict[str, np.ndarray]) -> tuple[str, ...]:
        """What the rows exercised that only the model can tell (unseen categories), for the manifest."""

    def feature_names(self, model: Any) -> tuple[str, ...] | None:
        """Names of the columns of a single matrix input, when the model knows them."""

    def mismatch_hint(self, model: Any) -> str:
        """A known converter trap to name when verification fails, or ''."""


# Only to word the refusal of a file no adapter recognised; detection itself reads the bytes.
SUFFIX_FRAMEWORKS = {".keras": "Keras", ".h5": "Keras", ".pt2": "torch.export", ".pt": "PyTorch", ".pth": "PyTorch",
                     ".onnx": "ONNX", ".json": "XGBoost JSON", ".ubj": "XGBoost UBJSON", ".cbm": "CatBoost", ".pkl": "pickle",
                     ".joblib": "joblib"}


class Registry:
    """Adapters in detection order; the first that recognises a file's bytes loads it."""

    def __init__(self, adapters: tuple[Adapter, ...]) -> None:
        self.adapters = tuple(adapters)

    def __iter__(self):
        return iter(self.adapters)

    def detect(self, probe: FileProbe) -> Adapter:
        """The adapter that recognises this file, or a one-line refusal naming it."""
        for adapter in self.adapters:
            if adapter.detect(probe):
                return adapter
        if probe.is_pickle:
            held = probe.unpickle()  # refuses unless allowed and named as a pickle
            what = f"{type(held).__module__}.{type(held).__qualname__}"
            raise BuildError(f"{probe.path.name}: is a pickle of a {what}, not a model any adapter takes "
                             "(a scikit-learn estimator, an XGBoost, LightGBM or CatBoost model or a torch nn.Module)")
        kind = "folder" if probe.path.is_dir() else "file"
        expected = SUFFIX_FRAMEWORKS.get(probe.suffix)
        if expected and not probe.path.is_dir():
            article = "an" if expected[0] in "AEIOUX" else "a"  # an XGBoost, an ONNX
            raise BuildError(f"{probe.path.name}: named like {article} {expected} file but not readable as one (truncated or corrupt?)")
        names = ", ".join(a.framework for a in self.adapters)
        raise BuildError(
            f"{probe.path.name}: not a model this tool recognises ({kind} matched none of the "
            f"{len(self.adapters)} registered adapters: {names})"
        )
