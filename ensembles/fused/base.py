"""The contract between the build and a fuser: what a fuser is given and what it returns.

A *fused entry* does in one ONNX graph what a Python-step ensemble does in several hops
(pre-processing step -> model -> post-processing step), so one ONNX Runtime backend call answers
a request. The build plans the Python-step ensemble first (:mod:`tritonforge.ensembles.build`,
:mod:`tritonforge.ensembles.library.detect`), then, where fusion is asked for (sidecar ``fuse:
true`` or ``build-repo --fuse``), hands each planned ensemble to the fuser registered for its
kind in :data:`tritonforge.ensembles.fused.FUSERS`.

A fuser (one module, one registered :class:`Fuser` object; ``kind`` is its key in ``FUSERS``):

- gets a :class:`Pipeline`: the planned Python-step ensemble (its steps' entries with their
  settings, the ensemble entry with its verification samples: the raw inputs clients send and the
  answers the Python steps gave), the model's config and the path of its ONNX artifact;
- returns either a :class:`Fused` (the graph as an ``onnx.ModelProto``, the requests it is verified
  on with the Python-step ensemble's answers to them, the custom-op libraries it needs by name, and
  whether it batches) or a ``str``: one line saying why it cannot fuse (the build report prints it
  as a SKIPPED line for ``<ensemble>_fused``, and the Python-step ensemble stays as it is);
- may override :meth:`Fuser.compare` where "equal" is not element-wise within atol/rtol (detection:
  same count and classes, boxes within 1.5 px, scores within 2e-3).

The build (``tritonforge.builder.stages.fuse_pipelines``) does the rest, the same for every fuser:
runs the graph in ONNX Runtime on :attr:`Fused.requests` (with the libraries' session options),
compares with :meth:`Fuser.compare` (a mismatch is a FAILED line for the fused entry; the model
and its Python-step ensemble are still installed), writes the config (ONNX Runtime platform,
KIND as the model's, ``model_operations`` through ``tritonforge.repository.op_libraries.configure``
when libraries are named), has the bundled Triton load it and answer its samples (the validate
stage), and installs ``<ensemble name>_fused`` (``digits_cnn_ensemble_fused``,
``shapes_detect_fused``) beside the ensemble. The stored samples are the first request(s) and
the fused graph's own answers (which the build proved equal to the Python steps'), so check-repo
checks the served fused entry against what was verified.

Rules a fused graph keeps:
- opset <= 21 and IR version <= 10: Triton 24.10's C++ ONNX Runtime backend links ONNX Runtime 1.19;
- inputs are what the Python-step ensemble takes (``RAW`` BYTES) or, where the fuser documents it,
  raw pixels; outputs carry the ensemble's output names, dtypes and layout, so clients do not change;
- no input or output name the model's own ONNX uses for something else (graphs are merged with a
  prefix, see :func:`onnx.compose.add_prefix`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from tritonforge import verify
from tritonforge.verify import OutputError

from ..build import Entry
from ..library import STEP_PARAMETER

Arrays = dict[str, np.ndarray]
FUSED_SUFFIX = "_fused"
MAX_OPSET = 21  # ONNX Runtime 1.19 (Triton 24.10's C++ backend) runs opsets up to 21
MAX_IR_VERSION = 10


def fused_name(ensemble: str) -> str:
    return f"{ensemble}{FUSED_SUFFIX}"


@dataclass(frozen=True)
class PlannedStep:
    """One Python step of a planned ensemble: its entry, its kind (the template's name: ``image``,
    ``text``, ``letterbox``, ``detect_post``...) and the JSON settings its template reads."""

    entry: Entry
    kind: str
    settings: dict[str, Any]


@dataclass(frozen=True)
class Pipeline:
    """A planned Python-step ensemble, as a fuser is given it."""

    model: str  # the model's Triton name
    source: str  # the model's file name, for messages
    kind: str  # the key of FUSERS that fuses it: detect, image, text (tabular, user: none yet)
    ensemble: Entry  # config, samples = (raw inputs, the Python steps' answers), labels
    steps: tuple[PlannedStep, ...]  # in the order the ensemble runs them
    model_config: mc.ModelConfig
    artifact: Path | None  # the model's ONNX file; None when the model is built in another format
    atol: float
    rtol: float

    @property
    def name(self) -> str:
        """The fused entry's name: ``<ensemble name>_fused``."""
        return fused_name(self.ensemble.name)

    def step(self, kind: str) -> PlannedStep | None:
        return next((s for s in self.steps if s.kind == kind), None)


@dataclass(frozen=True)
class Fused:
    """A fused graph and what it is verified on.

    >>> Fused(model, requests=({"IMAGE": pixels},), expected=({"BOXES": ..., "COUNT": ...},), batched=False)
    """

    model: Any  # onnx.ModelProto
    requests: tuple[Arrays, ...]  # what clients send the fused entry, one request each, made from the ensemble's samples
    expected: tuple[Arrays, ...]  # the Python-step ensemble's answer to each request, by output name
    libraries: tuple[str, ...] = ()  # custom-op libraries by name (tritonforge.repository.op_libraries), e.g. ("ortextensions",)
    batched: bool = True  # every input and output has the batch first: max_batch_size as the model's; else 0


class Fuser:
    """A registered fuser. Subclasses set ``kind`` and implement :meth:`fuse`."""

    kind: str = ""

    def fuse(self, pipeline: Pipeline) -> Fused | str:
        raise NotImplementedError

    def compare(self, pipeline: Pipeline, expected: Arrays, actual: Arrays) -> tuple[OutputError, ...]:
        """How far the fused graph's answer to one request is from the Python steps'; by default
        every expected output within the model's atol/rtol (labels and strings exactly)."""
        return tuple(verify.compare_one(name, value, actual[name], pipeline.atol, pipeline.rtol)
                     for name, value in expected.items())


def step_kind(entry: Entry) -> str:
    """A step entry's kind: its template's name (``ensembles/steps/<kind>.py``)."""
    return Path(entry.template).stem


def step_settings(entry: Entry) -> dict[str, Any]:
    parameters = entry.config.parameters
    return json.loads(parameters[STEP_PARAMETER].string_value) if STEP_PARAMETER in parameters else {}


# A planned ensemble's kind, from its steps: detection has two steps of its own; the others are
# named by their preprocess step.
DETECT_STEPS = ("letterbox", "detect_post")


def pipeline_kind(steps: tuple[PlannedStep, ...]) -> str:
    kinds = [s.kind for s in steps]
    if any(k in DETECT_STEPS for k in kinds):
        return "detect"
    return kinds[0] if kinds else "classify"  # an ensemble with no Python step: Triton's classification alone


def pipelines(model: str, source: str, entries: list[Entry], model_config: mc.ModelConfig, artifact: Path | None,
              atol: float, rtol: float) -> list[Pipeline]:
    """The planned ensembles among ``entries`` (a build's step and ensemble entries), each with
    its steps in the order its ``ensemble_scheduling`` runs them."""
    by_name = {e.name: e for e in entries}
    found = []
    for ensemble in (e for e in entries if e.samples is not None and e.config.platform == "ensemble"):
        chain = [by_name[s.model_name] for s in ensemble.config.ensemble_scheduling.step if s.model_name in by_name]
        steps = tuple(PlannedStep(e, step_kind(e), step_settings(e)) for e in chain if e.template)
        found.append(Pipeline(model, source, pipeline_kind(steps), ensemble, steps, model_config, artifact, atol, rtol))
    return found
