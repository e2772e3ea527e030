"""Fused pipelines: a Python-step ensemble's pre- and post-processing inside one ONNX graph.

:data:`FUSERS` is the registry, keyed by the kind of planned ensemble a fuser replaces (``detect``,
``image``, ``text``); a fuser is one module here with one registered :class:`~.base.Fuser`. The
contract (what a fuser is given, what it returns, what the build does with it) is in
:mod:`.base`. A new fuser is its module and one line in :data:`FUSERS`.

The build (``tritonforge.builder``) calls :func:`pipelines` and :func:`fuse`; nothing here imports it.
"""
from __future__ import annotations

from .base import FUSED_SUFFIX, Fused, Fuser, Pipeline, PlannedStep, fused_name, pipelines
from .detect import DetectFuser
from .image import ImageFuser
from .text import TextFuser

FUSERS: dict[str, Fuser] = {f.kind: f for f in (DetectFuser(), ImageFuser(), TextFuser())}


def fuse(pipeline: Pipeline) -> Fused | str:
    """The fused graph of a planned ensemble, or one line saying why there is none."""
    fuser = FUSERS.get(pipeline.kind)
    if fuser is None:
        return f"no fused form of a '{pipeline.kind}' pipeline (fusers: {', '.join(sorted(FUSERS))}); the Python steps stay"
    if pipeline.artifact is None:
        return "the model is not built as ONNX: a fused graph is the model's ONNX with the steps added; the Python steps stay"
    return fuser.fuse(pipeline)


def fuser_for(pipeline: Pipeline) -> Fuser:
    return FUSERS[pipeline.kind]


__all__ = ["FUSED_SUFFIX", "FUSERS", "Fused", "Fuser", "Pipeline", "PlannedStep", "fuse", "fused_name", "fuser_for",
           "pipelines"]
