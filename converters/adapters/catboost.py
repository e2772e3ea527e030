"""CatBoost: models saved with ``save_model`` (``.cbm``, recognised by their bytes), and pickled
``CatBoostClassifier``/``CatBoostRegressor``/``CatBoost`` objects (``--allow-pickle``), converted
by CatBoost's own ONNX exporter and verified against ``predict_proba``/``predict``.

CatBoost 1.2's exporter writes no categorical, text or embedding features ("ONNX-ML format export
does yet not support categorical features") and writes MultiRMSE models as classifiers ONNX
Runtime refuses: such models are refused in one line naming what is unsupported.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tritonforge.errors import BuildError
from tritonforge.repository import Signature
from tritonforge.sidecar import Sidecar
from ..formats.onnx import save_single_file
from ..probe import FileProbe, one_line
from .base import AdapterBase

CBM_HEAD = b"CBM1"  # the first bytes of every model CatBoost saves in its own format
CLASSIFIER_LOSSES = ("Logloss", "CrossEntropy", "MultiClass", "MultiClassOneVsAll")
# Losses with one value per target: CatBoost 1.2 exports them as a TreeEnsembleClassifier of no classes.
MULTI_TARGET_LOSSES = ("MultiRMSE", "MultiRMSEWithMissingValues", "MultiLogloss", "MultiCrossEntropy", "MultiQuantile")
MISSING_SHARE = 0.1
PROBABILITIES = "probabilities"


@dataclass
class CatBoostSource:
    model: Any  # a fitted CatBoost object (a classifier or regressor wrapper, or the plain CatBoost class)
    loss: str
    classes: tuple | None  # the classes in the order of predict_proba's columns; None for a regressor
    num_features: int
    unsupported: tuple[str, ...]  # "categorical features (colour)", ...: what the ONNX exporter cannot write

    @property
    def classifier(self) -> bool:
        return self.classes is not None


class CatBoostAdapter(AdapterBase):
    framework = "catboost"
    formats = ("onnx",)
    neural = False
    accepts_missing = True  # CatBoost routes NaN (nan_mode Min/Max); the exporter keeps the routing

    def detect(self, probe: FileProbe) -> bool:
        if probe.path.is_dir():
            return False
        if not probe.is_plain_pickle:
            return probe.head.startswith(CBM_HEAD)
        held = probe.unpickle()
        catboost = sys.modules.get("catboost")  # unpickling a CatBoost object imported it; nothing else needs to
        return catboost is not None and isinstance(held, catboost.CatBoost)

    def load(self, probe: FileProbe, sidecar: Sidecar) -> CatBoostSource:
        import catboost

        if probe.is_plain_pickle:
            model = probe.unpickle()
            if not model.is_fitted():
                raise BuildError(f"{probe.path.name}: the {type(model).__name__} is not fitted")
        else:
            model = catboost.CatBoost()
            try:
                model.load_model(str(probe.path))
            except Exception as exc:
                raise BuildError(f"{probe.path.name}: CatBoost cannot load it ({one_line(exc)})") from None
        params = model.get_all_params()
        loss = str(params.get("loss_function", "RMSE")).split(":")[0]
        classes = None
        if loss in CLASSIFIER_LOSSES:
            names = getattr(model, "classes_", None)
            if names is None or not len(names):
                names = model.get_metadata().get("class_names") or None
            classes = tuple(names) if names is not None else tuple(range(_class_count(model, loss)))
        return CatBoostSource(model, loss, classes, len(model.feature_names_), _unsupported(model))

    def convert(self, model: CatBoostSource, sidecar: Sidecar, fmt: str, dest: Path) -> Signature | None:
        if model.unsupported:
            raise BuildError(f"the model uses {' and '.join(model.unsupported)}, which CatBoost's ONNX exporter cannot "
                             "write; encode them as numbers before training (one-hot or ordinal)")
        if model.loss in MULTI_TARGET_LOSSES:
            raise BuildError(f"a CatBoost {model.loss} model (one value per target): CatBoost's ONNX exporter writes it "
                             "as a classifier ONNX Runtime cannot load; train one model per target")
        try:
            model.model.save_model(str(dest), format="onnx")
        except Exception as exc:
            raise BuildError(f"CatBoost cannot export this {model.loss} model to ONNX: {one_line(exc)}") from None
        import onnx

        proto = onnx.load(str(dest))
        _plain_outputs(proto, len(model.classes or ()))
        save_single_file(proto, dest)
        return None

    def reference(self, model: CatBoostSource, inputs: dict[str, np.ndarray], signature: Signature) -> dict[str, np.ndarray]:
        rows = np.asarray(next(iter(inputs.values())), dtype=np.float32)
        names = [spec.name for spec in signature.outputs]
        if model.classifier:
            scores = np.asarray(model.model.predict(rows, prediction_type="Probability"), dtype=np.float64)
            scores = scores.reshape(len(rows), -1)
            label_spec = signature.outputs[0]
            classes = np.array([str(c) for c in model.classes], dtype=object) if label_spec.dtype == object \
                else np.array(model.classes, dtype=label_spec.dtype)
            return {names[0]: classes[scores.argmax(axis=1)], names[1]: scores.astype(np.float32)}
        predicted = np.asarray(model.model.predict(rows), dtype=np.float64)
        return {names[0]: predicted.reshape(len(rows), -1).astype(np.float32)}

    def sample_inputs(self, model: CatBoostSource, signature: Signature, rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Values spread over the split borders the trees use (the first two rows just below the lowest
        and above the highest, so both ends are crossed), and NaN in the rows after those."""
        values = rng.standard_normal((rows, model.num_features)).astype(np.float32)
        for index, borders in (model.model.get_borders() or {}).items():
            if borders:
                low, high = min(borders), max(borders)
                margin = (high - low) * 0.1 or max(abs(high) * 0.1, 1e-3)
                values[:, int(index)] = rng.uniform(low - margin, high + margin, rows)
                values[:2, int(index)] = (low - margin, high + margin)
        values[2:][rng.random(values[2:].shape) < MISSING_SHARE] = np.nan
        return {signature.inputs[0].name: values}

    def labels(self, model: CatBoostSource) -> tuple[str, ...] | None:
        return tuple(str(c) for c in model.classes) if model.classifier else None

    def feature_names(self, model: CatBoostSource) -> tuple[str, ...] | None:
        names = tuple(str(n) for n in model.model.feature_names_)
        return None if names == tuple(str(i) for i in range(len(names))) else names


def _class_count(model: Any, loss: str) -> int:
    if loss in ("Logloss", "CrossEntropy"):
        return 2
    return int(model.get_all_params().get("classes_count") or model.predict(np.zeros((1, len(model.feature_names_))),
                                                                            prediction_type="Probability").shape[-1])


def _unsupported(model: Any) -> tuple[str, ...]:
    """What the ONNX exporter refuses, with the features named."""
    names = list(model.feature_names_)
    found = []
    for what, indices in (("categorical features", model.get_cat_feature_indices()),
                          ("text features", model.get_text_feature_indices()),
                          ("embedding features", model.get_embedding_feature_indices())):
        if indices:
            found.append(f"{what} ({', '.join(str(names[i]) for i in indices)})")
    return tuple(found)


def _plain_outputs(proto, classes: int) -> None:
    """Tensors Triton can serve: a classifier's ZipMap (a list of dicts) is dropped so its input, the
    probability tensor, is the ``probabilities`` output; every output gets its real shape (the exporter
    declares a regressor's [N, 1] predictions as [N])."""
    from onnx import TensorProto, helper

    graph = proto.graph
    zipmaps = [n for n in graph.node if n.op_type == "ZipMap"]
    for node in zipmaps:
        tensor, dropped = node.input[0], node.output[0]
        graph.node.remove(node)
        for other in graph.node:
            other.output[:] = [PROBABILITIES if name == tensor else name for name in other.output]
        for index, output in enumerate(graph.output):
            if output.name == dropped:
                graph.output.remove(output)
                graph.output.insert(index, helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, ["N", classes]))
    if not classes:
        for index, output in enumerate(list(graph.output)):
            width = _regressor_targets(graph)
            graph.output.remove(output)
            graph.output.insert(index, helper.make_tensor_value_info(output.name, TensorProto.FLOAT, ["N", width]))


def _regressor_targets(graph) -> int:
    for node in graph.node:
        if node.op_type == "TreeEnsembleRegressor":
            for attribute in node.attribute:
                if attribute.name == "n_targets":
                    return int(attribute.i)
    return 1
