"""Fused entries: a planned Python-step ensemble made one ONNX graph by its fuser
(:mod:`tritonforge.ensembles.fused`), verified against the Python steps' answers, configured for
ONNX Runtime, loaded by the bundled Triton, and handed to the build as one more entry.

The fuser decides what the graph is; everything here is the same for every fuser."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from .. import converters, verify
from ..converters.probe import one_line
from ..ensembles import Entry, fused
from ..errors import BuildError
from ..verify import OutputError
from . import configure
from .files import stage_entry

FUSED_FILE = "model.onnx"


class CannotFuse(Exception):
    """The steps cannot be fused here: the report's SKIPPED line says why; nothing else changes."""


def fused_entry(pipeline: fused.Pipeline, build, scratch: Path) -> tuple[Entry, tuple[OutputError, ...]]:
    """The verified fused entry of ``pipeline``, its graph saved under ``scratch``; raises
    :class:`CannotFuse` with the fuser's reason, or BuildError when the graph answers otherwise."""
    outcome = fused.fuse(pipeline)
    if isinstance(outcome, str):
        raise CannotFuse(outcome)
    path = scratch / pipeline.name / FUSED_FILE
    path.parent.mkdir(parents=True)
    _save(outcome.model, path)
    signature = converters.FORMATS["onnx"].read_signature(path, None)
    config = configure.build_config(pipeline.name, configure.ONNX_PLATFORM, signature, _settings(build, outcome))
    if outcome.libraries:
        from ..repository import op_libraries  # only fusers that need a custom-op library reach it

        config = op_libraries.configure(config, outcome.libraries)
    labels = _classification(pipeline, config)
    answers, errors = _verify(pipeline, outcome, path, config)
    samples = _stored_samples(outcome, answers)
    return Entry(pipeline.name, config, files=((FUSED_FILE, path),), samples=samples, labels=labels), errors


def _classification(pipeline: fused.Pipeline, config) -> tuple[str, ...] | None:
    """The ensemble's Triton classification on the fused entry's outputs of the same names: their
    ``label_filename`` (its labels, written beside the config) and the ensemble's parameters
    (``tritonforge_top_k``: the class count clients ask for), so class_count requests answer alike."""
    ensemble = pipeline.ensemble.config
    labelled = {o.name: o.label_filename for o in ensemble.output if o.label_filename}
    for output in config.output:
        if output.name in labelled:
            output.label_filename = labelled[output.name]
    for key, value in ensemble.parameters.items():
        if key not in config.parameters:
            config.parameters[key].CopyFrom(value)
    return pipeline.ensemble.labels if any(o.label_filename for o in config.output) else None


def _save(model, path: Path) -> None:
    import onnx

    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _settings(build, outcome: fused.Fused) -> configure.ServingSettings:
    """As the model is served (kind, instances, batching), without warmup (an entry written
    beside the model carries no warmup files) and without class names (the graph names them)."""
    sidecar = build.sidecar
    max_batch_size = build.settings.max_batch_size if outcome.batched else 0
    return configure.ServingSettings(max_batch_size, build.kind, sidecar.instances, None, False, sidecar.batching,
                                     False, sidecar.tensorrt, sidecar.onnxruntime)


def _verify(pipeline: fused.Pipeline, outcome: fused.Fused, path: Path, config):
    """The graph's answers to every request, each compared with the Python steps' by the fuser."""
    run = _runner(path, config)
    fuser = fused.fuser_for(pipeline)
    answers, worst = [], {}
    for index, (request, expected) in enumerate(zip(outcome.requests, outcome.expected)):
        try:
            answer = run(request)
        except Exception as exc:
            raise BuildError(f"fused entry '{pipeline.name}' fails on sample request {index}: {one_line(exc)}") from None
        errors = fuser.compare(pipeline, expected, answer)
        if not all(e.ok for e in errors):
            raise BuildError(f"fused entry '{pipeline.name}' does not match ensemble '{pipeline.ensemble.name}' on sample "
                             f"request {index}: {verify.describe_mismatch(errors)}")
        for error in errors:
            if error.name not in worst or error.max_abs > worst[error.name].max_abs:
                worst[error.name] = error
        answers.append(answer)
    return answers, tuple(worst.values())


def _runner(path: Path, config):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    if config.model_operations.op_library_filename:
        from ..repository import op_libraries

        options = op_libraries.session_options_for(config, options)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, inputs)))

    return run


def _stored_samples(outcome: fused.Fused, answers: list[dict[str, np.ndarray]]):
    """What check-repo and the validate stage ask the served entry: for a batching graph every
    request in one batch where they stack, else the first request; with the graph's own answers."""
    if outcome.batched and len(outcome.requests) > 1:
        try:
            inputs = {k: np.concatenate([r[k] for r in outcome.requests]) for k in outcome.requests[0]}
            outputs = {k: np.concatenate([a[k] for a in answers]) for k in answers[0]}
            return inputs, outputs
        except ValueError:
            pass  # rows of different shapes (padded outputs): one request
    return outcome.requests[0], answers[0]


def validate(entry: Entry, build) -> None:
    """The bundled Triton loads the fused entry from a scratch copy and answers its samples (with ``validate``)."""
    validator = build.context.validator
    if validator is None:
        return
    with tempfile.TemporaryDirectory(prefix="tritonforge-fused-") as scratch:
        staged = Path(scratch) / entry.name
        staged.mkdir()
        stage_entry(staged, entry, 1)
        validator.check(entry.name, staged, 1, build.source.path.name, f"ensemble '{entry.name[:-len(fused.FUSED_SUFFIX)]}'")
