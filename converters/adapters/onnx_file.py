"""ONNX files passed through: checked, made one self-contained file, their batch dimension detected."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tritonforge.errors import BuildError
from ..formats import get as get_format
from ..formats.onnx import save_single_file
from ..probe import FileProbe, one_line
from tritonforge.sidecar import Sidecar
from tritonforge.repository import Signature
from .base import AdapterBase
from .yolo import undeclared_head_hint


class OnnxAdapter(AdapterBase):
    framework = "onnx"
    formats = ("onnx",)
    neural = True

    def detect(self, probe: FileProbe) -> bool:
        return probe.path.is_file() and probe.suffix == ".onnx"

    def load(self, probe: FileProbe, sidecar: Sidecar) -> Any:
        import onnx

        try:
            model = onnx.load(str(probe.path))  # resolves external data beside the file
            onnx.checker.check_model(model, full_check=False)
        except Exception as exc:
            raise BuildError(f"{probe.path.name}: not a valid ONNX model ({one_line(exc)})") from None
        return {"proto": model, "path": probe.path}

    def convert(self, model: Any, sidecar: Sidecar, fmt: str, dest: Path) -> Signature | None:
        save_single_file(model["proto"], dest)
        return None

    def reference(self, model: Any, inputs: dict[str, np.ndarray], signature: Signature) -> dict[str, np.ndarray]:
        # The source framework of an ONNX file is ONNX Runtime on the file as given.
        try:
            return get_format("onnx").runner(model["path"])(inputs)
        except Exception as exc:
            hint = undeclared_head_hint(model["proto"])  # a YOLO head without metadata fails here on generic rows
            if not hint:
                raise
            raise BuildError(f"{model['path'].name}: {one_line(exc)}{hint}") from None

