"""From a built model and its sidecar's pre/postprocessing to verified step and ensemble entries.

Verification runs raw sample input two ways and compares the answers:
- served path: the step templates' own batch functions around the converted artifact;
- source path: the source framework's own tools (pandas for rows, TensorFlow for images) feeding
  the source model.
Every output the ensemble answers must agree within the entry's atol/rtol; with ``classify`` the
top-k labels of each row (what Triton's classification extension will name) must be the same too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from tritonforge import verify
from tritonforge.errors import BuildError
from tritonforge.verify import OutputError

from . import wiring
from .library import Classification, ModelFacts, StepModel, make_step, top_classes

Run = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Entry:
    """One repository entry to write: a step (with its template) or the ensemble (with its samples)."""

    name: str
    config: mc.ModelConfig
    template: Any = None  # Path of the step's model.py
    files: tuple = ()  # (name, source path) of files to copy beside model.py
    requirements: tuple[str, ...] = ()  # what the step imports beyond numpy and Pillow
    samples: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None = None
    labels: tuple[str, ...] | None = None  # written beside config.pbtxt as labels.txt (the ensemble's label_filename)


def ensemble_name(model: str) -> str:
    return f"{model}_ensemble"


def plan(model_name: str, source: str, sidecar, facts: ModelFacts, model_config: mc.ModelConfig,
         samples: dict[str, np.ndarray], run_artifact: Run, run_source: Run,
         atol: float, rtol: float) -> tuple[list[Entry], tuple[OutputError, ...]]:
    """Build and verify the ensemble around ``model_config``; nothing is written here."""
    pre = make_step("preprocess", sidecar.preprocess, facts, source) if sidecar.preprocess else None
    after = make_step("postprocess", sidecar.postprocess, facts, source) if sidecar.postprocess else None
    # classify is done by Triton itself (no Python step); a user postprocess is a Python step.
    classification = after if isinstance(after, Classification) else None
    post = None if classification else after
    mbs = model_config.max_batch_size
    if mbs == 0:
        raise BuildError(f"{source}: ensembles need a model with a dynamic batch dimension")
    steps = [(f"{model_name}_{s.role}", s) for s in (pre, post) if s]
    configs = {name: wiring.step_config(name, step, mbs) for name, step in steps}
    chain = ([configs[f"{model_name}_preprocess"]] if pre else []) + [model_config] + ([configs[f"{model_name}_postprocess"]] if post else [])
    ensemble = wiring.ensemble_config(ensemble_name(model_name), chain, classification)

    raw = raw_samples(pre, samples)
    try:
        served = _served(pre, post, raw, run_artifact)
        expected = _source(pre, post, raw, run_source)
    except (ValueError, TypeError) as exc:
        hint = "; give 'samples' in the user step" if pre and pre.kind == "user" and pre.samples is None else ""
        raise BuildError(f"{source}: ensemble '{ensemble.name}' fails on the sample rows ({type(exc).__name__}: {exc}){hint}") from None
    names = [t.name for t in ensemble.output]
    errors = tuple(verify.compare_one(n, expected[n], served[n], atol, rtol) for n in names)
    if not all(e.ok for e in errors):
        raise BuildError(f"{source}: ensemble '{ensemble.name}' does not match the source pipeline: {verify.describe_mismatch(errors)}")
    if classification:
        _same_top_classes(source, ensemble.name, classification, served, expected)
    entries = [Entry(name, configs[name], template=step.template, files=step.files,
                     requirements=tuple(step.settings.get("requirements", ()))) for name, step in steps]
    labelled = any(t.label_filename for t in ensemble.output)
    entries.append(Entry(ensemble.name, ensemble, samples=(raw, {n: expected[n] for n in names}),
                         labels=facts.labels if labelled else None))
    return entries, errors


def _same_top_classes(source: str, ensemble: str, classification: Classification, served, expected) -> None:
    """The labels Triton will name for each row (top-k, best first) are the source pipeline's."""
    ours, theirs = top_classes(served, classification), top_classes(expected, classification)
    for row, (got, wanted) in enumerate(zip(ours, theirs)):
        if got != wanted:
            raise BuildError(f"{source}: ensemble '{ensemble}' does not match the source pipeline: row {row} "
                             f"top-{classification.top_k} classes {got}, source {wanted}")


def _served(pre: StepModel | None, post: StepModel | None, raw, run_artifact: Run) -> dict[str, np.ndarray]:
    features = pre.run(raw) if pre else raw
    outputs = run_artifact(features)
    return post.run(outputs) if post else outputs


def _source(pre: StepModel | None, post: StepModel | None, raw, run_source: Run) -> dict[str, np.ndarray]:
    features = pre.step.reference(raw, pre) if pre else raw
    outputs = run_source(features)
    return post.step.reference(outputs, post) if post else outputs


def raw_samples(pre: StepModel | None, samples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What clients of the ensemble send, made to carry the model's own sample rows where possible."""
    return pre.step.raw_samples(pre, samples) if pre else samples
