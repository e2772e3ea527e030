"""What every step shares: the step model a build writes, the facts of the model it wraps, and
the :class:`Step` a library entry implements.

A step is one registered object (see :mod:`tritonforge.ensembles.library`) that knows:
- how it is configured: :meth:`Step.configure` turns sidecar settings and the model's facts into
  a :class:`StepModel` (tensors and the JSON settings the template reads), or, for what Triton
  does itself with no Python step, a :class:`Classification`;
- its template: ``ensembles/steps/<name>.py``, a complete Triton ``model.py``;
- what it computes in-process: :meth:`Step.run` calls the template's own batch function;
- its reference implementation: :meth:`Step.reference`, the source framework's own tools, for
  verification (a step with none is its own reference);
- its sample inputs: :meth:`Step.raw_samples`, what clients would send, carrying the model's rows.
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tritonforge import verify
from tritonforge.errors import BuildError
from tritonforge.repository import STRING, Signature, TensorSpec

STEPS_DIR = Path(__file__).resolve().parents[1] / "steps"
RAW = "RAW"  # the BYTES input of preprocess steps; the templates spell it RAW_INPUT
STEP_PARAMETER = "tritonforge_step"  # the config parameter holding a step's JSON settings; templates repeat it

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class StepModel:
    """One Python-backend model of an ensemble: its step, tensors and settings."""

    step: "Step"
    role: str  # preprocess or postprocess
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    settings: dict[str, Any]  # goes into the config as the JSON parameter the template reads
    files: tuple[tuple[str, Path], ...] = ()  # extra files beside model.py: (name, source path)
    samples: Arrays | None = None  # raw rows a user preprocess step gives for verification

    @property
    def kind(self) -> str:
        return self.step.name

    @property
    def template(self) -> Path:
        return self.step.template

    def run(self, inputs: Arrays) -> Arrays:
        """The template's own batch function, in-process: what the served step will compute."""
        return self.step.run(load_template(self.kind), inputs, self)


@dataclass(frozen=True)
class Classification:
    """A postprocess that Triton does itself: the ensemble answers the model's scores output with
    its ``label_filename``, and Triton's classification extension turns a request's
    ``class_count: k`` into "score:index:label" for the k best classes. No Python step runs."""

    step: "Step"
    output: TensorSpec  # the model's scores output, which becomes the ensemble's only output
    labels: tuple[str, ...]
    top_k: int  # the class count clients ask for by default (a config parameter of the ensemble)

    @property
    def kind(self) -> str:
        return self.step.name


@dataclass(frozen=True)
class ModelFacts:
    """What a step needs to know of the model it wraps."""

    signature: Signature
    feature_names: tuple[str, ...] | None  # names of the columns of a single matrix input
    accepts_missing: bool  # NaN is a legal value (trees route it)
    labels: tuple[str, ...] | None
    scores_output: str | None  # the output that labels describe
    outputs_are_probabilities: bool
    folder: Path = Path(".")  # where the sidecar's relative paths (a user step's file) start
    source: Path | None = None  # the model's own file or folder (a text step reads its tokenizer there)


class Step:
    """A library entry. Subclasses set ``name``, ``role`` (preprocess, postprocess or either) and
    ``allowed`` (sidecar keys and defaults), and implement :meth:`configure` and :meth:`run`."""

    name: str = ""
    role: str = "preprocess"
    allowed: dict[str, Any] = {}

    @property
    def template(self) -> Path:
        return STEPS_DIR / f"{self.name}.py"

    def settings(self, where: str, raw: dict) -> dict[str, Any]:
        unknown = set(raw) - set(self.allowed) - {"step"}
        if unknown:
            raise BuildError(f"{where}: unknown key '{sorted(unknown)[0]}' (allowed: {', '.join(['step', *self.allowed])})")
        return {key: raw.get(key, default) for key, default in self.allowed.items()}

    def configure(self, where: str, raw: dict, facts: ModelFacts, role: str) -> "StepModel | Classification":
        raise NotImplementedError

    def run(self, module, inputs: Arrays, step: StepModel) -> Arrays:
        raise NotImplementedError

    def reference(self, values: Arrays, step: StepModel) -> Arrays:
        """The source framework's own implementation; by default the step is its own reference."""
        return step.run(values)

    def raw_samples(self, step: StepModel, samples: Arrays) -> Arrays:
        """What clients of the ensemble send, made from the model's own sample ``samples``."""
        rows = len(next(iter(samples.values())))
        return step.samples or verify.sample_inputs(Signature(step.inputs, ()), rows, np.random.default_rng(0))


def load_template(kind: str):
    spec = importlib.util.spec_from_file_location(f"tritonforge_step_{kind}", STEPS_DIR / f"{kind}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def raw_input() -> TensorSpec:
    """The one BYTES column a preprocess step takes: one encoded row or image per batch row."""
    return TensorSpec(RAW, STRING, (-1, 1))


def settings_json(step: StepModel) -> str:
    return json.dumps(step.settings, sort_keys=True)
