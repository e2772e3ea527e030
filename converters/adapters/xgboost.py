"""XGBoost: boosters saved as JSON, UBJSON or the old binary format, and pickled scikit-learn wrappers."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tritonforge.errors import BuildError
from ..formats.onnx import save_single_file
from ..probe import FileProbe, one_line
from tritonforge.sidecar import Sidecar
from tritonforge.repository import Signature
from .base import AdapterBase

OLD_BINARY_SUFFIXES = (".bin", ".model", ".xgb", ".deprecated")
MISSING_SHARE = 0.1
ONNXMLTOOLS_MAX_OPSET = 15  # onnxmltools 1.16's XGBoost converter refuses newer ai.onnx opsets  # sample rows get some NaN, since boosters route missing values


@dataclass
class XGBoostSource:
    booster: Any
    objective: str
    num_class: int
    num_target: int
    num_features: int


class XGBoostAdapter(AdapterBase):
    framework = "xgboost"
    formats = ("onnx",)
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

        if probe.is_plain_pickle:
            obj = probe.unpickle()
            booster = obj.get_booster() if isinstance(obj, xgb.XGBModel) else obj
        else:
            try:
                booster = xgb.Booster(model_file=str(probe.path))
            except Exception as exc:
                raise BuildError(f"{probe.path.name}: XGBoost cannot load it ({one_line(exc)})") from None
        config = json.loads(booster.save_config())["learner"]
        params = config["learner_model_param"]
        return XGBoostSource(
            booster=booster,
            objective=config["objective"]["name"],
            num_class=int(params.get("num_class", 0)),
            num_target=int(params.get("num_target", 1)),
            num_features=booster.num_features(),
        )

    def convert(self, model: XGBoostSource, sidecar: Sidecar, fmt: str, dest: Path) -> Signature | None:
        from onnxmltools import convert_xgboost
        from onnxmltools.convert.common.data_types import FloatTensorType

        if any(t == "c" for t in (model.booster.feature_types or [])):
            raise BuildError("the booster uses categorical features (enable_categorical), which onnxmltools "
                             "cannot convert; one-hot or ordinal encode them before training")
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
        data = xgb.DMatrix(rows, missing=np.nan, feature_names=model.booster.feature_names)
        predicted = model.booster.predict(data)
        names = [spec.name for spec in signature.outputs]
        if len(names) == 2:  # classifier: label and probabilities
            if predicted.ndim == 1:  # binary objectives give P(class 1)
                predicted = np.stack([1 - predicted, predicted], axis=1)
            return {names[0]: predicted.argmax(axis=1).astype(np.int64), names[1]: predicted.astype(np.float32)}
        return {names[0]: predicted.reshape(len(rows), -1).astype(np.float32)}

    def sample_inputs(self, model: XGBoostSource, signature: Signature, rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        values = rng.random((rows, model.num_features)).astype(np.float32)
        values[rng.random(values.shape) < MISSING_SHARE] = np.nan
        return {signature.inputs[0].name: values}

    def feature_names(self, model: XGBoostSource) -> tuple[str, ...] | None:
        return tuple(model.booster.feature_names) if model.booster.feature_names else None

    def mismatch_hint(self, model: XGBoostSource) -> str:
        if model.num_target > 1:
            return " (onnxmltools is known to give wrong numbers for multi-target XGBoost regressors)"
        return ""

