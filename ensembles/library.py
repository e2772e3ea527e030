"""The step library: each step turns the model's signature and its sidecar settings into a step model.

A sidecar names steps like this::

    preprocess: {step: tabular, format: auto}           # JSON objects or CSV lines -> model inputs
    preprocess: {step: image, mean: [0.5], std: [0.5]}  # PNG/JPEG bytes -> image tensor
    postprocess: {step: classify, top_k: 3}             # scores or logits -> top-k labels and scores
    preprocess: {step: user, file: steps.py, function: prepare,      # your own function
                 inputs: [{name: TEXT, shape: [-1, 1], dtype: string}], requirements: [pillow]}
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tritonforge.errors import BuildError
from tritonforge.repository import DYNAMIC, Signature, TensorSpec
from tritonforge.sidecar import tensor_list

STEPS_DIR = Path(__file__).parent / "steps"
RAW = "RAW"
STRING = np.dtype(object)


@dataclass(frozen=True)
class StepModel:
    """One Python-backend model of an ensemble: its template, tensors and settings."""

    kind: str  # the step's name in the library
    role: str  # preprocess or postprocess
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    settings: dict[str, Any]  # goes into the config as the JSON parameter the template reads
    files: tuple[tuple[str, Path], ...] = ()  # extra files beside model.py: (name, source path)
    samples: dict[str, np.ndarray] | None = None  # raw rows a user preprocess step gives for verification

    @property
    def template(self) -> Path:
        return STEPS_DIR / f"{self.kind}.py"

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The template's own batch function, in-process: what the served step will compute."""
        return _RUNNERS[self.kind](load_template(self.kind), inputs, self)


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


def load_template(kind: str):
    spec = importlib.util.spec_from_file_location(f"tritonforge_step_{kind}", STEPS_DIR / f"{kind}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _settings(where: str, raw: dict, allowed: dict[str, Any]) -> dict[str, Any]:
    unknown = set(raw) - set(allowed) - {"step"}
    if unknown:
        raise BuildError(f"{where}: unknown key '{sorted(unknown)[0]}' (allowed: {', '.join(['step', *allowed])})")
    return {key: raw.get(key, default) for key, default in allowed.items()}


def tabular(where: str, raw: dict, facts: ModelFacts) -> StepModel:
    settings = _settings(where, raw, {"format": "auto", "fields": None, "allow_missing": None})
    if settings["format"] not in ("auto", "json", "csv"):
        raise BuildError(f"{where}: 'format' must be auto, json or csv, got {settings['format']!r}")
    outputs = []
    for spec in facts.signature.inputs:
        if len(spec.shape) != 2 or spec.shape[1] == DYNAMIC:
            raise BuildError(f"{where}: tabular rows need 2-D inputs of known width, '{spec.name}' is {list(spec.shape)}")
        width = spec.shape[1]
        if width == 1 and len(facts.signature.inputs) > 1:
            fields = [spec.name]  # one input per DataFrame column
        else:
            fields = list(settings["fields"] or facts.feature_names or [f"f{i}" for i in range(width)])
        if len(fields) != width:
            raise BuildError(f"{where}: {len(fields)} field names for input '{spec.name}' of width {width}")
        outputs.append({"name": spec.name, "dtype": "string" if spec.dtype == STRING else spec.dtype.name, "fields": fields})
    allow_missing = facts.accepts_missing if settings["allow_missing"] is None else bool(settings["allow_missing"])
    step = {"format": settings["format"], "outputs": outputs, "allow_missing": allow_missing}
    return StepModel("tabular", "preprocess", (TensorSpec(RAW, STRING, (DYNAMIC, 1)),), facts.signature.inputs, step)


def image(where: str, raw: dict, facts: ModelFacts) -> StepModel:
    settings = _settings(where, raw, {"mean": None, "std": None, "scale": 1 / 255, "layout": "auto"})
    if len(facts.signature.inputs) != 1 or len(facts.signature.inputs[0].shape) != 4:
        raise BuildError(f"{where}: the image step needs one 4-D image input, the model takes {facts.signature.describe()}")
    spec = facts.signature.inputs[0]
    _, a, b, c = spec.shape
    layout = settings["layout"]
    if layout == "auto":
        layout = "NCHW" if a in (1, 3) and c not in (1, 3) else "NHWC"
    if layout not in ("NCHW", "NHWC"):
        raise BuildError(f"{where}: 'layout' must be auto, NCHW or NHWC, got {layout!r}")
    channels, height, width = (a, b, c) if layout == "NCHW" else (c, a, b)
    if channels not in (1, 3) or DYNAMIC in (height, width):
        raise BuildError(f"{where}: cannot read channels/height/width from input '{spec.name}' {list(spec.shape)} as {layout}")
    mean = settings["mean"] or [0.0] * channels
    std = settings["std"] or [1.0] * channels
    if len(mean) != channels or len(std) != channels:
        raise BuildError(f"{where}: 'mean' and 'std' need {channels} values, one per channel")
    step = {"output": spec.name, "dtype": spec.dtype.name, "layout": layout, "height": height, "width": width,
            "channels": channels, "scale": float(settings["scale"]), "mean": [float(m) for m in mean],
            "std": [float(s) for s in std]}
    return StepModel("image", "preprocess", (TensorSpec(RAW, STRING, (DYNAMIC, 1)),), (spec,), step)


def classify(where: str, raw: dict, facts: ModelFacts) -> StepModel:
    settings = _settings(where, raw, {"top_k": 3, "softmax": "auto"})
    if not facts.labels or not facts.scores_output:
        raise BuildError(f"{where}: the classify step needs class names: give 'labels' in the sidecar")
    scores = next(s for s in facts.signature.outputs if s.name == facts.scores_output)
    softmax = (not facts.outputs_are_probabilities) if settings["softmax"] == "auto" else bool(settings["softmax"])
    k = min(int(settings["top_k"]), len(facts.labels))
    step = {"input": scores.name, "labels": list(facts.labels), "top_k": k, "softmax": softmax}
    outputs = (TensorSpec("LABELS", STRING, (DYNAMIC, k)), TensorSpec("SCORES", np.dtype(np.float32), (DYNAMIC, k)))
    return StepModel("classify", "postprocess", (scores,), outputs, step)


def _tensors(where: str, key: str, raw: Any) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(i.name, i.dtype, i.shape) for i in tensor_list(f"{where} {key}", raw))


def user(where: str, raw: dict, facts: ModelFacts, role: str) -> StepModel:
    settings = _settings(where, raw, {"file": None, "function": None, "inputs": None, "outputs": None, "requirements": [],
                                      "samples": None})
    if not settings["file"] or not settings["function"]:
        raise BuildError(f"{where}: a user step needs 'file' (a .py beside the model) and 'function'")
    path = facts.folder / settings["file"]
    if not path.is_file():
        raise BuildError(f"{where}: user step file '{settings['file']}' does not exist")
    requirements = [str(r) for r in settings["requirements"] or []]
    missing = [r for r in requirements if importlib.util.find_spec(_module_of(r)) is None]
    if missing:
        raise BuildError(f"{where}: the user step needs {', '.join(missing)}, which is not installed here, so it cannot be verified")
    if role == "preprocess":
        if not settings["inputs"]:
            raise BuildError(f"{where}: a user preprocess step needs 'inputs' (what clients send)")
        inputs, outputs = _tensors(where, "inputs", settings["inputs"]), facts.signature.inputs
    else:
        if not settings["outputs"]:
            raise BuildError(f"{where}: a user postprocess step needs 'outputs' (what clients get)")
        inputs, outputs = facts.signature.outputs, _tensors(where, "outputs", settings["outputs"])
    template = load_template("user")
    try:
        template.load_function(str(path.parent), {"file": path.name, "function": settings["function"]})
    except Exception as exc:
        raise BuildError(f"{where}: cannot load {settings['function']} from {settings['file']} ({type(exc).__name__}: {exc})") from None
    step = {"file": "user_step.py", "function": settings["function"], "inputs": [t.name for t in inputs],
            "outputs": [t.name for t in outputs], "requirements": requirements}
    samples = _user_samples(where, settings["samples"], inputs) if role == "preprocess" and settings["samples"] else None
    return StepModel("user", role, inputs, outputs, step, files=(("user_step.py", path),), samples=samples)


def _user_samples(where: str, raw: Any, inputs: tuple[TensorSpec, ...]) -> dict[str, np.ndarray]:
    """Inline sample rows for a user preprocess step: {input name: [row, row, ...]}."""
    names = [t.name for t in inputs]
    if not isinstance(raw, dict) or set(raw) != set(names) or not all(isinstance(v, list) and v for v in raw.values()):
        raise BuildError(f"{where}: 'samples' must map each input ({', '.join(names)}) to a list of rows")
    arrays = {}
    for spec in inputs:
        rows = raw[spec.name]
        dtype = object if spec.dtype == STRING else spec.dtype
        value = np.array([r.encode() if isinstance(r, str) else r for r in rows] if dtype is object else rows, dtype=dtype)
        arrays[spec.name] = value.reshape((len(rows),) + tuple(1 if d == DYNAMIC else d for d in spec.shape[1:]))
    if len({len(v) for v in arrays.values()}) != 1:
        raise BuildError(f"{where}: 'samples' lists need the same number of rows")
    return arrays


def _module_of(requirement: str) -> str:
    """The import name of a requirement such as 'Pillow>=10' (a few differ from the package name)."""
    import re

    name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].strip().lower()
    return {"pillow": "PIL", "scikit-learn": "sklearn", "opencv-python": "cv2", "pyyaml": "yaml"}.get(name, name.replace("-", "_"))


def _run_user(module, inputs: dict, step: StepModel) -> dict:
    _, path = step.files[0]
    function = module.load_function(str(path.parent), {"file": path.name, "function": step.settings["function"]})
    return module.call(function, {name: inputs[name] for name in step.settings["inputs"]}, step.settings)


STEPS: dict[str, Callable[..., StepModel]] = {
    "tabular": tabular,
    "image": image,
    "classify": classify,
    "user": user,
}
ROLES = {"tabular": "preprocess", "image": "preprocess", "classify": "postprocess", "user": "either"}

_RUNNERS: dict[str, Callable[[Any, dict, StepModel], dict]] = {
    "tabular": lambda module, inputs, step: module.rows_to_inputs(inputs[RAW].reshape(-1).tolist(), step.settings),
    "image": lambda module, inputs, step: {step.settings["output"]: module.images_to_input(inputs[RAW].reshape(-1).tolist(), step.settings)},
    "classify": lambda module, inputs, step: dict(zip(("LABELS", "SCORES"), module.top_k(inputs[step.settings["input"]], step.settings))),
    "user": _run_user,
}


def make_step(role: str, raw: Any, facts: ModelFacts, source: str) -> StepModel:
    where = f"{source}: {role}"
    if not isinstance(raw, dict) or "step" not in raw:
        raise BuildError(f"{where}: must be a mapping with 'step' (one of: {', '.join(STEPS)})")
    kind = raw["step"]
    if kind not in STEPS:
        raise BuildError(f"{where}: unknown step {kind!r} (the library has: {', '.join(STEPS)})")
    if ROLES[kind] == "either":
        return STEPS[kind](where, raw, facts, role)
    if ROLES[kind] != role:
        raise BuildError(f"{where}: step '{kind}' is a {ROLES[kind]} step")
    return STEPS[kind](where, raw, facts)


def settings_json(step: StepModel) -> str:
    return json.dumps(step.settings, sort_keys=True)
