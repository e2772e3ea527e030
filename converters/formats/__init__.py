"""Artifact formats Triton serves, listed once: ONNX, TorchScript, SavedModel, FIL forests."""
from __future__ import annotations

from .base import ArtifactFormat, Runner
from .fil import FilFormat
from .onnx import OnnxFormat
from .savedmodel import SavedModelFormat
from .torchscript import TorchScriptFormat

FORMATS: dict[str, ArtifactFormat] = {f.name: f for f in (OnnxFormat(), TorchScriptFormat(), SavedModelFormat(), FilFormat())}


def get(name: str) -> ArtifactFormat:
    return FORMATS[name]


__all__ = ["FORMATS", "ArtifactFormat", "Runner", "get"]
