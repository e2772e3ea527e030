"""XGBoost: boosters saved as JSON, UBJSON or the old binary format, and pickled scikit-learn wrappers."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tritonforge.errors import BuildError
from ..formats import fil
from ..formats.onnx import save_single_file
from ..probe import FileProbe, one_line
from tritonforge.sidecar import Sidecar
from tritonforge.repository import Signature
from .base import AdapterBase

OLD_BINARY_SUFFIXES = (".bin", ".model", ".xgb", ".deprecated")
MISSING_SHARE = 0.1
ONNXMLTOOLS_MAX_OPSET = 15  # onnxmltools 1.16's XGBoost converter refuses newer ai.onnx opsets  # sample rows get some NaN, since boosters route missing values


CLASSIFIER_OBJECTIVES = ("binary:logistic", "multi:softprob")
CATEGORY_CODES = 8  # sample codes per categorical feature whose categories the booster does not record


@dataclass
class XGBoostSource:
    booster: Any
    objective: str
    num_class: int
    num_target: int
    num_features: int
    categories: dict[int, list]  # feature index -> the categories it was trained on, in code order
    classes: tuple[str, ...] | None = None  # a scikit-learn wrapper's classes_, as text

    @property
    def categorical(self) -> tuple[int, ...]:
        return tuple(i for i, t in enumerate(self.booster.feature_types or []) if t == "c")


def recorded_categories(model_json: dict) -> dict[int, list]:
    """XGBoost 3 keeps the categories of a DataFrame's categorical columns in the model ("cats"),
    to re-code them at predict time; code i is the i-th category."""
    cats = model_json["learner"]["gradient_booster"]["model"].get("cats") or {}
    found = {}
    for index, enc in enumerate(cats.get("enc") or []):
        values = enc.get("values") or []
        offsets = enc.get("offsets")
        if offsets:
            found[index] = [bytes(values[a:b]).decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:])]
        elif values:
            found[index] = list(values)
    return found


# XGBoost's ProbToMargin per objective (the space base_score is saved in), as Treelite applies it too;
# every other objective, multi:softprob's included, saves its intercepts as margins.
LOGIT_OBJECTIVES = ("binary:logistic", "reg:logistic", "binary:logitraw")
LOG_OBJECTIVES = ("count:poisson", "reg:gamma", "reg:tweedie", "survival:cox", "survival:aft")


def _link(objective: str):
    """The objective's ProbToMargin, and the base_score it maps to a margin of zero."""
    if objective in LOGIT_OBJECTIVES:
        return (lambda p: math.log(p / (1 - p))), 0.5
    if objective in LOG_OBJECTIVES:
        return math.log, 1.0
    return (lambda p: p), 0.0


def _trees_of(model_json: dict) -> dict:
    """The trees' object: a gbtree's model, or the gbtree inside a dart booster."""
    booster = model_json["learner"]["gradient_booster"]
    return booster["model"] if "model" in booster else booster["gbtree"]["model"]


def intercepts_of(model_json: dict) -> list[float]:
    """``base_score`` as saved: one value, or (XGBoost 3.1+) one per class or target."""
    return [float(v) for v in str(model_json["learner"]["learner_model_param"]["base_score"]).strip("[]").split(",")]


def for_fil(model_json: dict, intercepts: str = "folded") -> dict:
    """The model in the JSON dialect the Treelite inside FIL reads: no recorded categories, so it
    takes category codes as FIL does, and XGBoost 3.1+'s vector ``base_score`` either kept
    (``intercepts="native"``: Treelite 4.6+, FIL from 26.01) or folded into the trees for the
    Treelite before it, which reads a scalar (checked with Treelite 4.3 and 4.4.1, which refuses the
    vector; XGBoost 3.2 loads both)."""
    model = _trees_of(model_json)
    model.pop("cats", None)
    params = model_json["learner"]["learner_model_param"]
    scores = intercepts_of(model_json)
    if len(set(scores)) == 1:
        params["base_score"] = repr(scores[0])
    elif intercepts != "native":
        fold_intercepts(model_json, scores)
    return model_json


def fold_intercepts(model_json: dict, scores: list[float]) -> None:
    """Each class's (or target's) intercept, as a margin, added to every leaf of the first tree of
    that class, and ``base_score`` set to the value whose margin is zero: every margin, and so every
    probability, is unchanged, and a reader of a scalar ``base_score`` reads the model right."""
    learner = model_json["learner"]
    booster = learner["gradient_booster"]
    model = _trees_of(model_json)
    trees, owner = model["trees"], [int(k) for k in model["tree_info"]]
    weights = booster.get("weight_drop") or [1.0] * len(trees)  # dart scales each tree's leaves by its weight
    if any(int(t["tree_param"].get("size_leaf_vector", "1")) > 1 for t in trees):
        raise BuildError("format fil: vector-leaf trees (multi_strategy=multi_output_tree) with one intercept per "
                         "target; their intercepts do not fold into one tree per target: pass --triton-version 26.01 "
                         "or newer, or train with multi_strategy=one_output_per_tree")
    link, neutral = _link(learner["objective"]["name"])
    for output, score in enumerate(scores):
        if output not in owner:
            raise BuildError(f"format fil: output {output} of the booster has no tree to carry its intercept")
        first = owner.index(output)
        tree = trees[first]
        if not weights[first]:
            raise BuildError(f"format fil: the dart booster's first tree of output {output} has weight 0 and cannot "
                             "carry its intercept: pass --triton-version 26.01 or newer, or build it as onnx")
        margin = link(score) / float(weights[first])
        values = tree["split_conditions"]
        for node, left in enumerate(tree["left_children"]):
            if left == -1:  # a leaf: its split condition holds the leaf value
                values[node] = float(values[node]) + margin
    learner["learner_model_param"]["base_score"] = repr(neutral)


class XGBoostAdapter(AdapterBase):
    framework = "xgboost"
    formats = ("onnx", "fil")
    fil_model_type = "xgboost_json"
    neural = False
    accepts_missing = True

    def detect(self, probe: FileProbe) -> bool:
        if probe.path.is_dir():
            return False
        if not probe.is_plain_pickle:
            # JSON and UBJSON boosters open with their "learner" object, whatever the file is called;
            # the pre-1.0 binary format has no such mark, so only its usual names are tried.
            return b"learner" in probe.head or probe.suffix in OLD_BINARY_SUFFIXES
        import xgboost as xgb

        return isinstance(probe.unpickle(), (xgb.Booster, xgb.XGBModel))

    def load(self, probe: FileProbe, sidecar: Sidecar) -> XGBoostSource:
        import xgboost as xgb

        classes = None
        if probe.is_plain_pickle:
            obj = probe.unpickle()
            booster = obj.get_booster() if isinstance(obj, xgb.XGBModel) else obj
            if getattr(obj, "classes_", None) is not None:
                classes = tuple(str(c) for c in obj.classes_)
        else:
            try:
                booster = xgb.Booster(model_file=str(probe.path))
            except Exception as exc:
                raise BuildError(f"{probe.path.name}: XGBoost cannot load it ({one_line(exc)})") from None
        config = json.loads(booster.save_config())["learner"]
        params = config["learner_model_param"]
        categories = recorded_categories(json.loads(booster.save_raw("json"))) if "c" in (booster.feature_types or []) else {}
        return XGBoostSource(
            booster=booster,
            objective=config["objective"]["name"],
            num_class=int(params.get("num_class", 0)),
            num_target=int(params.get("num_target", 1)),
            num_features=booster.num_features(),
            categories=categories,
            classes=classes,
        )

    def convert(self, model: XGBoostSource, sidecar: Sidecar, fmt: str, dest: Path, rules=None) -> Signature | None:
        """``rules``: the target release's ReleaseRules; without them FIL gets intercepts folded into
        trees, which every release reads."""
        if fmt == "fil":
            return self._write_fil(model, dest, getattr(rules, "fil_intercepts", "folded"))
        return self._convert_onnx(model, sidecar, dest)

    def _write_fil(self, model: XGBoostSource, dest: Path, intercepts: str = "folded") -> None:
        if model.objective == "multi:softmax":
            raise BuildError("format fil: a multi:softmax booster answers class indices, FIL probabilities; "
                             "retrain with multi:softprob (the same trees) or build it as onnx")
        # JSON, which every FIL release reads (UBJSON only from 24.x on); categories travel as codes.
        dest.write_text(json.dumps(for_fil(json.loads(model.booster.save_raw("json")), intercepts)))
        return None

    def _convert_onnx(self, model: XGBoostSource, sidecar: Sidecar, dest: Path) -> Signature | None:
        from onnxmltools import convert_xgboost
        from onnxmltools.convert.common.data_types import FloatTensorType

        if model.categorical:
            raise BuildError("the booster uses categorical features (enable_categorical), which onnxmltools "
                             "cannot convert; build it with --format fil (FIL takes category codes), or one-hot "
                             "or ordinal encode them before training")
        booster = model.booster.copy()
        # onnxmltools refuses feature names not of the form f0, f1...
        booster.feature_names = None
        booster.feature_types = None
        if model.objective.startswith("rank:"):
            # A ranker's score is its raw margin, as a squared-error regressor's is; onnxmltools
            # would otherwise build a classifier. Verification checks the numbers either way.
            booster.set_param({"objective": "reg:squarederror"})
        try:
            proto = convert_xgboost(booster, initial_types=[("input", FloatTensorType([None, model.num_features]))],
                                    target_opset=min(sidecar.opset, ONNXMLTOOLS_MAX_OPSET))
        except Exception as exc:
            raise BuildError(f"onnxmltools cannot convert this booster ({model.objective}): {one_line(exc)}") from None
        save_single_file(proto, dest)
        return None

    def reference(self, model: XGBoostSource, inputs: dict[str, np.ndarray], signature: Signature) -> dict[str, np.ndarray]:
        import xgboost as xgb

        rows = next(iter(inputs.values()))
        predicted = model.booster.predict(_dmatrix(model, rows))
        if fil.is_fil(signature):
            return {fil.OUTPUT: fil.as_fil_output(predicted, len(rows), model.objective in CLASSIFIER_OBJECTIVES, signature)}
        names = [spec.name for spec in signature.outputs]
        if len(names) == 2:  # classifier: label and probabilities
            if predicted.ndim == 1:  # binary objectives give P(class 1)
                predicted = np.stack([1 - predicted, predicted], axis=1)
            return {names[0]: predicted.argmax(axis=1).astype(np.int64), names[1]: predicted.astype(np.float32)}
        return {names[0]: predicted.reshape(len(rows), -1).astype(np.float32)}

    def sample_inputs(self, model: XGBoostSource, signature: Signature, rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        values = rng.random((rows, model.num_features)).astype(np.float32)
        for index in model.categorical:  # codes of the categories the booster knows
            known = len(model.categories.get(index, ())) or CATEGORY_CODES
            values[:, index] = rng.integers(0, known, rows)
        values[rng.random(values.shape) < MISSING_SHARE] = np.nan
        return {signature.inputs[0].name: values}

    def labels(self, model: XGBoostSource) -> tuple[str, ...] | None:
        """A classifier's classes: the wrapper's classes_, else the class indices a booster answers for
        (XGBoost trains on labels 0..n-1); only objectives that answer probabilities."""
        if model.objective not in CLASSIFIER_OBJECTIVES or model.num_target > 1:
            return None
        return model.classes or tuple(str(i) for i in range(max(model.num_class, 2)))

    def feature_names(self, model: XGBoostSource) -> tuple[str, ...] | None:
        return tuple(model.booster.feature_names) if model.booster.feature_names else None

    def mismatch_hint(self, model: XGBoostSource) -> str:
        if model.num_target > 1:
            return " (onnxmltools is known to give wrong numbers for multi-target XGBoost regressors)"
        return ""



def _dmatrix(model: XGBoostSource, rows: np.ndarray):
    """The rows as the booster reads them: category codes become its own categories again."""
    import xgboost as xgb

    if not model.categorical:
        return xgb.DMatrix(rows, missing=np.nan, feature_names=model.booster.feature_names)
    if not model.categories:  # trained on codes: it takes codes
        return xgb.DMatrix(rows, missing=np.nan, feature_names=model.booster.feature_names,
                           feature_types=model.booster.feature_types, enable_categorical=True)
    import pandas as pd

    names = model.booster.feature_names or [f"f{i}" for i in range(rows.shape[1])]
    columns = {}
    for index, name in enumerate(names):
        if index in model.categories:
            codes = np.where(np.isnan(rows[:, index]), -1, rows[:, index]).astype(np.int64)
            columns[name] = pd.Categorical.from_codes(codes, categories=model.categories[index])
        else:
            columns[name] = rows[:, index]
    return xgb.DMatrix(pd.DataFrame(columns), missing=np.nan, enable_categorical=True)
