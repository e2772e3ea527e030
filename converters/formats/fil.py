"""Tree ensembles in their own files, served by Triton's FIL backend (``backend: "fil"``).

FIL loads XGBoost JSON, LightGBM text and Treelite checkpoints directly: nothing is converted,
so the artifact is the framework's own file under the name FIL looks for. FIL's tensors are
always ``input__0`` (FP32, one row of features, NaN for missing) and ``output__0`` (FP32): a
classifier's probabilities, one column per class (two for a binary model, as FIL's
``predict_proba`` gives them), or with the ``fil: {output: class_index}`` setting the index of the
likeliest class (one column, FIL's ``predict_proba: false``); or a regressor's value per target.

What this module runs on the CPU for a FIL artifact is the model's own library (XGBoost,
LightGBM, or Treelite for checkpoints), one call per batch: serve-repo's stand-in for FIL. Its
independent check is Treelite's GTIL predictor, which reads the file the way FIL does (FIL
compiles its forest from Treelite's model).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tritonforge.errors import BuildError
from .base import FormatDefaults
from tritonforge.repository import DYNAMIC, Signature, TensorSpec

INPUT = "input__0"
OUTPUT = "output__0"
BACKEND = "fil"
# FIL's default file name for each of its model types (fil_backend docs/model_config.md, "Model Filenames").
FILES = {"xgboost_json": "xgboost.json", "lightgbm": "model.txt", "treelite_checkpoint": "checkpoint.tl"}
MODEL_TYPES = {filename: model_type for model_type, filename in FILES.items()}
F32 = np.dtype(np.float32)
OUTPUTS = ("probabilities", "class_index")  # what a classifier's output__0 holds


@dataclass(frozen=True)
class FilSettings:
    """The FIL entry's own settings (a sidecar's ``fil:`` group)::

        fil:
          output: class_index   # probabilities (default) | class_index
    """

    output: str = "probabilities"

    @property
    def class_index(self) -> bool:
        return self.output == "class_index"


def parse_fil_settings(where: str, raw) -> FilSettings:
    """A sidecar's ``fil:`` group as :class:`FilSettings`; ``where`` names the sidecar in a refusal."""
    if raw is None:
        return FilSettings()
    if not isinstance(raw, dict):
        raise BuildError(f"{where}: 'fil' must be a mapping such as {{output: class_index}}, got {raw!r}")
    unknown = sorted(str(k) for k in raw if k != "output")
    if unknown:
        raise BuildError(f"{where}: 'fil' has unknown key {unknown[0]!r} (allowed: output)")
    output = raw.get("output", "probabilities")
    if output not in OUTPUTS:
        raise BuildError(f"{where}: 'fil.output' must be one of {', '.join(OUTPUTS)}, got {output!r}")
    return FilSettings(output)


@dataclass(frozen=True)
class ForestFacts:
    """What Treelite reads from a FIL artifact: the config FIL needs is derived from these alone."""

    model_type: str
    num_feature: int
    classes: int  # 0 for a regressor; 2 for a binary classifier
    num_target: int

    @property
    def classifier(self) -> bool:
        return self.classes > 0

    @property
    def width(self) -> int:
        return self.classes if self.classifier else self.num_target

    def output_width(self, settings: FilSettings) -> int:
        """Columns of output__0: one class index per row, or the probabilities, or the targets."""
        return 1 if self.classifier and settings.class_index else self.width


def model_type_of(path: Path) -> str:
    try:
        return MODEL_TYPES[path.name]
    except KeyError:
        raise BuildError(f"{path.name}: not a FIL artifact name ({', '.join(FILES.values())})") from None


def load_treelite(path: Path, model_type: str):
    """The forest as Treelite (and so FIL) reads it."""
    import treelite

    try:
        if model_type == "xgboost_json":
            return treelite.frontend.load_xgboost_model(str(path))
        if model_type == "lightgbm":
            return treelite.frontend.load_lightgbm_model(str(path))
        return treelite.Model.deserialize(str(path))
    except treelite.TreeliteError as exc:
        raise BuildError(f"{path.name}: Treelite (what FIL loads with) cannot read it: {_last_line(exc)}") from None


def _last_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return text.split(": ", 1)[-1] if text.startswith("[") else text


def facts_of(path: Path, model_type: str | None = None) -> ForestFacts:
    """``model_type`` for a file named otherwise (default_model_filename); else from its name."""
    model_type = model_type or model_type_of(path)
    header = json.loads(load_treelite(path, model_type).dump_as_json())
    task = header["task_type"]
    num_class = int(max(header.get("num_class") or [1]))
    num_target = int(header.get("num_target", 1))
    if task in ("kBinaryClf", "kMultiClf") and num_target > 1:
        raise BuildError(f"{path.name}: a multi-target classifier; FIL serves one target per classifier")
    classes = 2 if task == "kBinaryClf" else num_class if task == "kMultiClf" else 0
    if task not in ("kBinaryClf", "kMultiClf", "kRegressor"):
        raise BuildError(f"{path.name}: Treelite reads a {task} forest; FIL serves classifiers and regressors")
    return ForestFacts(model_type, int(header["num_feature"]), classes, num_target)


def signature_of(facts: ForestFacts, settings: FilSettings = FilSettings()) -> Signature:
    return Signature((TensorSpec(INPUT, F32, (DYNAMIC, facts.num_feature)),),
                     (TensorSpec(OUTPUT, F32, (DYNAMIC, facts.output_width(settings))),))


def is_fil(signature: Signature) -> bool:
    """Whether a signature is a FIL artifact's (adapters answer in FIL's output layout for it)."""
    return [t.name for t in signature.inputs] == [INPUT] and [t.name for t in signature.outputs] == [OUTPUT]


def as_fil_output(predicted: np.ndarray, rows: int, classifier: bool, signature: Signature | None = None) -> np.ndarray:
    """A framework's prediction as FIL's ``output__0``: a binary model's P(class 1) becomes two
    columns, a regressor's values one column per target; for a classifier whose ``signature`` has
    one output column, the likeliest class's index (FIL's ``predict_proba: false``)."""
    predicted = np.asarray(predicted, dtype=np.float64).reshape(rows, -1)
    if classifier and predicted.shape[1] == 1:
        predicted = np.concatenate([1 - predicted, predicted], axis=1)
    if classifier and signature is not None and signature.outputs[0].shape[-1] == 1:
        return class_indices(predicted)
    return predicted.astype(np.float32)


def class_indices(probabilities: np.ndarray) -> np.ndarray:
    """FIL's class output: the index of the likeliest class as FP32, one column (the first on a tie,
    so a binary model answers 1 only above 0.5, FIL's default threshold)."""
    return np.asarray(probabilities).argmax(axis=1).astype(np.float32).reshape(-1, 1)


class Forest:
    """A FIL artifact run on the CPU by its own library: one call per batch."""

    def __init__(self, path: Path, model_type: str | None = None, class_index: bool = False) -> None:
        self.path = Path(path)
        self.model_type = model_type or model_type_of(self.path)
        self.facts = facts_of(self.path, self.model_type)
        self.class_index = class_index and self.facts.classifier
        self._predict = _OWN_LIBRARY[self.model_type](self.path)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        answer = as_fil_output(self._predict(rows), len(rows), self.facts.classifier)
        return class_indices(answer) if self.class_index else answer


def _xgboost(path: Path):
    import xgboost as xgb

    booster = xgb.Booster(model_file=str(path))
    booster.set_param({"nthread": 1})
    names, types = booster.feature_names, booster.feature_types

    def predict(rows: np.ndarray) -> np.ndarray:
        data = xgb.DMatrix(rows, missing=np.nan, feature_names=names, feature_types=types,
                           enable_categorical=bool(types and "c" in types))
        return booster.predict(data)

    return predict


def _lightgbm(path: Path):
    import lightgbm as lgb

    booster = lgb.Booster(model_file=str(path))
    return lambda rows: booster.predict(rows, num_threads=1)


def _treelite(path: Path):
    import treelite

    model = load_treelite(path, "treelite_checkpoint")
    return lambda rows: treelite.gtil.predict(model, rows, nthread=1)


_OWN_LIBRARY = {"xgboost_json": _xgboost, "lightgbm": _lightgbm, "treelite_checkpoint": _treelite}


def treelite_predictor(path: Path, settings: FilSettings = FilSettings()):
    """Treelite's GTIL on the artifact: what FIL compiles from, independent of XGBoost and LightGBM."""
    import treelite

    model_type = model_type_of(path)
    model = load_treelite(path, model_type)
    classifier = facts_of(path).classifier

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = np.ascontiguousarray(inputs[INPUT], dtype=np.float32)
        answer = as_fil_output(treelite.gtil.predict(model, rows, nthread=1), len(rows), classifier)
        return {OUTPUT: class_indices(answer) if classifier and settings.class_index else answer}

    return run


def parameters(facts: ForestFacts, classifier_key: str, settings: FilSettings = FilSettings()) -> dict[str, str]:
    """The FIL parameters every host reads: the file's type and what the output holds
    (``classifier_key``: the release's name of the classifier switch, ReleaseRules.fil_classifier_key)."""
    found = {"model_type": facts.model_type, classifier_key: "true" if facts.classifier else "false"}
    if facts.classifier:
        found["predict_proba"] = "false" if settings.class_index else "true"
    return found


class FilFormat(FormatDefaults):
    name = "fil"
    platform = ""  # FIL is named by backend, not platform
    backend = BACKEND
    filename = ""  # per model type: artifact_name()
    prefers_gpu = True  # FIL's point is the GPU; KIND_AUTO still falls back to the CPU

    def __init__(self, settings: FilSettings = FilSettings()) -> None:
        self.settings = settings

    def for_settings(self, settings: FilSettings | None) -> "FilFormat":
        """This format for one entry's ``fil:`` settings (the registered instance keeps the defaults)."""
        return FilFormat(settings or FilSettings())

    def artifact_name(self, adapter) -> str:
        model_type = getattr(adapter, "fil_model_type", None)
        if model_type is None:
            raise BuildError(f"format 'fil' is not available for {adapter.framework} models")
        return FILES[model_type]

    def read_signature(self, path: Path, declared: Signature | None) -> Signature:
        return signature_of(facts_of(path), self.settings)

    def runner(self, path: Path):
        forest = Forest(path, class_index=self.settings.class_index)
        return lambda inputs: {OUTPUT: forest(inputs[INPUT])}

    def config_parameters(self, path: Path, rules) -> dict[str, str]:
        return parameters(facts_of(path), rules.fil_classifier_key, self.settings)

    def cross_checks(self, path: Path):
        if model_type_of(path) == "treelite_checkpoint":
            return ()  # the runner is Treelite already, independent of scikit-learn
        return (("treelite", treelite_predictor(path, self.settings)),)
