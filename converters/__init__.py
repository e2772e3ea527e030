"""Framework adapters and artifact formats: what the build converts models with.

- :data:`ADAPTERS`: one adapter per framework (detect, load, convert, run for reference), in
  detection order, handed to :data:`REGISTRY`;
- :data:`FORMATS`: the artifact formats Triton serves (ONNX, TorchScript, SavedModel).

Nothing here imports the build pipeline (:mod:`tritonforge.builder`), which sits above.
"""
from .adapters import ADAPTERS
from .formats import FORMATS
from .registry import Registry

REGISTRY = Registry(ADAPTERS)

__all__ = ["ADAPTERS", "FORMATS", "REGISTRY", "Registry"]
