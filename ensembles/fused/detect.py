"""``detect``: the detection ensemble (letterbox -> detector -> NMS) as one ONNX graph (work in progress)."""
from __future__ import annotations

from .base import Fused, Fuser, Pipeline


class DetectFuser(Fuser):
    kind = "detect"

    def fuse(self, pipeline: Pipeline) -> Fused | str:
        return "the detection fuser is not written yet"
