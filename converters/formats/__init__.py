"""Artifact formats Triton serves, listed once: ONNX, TorchScript, SavedModel."""
from __future__ import annotations

from .base import ArtifactFormat, Runner
from .onnx import OnnxFormat
from .savedmodel import SavedModelFormat
from .torchscript import TorchScriptFormat

FORMATS: dict[str, ArtifactFormat] = {f.name: f for f in (OnnxFormat(), TorchScriptFormat(), SavedModelFormat())}


def get(name: str) -> ArtifactFormat:
    return FORMATS[name]


__all__ = ["FORMATS", "ArtifactFormat", "Runner", "get"]
