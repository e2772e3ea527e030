"""The step library: one registered :class:`~.base.Step` per file, listed once in :data:`STEPS`.

A sidecar names steps like this::

    preprocess: {step: tabular, format: auto}           # JSON objects or CSV lines -> model inputs
    preprocess: {step: image, mean: [0.5], std: [0.5]}  # PNG/JPEG bytes -> image tensor
    preprocess: {step: text}                            # UTF-8 strings -> token arrays (HuggingFace folders)
    postprocess: {step: classify, top_k: 3}             # the scores with labels: Triton's classification extension
    preprocess: {step: user, file: steps.py, function: prepare,      # your own function
                 inputs: [{name: TEXT, shape: [-1, 1], dtype: string}], requirements: [pillow]}

A new step is a new module here with its :class:`~.base.Step` subclass, listed in :data:`STEPS`,
and (for a Python step) its template ``ensembles/steps/<name>.py``. ``classify`` has no template:
Triton answers labels with scores itself (:class:`~.base.Classification`).
"""
from __future__ import annotations

from typing import Any

from tritonforge.errors import BuildError

from .base import RAW, STEP_PARAMETER, STEPS_DIR, Classification, ModelFacts, Step, StepModel, load_template, settings_json
from .classify import TOP_K_PARAMETER, ClassifyStep, top_classes
from .image import ImageStep
from .tabular import TabularStep
from .text import TextStep
from .user import UserStep

STEPS: dict[str, Step] = {s.name: s for s in (TabularStep(), ImageStep(), ClassifyStep(), UserStep(), TextStep())}


def make_step(role: str, raw: Any, facts: ModelFacts, source: str) -> StepModel | Classification:
    """The step a sidecar's ``preprocess``/``postprocess`` names, configured for this model: a Python
    step (:class:`StepModel`) or what Triton does itself (:class:`Classification`)."""
    where = f"{source}: {role}"
    if not isinstance(raw, dict) or "step" not in raw:
        raise BuildError(f"{where}: must be a mapping with 'step' (one of: {', '.join(STEPS)})")
    kind = raw["step"]
    if kind not in STEPS:
        raise BuildError(f"{where}: unknown step {kind!r} (the library has: {', '.join(STEPS)})")
    step = STEPS[kind]
    if step.role not in ("either", role):
        raise BuildError(f"{where}: step '{kind}' is a {step.role} step")
    return step.configure(where, raw, facts, role)


__all__ = ["RAW", "STEPS", "STEPS_DIR", "STEP_PARAMETER", "TOP_K_PARAMETER", "Classification", "ModelFacts", "Step",
           "StepModel", "load_template", "make_step", "settings_json", "top_classes"]
