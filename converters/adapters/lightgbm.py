"""LightGBM: boosters saved as text models (``save_model``), and pickled boosters or scikit-learn
wrappers (``LGBMClassifier``, ``LGBMRegressor``). ONNX through onnxmltools; FIL reads the text model.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tritonforge.errors import BuildError
from tritonforge.repository import Signature
from tritonforge.sidecar import Sidecar
from ..formats import fil
from ..formats.onnx import save_single_file
from ..probe import FileProbe, one_line
from .base import AdapterBase

TEXT_MODEL_HEAD = b"tree\nversion="  # the first bytes of every LightGBM text model
MISSING_SHARE = 0.1
ONNXMLTOOLS_MAX_OPSET = 15
CLASSIFIER_OBJECTIVES = ("binary", "multiclass", "multiclassova", "cross_entropy")
LABELLED_OBJECTIVES = ("binary", "multiclass", "multiclassova")  # cross_entropy learns a probability, not classes


@dataclass
class LightGBMSource:
    booster: Any
    objective: str
    num_class: int
    num_features: int
    classes: tuple[str, ...] | None  # a scikit-learn wrapper's classes_
    categories: dict[int, list[int]]  # categorical feature index -> the category values its splits know

    @property
    def classifier(self) -> bool:
        return self.objective in CLASSIFIER_OBJECTIVES


class LightGBMAdapter(AdapterBase):
    framework = "lightgbm"
    formats = ("onnx", "fil")
    fil_model_type = "lightgbm"
    neural = False
    accepts_missing = True

    def detect(self, probe: FileProbe) -> bool:
        if probe.path.is_dir():
            return False
        if not probe.is_plain_pickle:
            return probe.head.startswith(TEXT_MODEL_HEAD)
        import lightgbm as lgb

        return isinstance(probe.unpickle(), (lgb.Booster, lgb.LGBMModel))

    def load(self, probe: FileProbe, sidecar: Sidecar) -> LightGBMSource:
        import lightgbm as lgb

        classes = None
        if probe.is_plain_pickle:
            held = probe.unpickle()
            if isinstance(held, lgb.LGBMModel):
                if not getattr(held, "fitted_", False):
                    raise BuildError(f"{probe.path.name}: the {type(held).__name__} is not fitted")
                classes = tuple(str(c) for c in held.classes_) if hasattr(held, "classes_") else None
                held = held.booster_
            booster = held
        else:
            try:
                booster = lgb.Booster(model_file=str(probe.path))
            except Exception as exc:
                raise BuildError(f"{probe.path.name}: LightGBM cannot load it ({one_line(exc)})") from None
        dumped = booster.dump_model(num_iteration=-1)
        objective = str(dumped.get("objective", "regression")).split()[0]
        return LightGBMSource(booster, objective, int(dumped.get("num_class", 1)), booster.num_feature(), classes,
                              _categories(dumped.get("feature_infos") or {}, booster.feature_name()))

    def convert(self, model: LightGBMSource, sidecar: Sidecar, fmt: str, dest: Path) -> Signature | None:
        if fmt == "fil":
            if model.objective not in CLASSIFIER_OBJECTIVES + ("regression", "regression_l1", "huber", "fair", "poisson",
                                                                "quantile", "mape", "gamma", "tweedie"):
                raise BuildError(f"format fil: a LightGBM '{model.objective}' booster; FIL serves classifiers and regressors")
            model.booster.save_model(str(dest), num_iteration=-1)
            return None
        return self._convert_onnx(model, sidecar, dest)

    def _convert_onnx(self, model: LightGBMSource, sidecar: Sidecar, dest: Path) -> None:
        from onnxmltools import convert_lightgbm
        from onnxmltools.convert.common.data_types import FloatTensorType

        if model.categories:
            raise BuildError("the booster splits on categorical features, which onnxmltools converts wrongly or not at "
                             "all; build it with --format fil (FIL takes category values as they are)")
        try:
            proto = convert_lightgbm(model.booster, initial_types=[("input", FloatTensorType([None, model.num_features]))],
                                     zipmap=False, target_opset=min(sidecar.opset, ONNXMLTOOLS_MAX_OPSET))
        except Exception as exc:
            raise BuildError(f"onnxmltools cannot convert this booster ({model.objective}): {one_line(exc)}") from None
        _batch_first(proto)
        save_single_file(proto, dest)
        return None

    def reference(self, model: LightGBMSource, inputs: dict[str, np.ndarray], signature: Signature) -> dict[str, np.ndarray]:
        rows = np.asarray(next(iter(inputs.values())), dtype=np.float64)
        predicted = np.asarray(model.booster.predict(rows, num_threads=1))
        if fil.is_fil(signature):
            return {fil.OUTPUT: fil.as_fil_output(predicted, len(rows), model.classifier, signature)}
        names = [spec.name for spec in signature.outputs]
        if len(names) == 2:  # classifier: label and probabilities
            scores = fil.as_fil_output(predicted, len(rows), True)
            return {names[0]: scores.argmax(axis=1).astype(np.int64), names[1]: scores}
        return {names[0]: predicted.reshape(len(rows), -1).astype(np.float32)}

    def sample_inputs(self, model: LightGBMSource, signature: Signature, rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        values = rng.standard_normal((rows, model.num_features)).astype(np.float32)
        for index, known in model.categories.items():  # category values the splits know, and one they do not
            values[:, index] = rng.choice(np.array(known + [max(known) + 1], dtype=np.float32), rows)
        values[rng.random(values.shape) < MISSING_SHARE] = np.nan
        return {signature.inputs[0].name: values}

    def labels(self, model: LightGBMSource) -> tuple[str, ...] | None:
        """A classifier's classes: the wrapper's classes_, else the class indices a booster answers for."""
        if model.classes or model.objective not in LABELLED_OBJECTIVES:
            return model.classes
        return tuple(str(i) for i in range(max(model.num_class, 2)))

    def feature_names(self, model: LightGBMSource) -> tuple[str, ...] | None:
        names = tuple(model.booster.feature_name())
        return None if all(re.fullmatch(r"Column_\d+", n) for n in names) else names


def _batch_first(proto) -> None:
    """onnxmltools 1.16 declares a LightGBM classifier's ``label`` as [1] though it answers one per row:
    every output's first axis is the batch, as the input's is, so the entry batches (and Triton's
    classification extension ranks each row's classes, not the whole batch's)."""
    for output in proto.graph.output:
        dims = output.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = "N"


def _categories(feature_infos: dict, names: list[str]) -> dict[int, list[int]]:
    """LightGBM writes a numeric feature's range as ``[min:max]`` and a categorical one's values as ``a:b:c``."""
    found = {}
    for index, name in enumerate(names):
        info = str(feature_infos.get(name, ""))
        if info and not info.startswith("[") and info != "none":
            found[index] = sorted(int(v) for v in info.split(":") if v.lstrip("-").isdigit())
    return {i: v for i, v in found.items() if v}
