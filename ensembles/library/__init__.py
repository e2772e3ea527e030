"""The step library: one registered :class:`~.base.Step` per file, listed once in :data:`STEPS`.

A sidecar names steps like this::

    preprocess: {step: tabular, format: auto}           # JSON objects or CSV lines -> model inputs
    preprocess: {step: image, mean: [0.5], std: [0.5]}  # PNG/JPEG bytes -> image tensor
    postprocess: {step: classify, top_k: 3}             # scores or logits -> top-k labels and scores
    preprocess: {step: user, file: steps.py, function: prepare,      # your own function
                 inputs: [{name: TEXT, shape: [-1, 1], dtype: string}], requirements: [pillow]}

A new step is a new module here with its :class:`~.base.Step` subclass, listed in :data:`STEPS`,
and its template ``ensembles/steps/<name>.py``.
"""
from __future__ import annotations

from typing import Any

from tritonforge.errors import BuildError

from .base import RAW, STEP_PARAMETER, STEPS_DIR, ModelFacts, Step, StepModel, load_template, settings_json
from .classify import ClassifyStep
from .image import ImageStep
from .tabular import TabularStep
from .user import UserStep

STEPS: dict[str, Step] = {s.name: s for s in (TabularStep(), ImageStep(), ClassifyStep(), UserStep())}


def make_step(role: str, raw: Any, facts: ModelFacts, source: str) -> StepModel:
    """The step a sidecar's ``preprocess``/``postprocess`` names, configured for this model."""
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


__all__ = ["RAW", "STEPS", "STEPS_DIR", "STEP_PARAMETER", "ModelFacts", "Step", "StepModel", "load_template",
           "make_step", "settings_json"]
