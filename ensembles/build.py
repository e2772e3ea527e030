"""From a built model and its sidecar's pre/postprocessing to verified step and ensemble entries.

Verification runs raw sample input two ways and compares the answers:
- served path: the step templates' own batch functions around the converted artifact;
- source path: the source framework's own tools (pandas for rows, TensorFlow for images) feeding
  the source model, then an independent top-k.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from tritonforge import verify
from tritonforge.errors import BuildError
from tritonforge.repository import Signature
from tritonforge.verify import OutputError

from . import wiring
from .library import RAW, ModelFacts, StepModel, make_step

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


def ensemble_name(model: str) -> str:
    return f"{model}_ensemble"


def plan(model_name: str, source: str, sidecar, facts: ModelFacts, model_config: mc.ModelConfig,
         samples: dict[str, np.ndarray], run_artifact: Run, run_source: Run,
         atol: float, rtol: float) -> tuple[list[Entry], tuple[OutputError, ...]]:
    """Build and verify the ensemble around ``model_config``; nothing is written here."""
    pre = make_step("preprocess", sidecar.preprocess, facts, source) if sidecar.preprocess else None
    post = make_step("postprocess", sidecar.postprocess, facts, source) if sidecar.postprocess else None
    mbs = model_config.max_batch_size
    if mbs == 0:
        raise BuildError(f"{source}: ensembles need a model with a dynamic batch dimension")
    steps = [(f"{model_name}_{s.role}", s) for s in (pre, post) if s]
    configs = {name: wiring.step_config(name, step, mbs) for name, step in steps}
    chain = ([configs[f"{model_name}_preprocess"]] if pre else []) + [model_config] + ([configs[f"{model_name}_postprocess"]] if post else [])
    ensemble = wiring.ensemble_config(ensemble_name(model_name), chain)

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
    entries = [Entry(name, configs[name], template=step.template, files=step.files,
                     requirements=tuple(step.settings.get("requirements", ()))) for name, step in steps]
    entries.append(Entry(ensemble.name, ensemble, samples=(raw, {n: expected[n] for n in names})))
    return entries, errors


def _served(pre: StepModel | None, post: StepModel | None, raw, run_artifact: Run) -> dict[str, np.ndarray]:
    features = pre.run(raw) if pre else raw
    outputs = run_artifact(features)
    return post.run(outputs) if post else outputs


def _source(pre: StepModel | None, post: StepModel | None, raw, run_source: Run) -> dict[str, np.ndarray]:
    # A user's own function is its own reference: there is no other implementation to compare with.
    features = SOURCE_PREPROCESSING.get(pre.kind, _same_step(pre))(raw, pre.settings) if pre else raw
    outputs = run_source(features)
    return SOURCE_POSTPROCESSING.get(post.kind, _same_step(post))(outputs, post.settings) if post else outputs


def _same_step(step: StepModel):
    return lambda values, settings: step.run(values)


# ---- raw samples ---------------------------------------------------------------------------
def raw_samples(pre: StepModel | None, samples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What clients of the ensemble send, made to carry the model's own sample rows where possible."""
    if pre is None:
        return samples
    rows = len(next(iter(samples.values())))
    if pre.kind == "tabular":
        return {RAW: _rows(samples, pre.settings)}
    if pre.kind == "image":
        return {RAW: _images(pre.settings, rows)}
    return pre.samples or verify.sample_inputs(Signature(pre.inputs, ()), rows, np.random.default_rng(0))


def _rows(samples: dict[str, np.ndarray], settings: dict) -> np.ndarray:
    """JSON objects carrying the model's own sample rows; NaN becomes a missing field."""
    count = len(next(iter(samples.values())))
    rows = []
    for i in range(count):
        record = {}
        for output in settings["outputs"]:
            for j, field in enumerate(output["fields"]):
                value = samples[output["name"]][i, j]
                if output["dtype"] == "string":
                    record[field] = value.decode() if isinstance(value, bytes) else str(value)
                elif not np.isnan(value):
                    record[field] = float(value)
        rows.append(json.dumps(record))
    return np.array(rows, dtype=object).reshape(-1, 1)


def _images(settings: dict, rows: int) -> np.ndarray:
    """Random PNGs at the model's own size (so no resize algorithm is being compared)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    images = []
    for _ in range(rows):
        shape = (settings["height"], settings["width"]) + ((3,) if settings["channels"] == 3 else ())
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(buffer, format="PNG")
        images.append(buffer.getvalue())
    return np.array(images, dtype=object).reshape(-1, 1)


# ---- the source framework's own preprocessing and postprocessing ---------------------------------
def _pandas_rows(raw: dict[str, np.ndarray], settings: dict) -> dict[str, np.ndarray]:
    import pandas as pd

    raw = raw[RAW]
    frame = pd.DataFrame.from_records([json.loads(r) for r in raw.reshape(-1)])
    arrays = {}
    for output in settings["outputs"]:
        block = frame.reindex(columns=output["fields"])
        arrays[output["name"]] = (block.astype(object).to_numpy() if output["dtype"] == "string"
                                  else block.to_numpy(dtype=output["dtype"], na_value=np.nan))
    return arrays


def _tensorflow_images(raw: dict[str, np.ndarray], settings: dict) -> dict[str, np.ndarray]:
    import tensorflow as tf

    raw = raw[RAW]
    batch = []
    for data in raw.reshape(-1):
        image = tf.io.decode_image(data, channels=settings["channels"], expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32), (settings["height"], settings["width"]))
        batch.append(image.numpy())
    pixels = (np.stack(batch) * settings["scale"] - np.array(settings["mean"])) / np.array(settings["std"])
    if settings["layout"] == "NCHW":
        pixels = pixels.transpose(0, 3, 1, 2)
    return {settings["output"]: pixels.astype(settings["dtype"])}


def _numpy_top_k(outputs: dict[str, np.ndarray], settings: dict) -> dict[str, np.ndarray]:
    scores = np.asarray(outputs[settings["input"]], dtype=np.float64)
    if settings["softmax"]:
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores /= scores.sum(axis=1, keepdims=True)
    best = np.argsort(-scores, axis=1, kind="stable")[:, : settings["top_k"]]
    labels = np.array(settings["labels"], dtype=object)[best]
    return {"LABELS": labels, "SCORES": np.take_along_axis(scores, best, axis=1)}


SOURCE_PREPROCESSING = {"tabular": _pandas_rows, "image": _tensorflow_images}
SOURCE_POSTPROCESSING = {"classify": _numpy_top_k}
