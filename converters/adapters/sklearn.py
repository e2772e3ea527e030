"""scikit-learn estimators and Pipelines (``.joblib``/``.pkl``), converted with skl2onnx.

A model fitted on a DataFrame gets one input per column, named after it, so that string columns
stay strings (Triton ``TYPE_STRING``); one fitted on an array gets a single float input.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import is_classifier

from tritonforge import verify
from tritonforge.errors import BuildError
from ..formats import fil
from ..formats.onnx import save_single_file
from ..probe import FileProbe, one_line
from tritonforge.sidecar import Sidecar
from tritonforge.repository import Signature
from .base import AdapterBase

STRING = np.dtype(object)
TEXT_INPUT = "text"
ML_OPSET = 3


class SklearnAdapter(AdapterBase):
    framework = "sklearn"
    formats = ("onnx", "fil")
    fil_model_type = "treelite_checkpoint"
    neural = False

    def detect(self, probe: FileProbe) -> bool:
        if not probe.is_plain_pickle:
            return False
        from sklearn.base import BaseEstimator

        return isinstance(probe.unpickle(), BaseEstimator)

    def load(self, probe: FileProbe, sidecar: Sidecar) -> Any:
        from sklearn.exceptions import NotFittedError
        from sklearn.utils.validation import check_is_fitted

        model = probe.unpickle()
        try:
            check_is_fitted(model)
        except NotFittedError:
            raise BuildError(f"{probe.path.name}: the {type(model).__name__} is not fitted") from None
        return model

    def convert(self, model: Any, sidecar: Sidecar, fmt: str, dest: Path) -> Signature | None:
        if fmt == "fil":
            write_treelite_checkpoint(model, dest)
            return None
        return self._convert_onnx(model, sidecar, dest)

    def _convert_onnx(self, model: Any, sidecar: Sidecar, dest: Path) -> Signature | None:
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType, StringTensorType

        columns = column_types(model)
        if columns:
            initial = [(name, StringTensorType([None, 1]) if dtype == STRING else FloatTensorType([None, 1]))
                       for name, dtype in columns.items()]
        elif takes_text(model):
            initial = [(TEXT_INPUT, StringTensorType([None, 1]))]
        else:
            initial = [("input", FloatTensorType([None, int(model.n_features_in_)]))]
        # ZipMap gives a list of dicts, which Triton cannot serve: ask for plain label/probability tensors.
        options = {id(est): {"zipmap": False} for est in _estimators(model) if is_classifier(est)}
        if takes_text(model):
            # ONNX Runtime lowercases text in a named locale (en_US.UTF-8 by default), which many
            # hosts and images lack: "C" is always there.
            options[id(_text_vectorizer(model))] = {"locale": "C"}
        # skl2onnx 1.20 writes some trees (IsolationForest) only up to ai.onnx.ml 3.
        opsets = {"": sidecar.opset, "ai.onnx.ml": ML_OPSET}
        try:
            proto = convert_sklearn(model, initial_types=initial, options=options, target_opset=opsets)
        except Exception as exc:
            unsupported = re.search(r"shape calculator for type '<class '[\w.]*?(\w+)'>'", str(exc))
            if unsupported:
                raise BuildError(f"unsupported estimator: skl2onnx has no converter for {unsupported.group(1)} "
                                 f"(inside this {type(model).__name__})") from None
            raise BuildError(f"skl2onnx cannot convert this {type(model).__name__} ({one_line(exc)})") from None
        if any(getattr(est, "sublinear_tf", False) for est in _estimators(model)):
            sublinear_tf_as_scikit_learn(proto)
        save_single_file(proto, dest)
        return None

    def reference(self, model: Any, inputs: dict[str, np.ndarray], signature: Signature) -> dict[str, np.ndarray]:
        if fil.is_fil(signature):  # one float matrix, columns in the order the forest was fitted on
            features = _named_columns(model, inputs[fil.INPUT])
            scores = model.predict_proba(features) if is_classifier(model) else model.predict(features)
            return {fil.OUTPUT: fil.as_fil_output(scores, len(features), is_classifier(model), signature)}
        features = _frame(model, inputs)
        names = [spec.name for spec in signature.outputs]
        if len(names) == 2 and hasattr(model, "predict"):
            # skl2onnx's second output: probabilities of a classifier, else its decision scores (an
            # SVC without probability=True, an outlier detector), else distances (KMeans.transform).
            if is_classifier(model) and hasattr(model, "predict_proba"):
                scores = model.predict_proba(features)
            elif hasattr(model, "decision_function"):
                scores = model.decision_function(features)
            else:
                scores = model.transform(features)
            return {names[0]: np.asarray(model.predict(features)), names[1]: np.asarray(scores)}
        method = model.predict if hasattr(model, "predict") else model.transform
        result = np.asarray(method(features))
        shape = signature.outputs[0].shape
        return {names[0]: result.reshape((-1,) + tuple(d if d > 0 else 1 for d in shape[1:])) if len(shape) > 1 else result}

    def sample_inputs(self, model: Any, signature: Signature, rows: int, rng: np.random.Generator) -> dict[str, np.ndarray] | None:
        if takes_text(model):
            return {TEXT_INPUT: _text_rows(_text_vectorizer(model), rows, rng)}
        categories = _categories(model)
        samples = {}
        for spec in signature.inputs:
            width = spec.shape[1] if len(spec.shape) > 1 and spec.shape[1] > 0 else 1
            if spec.dtype == STRING:
                known = categories.get(spec.name) or ["a", "b"]
                samples[spec.name] = rng.choice(np.array(known, dtype=object), (max(rows, 2), width))
            else:
                samples[spec.name] = rng.standard_normal((max(rows, 2), width)).astype(spec.dtype)
        # skl2onnx routes NaN through these trees unlike scikit-learn (known; see the README): no NaN
        # row, so that they still build; the manifest's rows_cover then does not claim NaN.
        nan_row = not any(type(est).__name__ in SKLEARN_NAN_TREES for est in _estimators(model))
        for edge in _edge_rows(samples, categories, nan_row):
            if self._answers(model, edge, signature):
                samples = {name: np.concatenate([value, edge[name]]) for name, value in samples.items()}
        return samples

    def _answers(self, model: Any, rows: dict[str, np.ndarray], signature: Signature) -> bool:
        """Whether the model answers these rows with numbers (it does not raise, nor answer NaN)."""
        try:
            answer = self.reference(model, rows, signature)
        except Exception:
            return False
        return all(not (np.asarray(v).dtype.kind == "f" and np.isnan(v).any()) for v in answer.values())

    def row_coverage(self, model: Any, rows: dict[str, np.ndarray]) -> tuple[str, ...]:
        if takes_text(model):
            return _text_coverage(_text_vectorizer(model), rows[TEXT_INPUT])
        categories = _categories(model)
        unseen = any(str(v) not in set(map(str, categories[name])) for name, value in rows.items() if name in categories
                     for v in value.ravel())
        return ("unseen categories",) if unseen else ()

    def mismatch_hint(self, model: Any) -> str:
        trees = [type(est).__name__ for est in _estimators(model) if type(est).__name__ in SKLEARN_NAN_TREES]
        if trees:
            return (f" (skl2onnx does not route NaN through a {trees[0]} as scikit-learn does: impute missing values "
                    "in the pipeline, SimpleImputer, or use HistGradientBoosting)")
        return ""

    def feature_names(self, model: Any) -> tuple[str, ...] | None:
        names = getattr(model, "feature_names_in_", None)
        return tuple(str(n) for n in names) if names is not None and not column_types(model) else None

    def labels(self, model: Any) -> tuple[str, ...] | None:
        classes = getattr(model, "classes_", None)
        return tuple(str(c) for c in classes) if classes is not None else None


def _text_rows(vectorizer: Any, rows: int, rng: np.random.Generator) -> np.ndarray:
    """Texts that exercise a text pipeline, not only random picks from its vocabulary: a word
    repeated (term frequencies above 1), a word it never saw, an empty text, a long text, then
    random ones; at least ``rows`` of them."""
    words = sorted({w for term in getattr(vectorizer, "vocabulary_", {}) for w in str(term).split()}) or ["text"]
    pick = np.array(words, dtype=object)
    word = str(pick[rng.integers(len(pick))])
    special = [f"{word} {word} {word} {rng.choice(pick)}", f"zqxjv {rng.choice(pick)} unseenword", "",
               " ".join(rng.choice(pick, 200))]
    texts = special + [" ".join(rng.choice(pick, int(rng.integers(1, 8)))) for _ in range(max(rows - len(special), 2))]
    return np.array([[t] for t in texts], dtype=object)


# scikit-learn's trees route NaN (to the side learned, or the larger child); skl2onnx 1.20's trees do not.
SKLEARN_NAN_TREES = ("DecisionTreeClassifier", "DecisionTreeRegressor", "RandomForestClassifier", "RandomForestRegressor",
                     "ExtraTreesClassifier", "ExtraTreesRegressor", "IsolationForest")
UNSEEN_CATEGORY = "tritonforge-unseen"


def _edge_rows(samples: dict[str, np.ndarray], categories: dict[str, list], nan_row: bool) -> list[dict[str, np.ndarray]]:
    """Rows at a table model's edges, each kept only where the model answers it (scikit-learn's own
    refusal, an encoder's handle_unknown='error', says it is no request to serve): a category no
    encoder saw at training, NaN in every float column, and each float column at +-1e6 (verify.extreme_rows)."""
    first = {name: value[:1].copy() for name, value in samples.items()}
    edges = []
    if any(name in categories for name in samples):
        edges.append({name: np.full_like(value, UNSEEN_CATEGORY) if name in categories else value
                      for name, value in first.items()})
    floats = [name for name, value in samples.items() if value.dtype.kind == "f"]
    if floats and nan_row:
        edges.append({name: np.full_like(value, np.nan) if name in floats else value for name, value in first.items()})
    extremes = verify.extreme_rows(first)
    if extremes is not None:
        edges.append(extremes)
    return edges


def _text_coverage(vectorizer: Any, texts: np.ndarray) -> tuple[str, ...]:
    known = {w for term in getattr(vectorizer, "vocabulary_", {}) for w in str(term).split()}
    words = [str(t).split() for t in texts.ravel()]
    facts = {"repeated words": any(len(w) != len(set(w)) for w in words), "unknown words": any(set(w) - known for w in words),
             "empty text": any(not w for w in words), "long text": any(len(w) >= 100 for w in words)}
    return tuple(fact for fact, seen in facts.items() if seen)


def sublinear_tf_as_scikit_learn(proto) -> None:
    """skl2onnx 1.20 writes TF-IDF's ``sublinear_tf`` as log(tf + 1); scikit-learn computes
    log(tf) + 1 for the terms a text has and leaves the others 0. The two agree after the L2 norm
    only while no word repeats: rewrite each Log(Add(tf, ones)) as Where(tf > 0, Log(tf) + 1, 0)."""
    from onnx import helper, numpy_helper

    graph = proto.graph
    ones = {init.name for init in graph.initializer if init.dims and np.all(numpy_helper.to_array(init) == 1)}
    producers = {out: node for node in graph.node for out in node.output}
    for log in [n for n in graph.node if n.op_type == "Log"]:
        add = producers.get(log.input[0])
        if add is None or add.op_type != "Add" or add.input[1] not in ones:
            continue
        tf_name, one, out = add.input[0], add.input[1], log.output[0]
        names = {k: f"{out}_sublinear_{k}" for k in ("zero", "positive", "log", "plus_one")}
        graph.initializer.append(numpy_helper.from_array(np.zeros(1, np.float32), names["zero"]))
        index = list(graph.node).index(log)
        replacement = [
            helper.make_node("Greater", [tf_name, names["zero"]], [names["positive"]]),
            helper.make_node("Log", [tf_name], [names["log"]]),
            helper.make_node("Add", [names["log"], one], [names["plus_one"]]),
            helper.make_node("Where", [names["positive"], names["plus_one"], names["zero"]], [out]),
        ]
        graph.node.remove(log)
        for offset, node in enumerate(replacement):
            graph.node.insert(index + offset, node)


def _estimators(model: Any):
    yield model
    for step in getattr(model, "steps", []):
        yield from _estimators(step[1])


def column_types(model: Any) -> dict[str, np.dtype]:
    """Columns of the DataFrame a model was fitted on, strings where an encoder learned string categories."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return {}
    strings = {name for name, values in _categories(model).items() if values and isinstance(values[0], str)}
    return {str(name): STRING if name in strings else np.dtype(np.float32) for name in names}


def _categories(model: Any) -> dict[str, list]:
    """Categories learned per input column by encoders inside ColumnTransformers."""
    found: dict[str, list] = {}
    for est in _estimators(model):
        for _, transformer, cols in getattr(est, "transformers_", []):
            inner = transformer.steps[-1][1] if hasattr(transformer, "steps") else transformer
            cats = getattr(inner, "categories_", None)
            if cats is not None and isinstance(cols, (list, tuple, np.ndarray)) and all(isinstance(c, str) for c in cols):
                for col, values in zip(cols, cats):
                    found[col] = [v for v in values.tolist() if v is not None and v == v]
    return found


def _text_vectorizer(model: Any):
    from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer

    first = next(iter(_estimators(model.steps[0][1]))) if hasattr(model, "steps") else model
    return first if isinstance(first, (CountVectorizer, HashingVectorizer)) else None


def takes_text(model: Any) -> bool:
    """A pipeline that starts with a text vectorizer takes one string per row."""
    return _text_vectorizer(model) is not None


def _frame(model: Any, inputs: dict[str, np.ndarray]):
    if takes_text(model):
        return [v.decode() if isinstance(v, bytes) else str(v) for v in inputs[TEXT_INPUT][:, 0]]
    columns = column_types(model)
    if not columns:
        return next(iter(inputs.values()))
    import pandas as pd

    return pd.DataFrame({name: inputs[name][:, 0] for name in columns})



# Forests Treelite's scikit-learn importer reads (treelite.sklearn.import_model).
TREELITE_FORESTS = ("RandomForestClassifier", "RandomForestRegressor", "ExtraTreesClassifier", "ExtraTreesRegressor",
                    "GradientBoostingClassifier", "GradientBoostingRegressor", "HistGradientBoostingClassifier",
                    "HistGradientBoostingRegressor")


def write_treelite_checkpoint(model: Any, dest: Path) -> None:
    """A forest as a Treelite checkpoint, which FIL loads (``model_type: treelite_checkpoint``)."""
    import treelite

    name = type(model).__name__
    if name not in TREELITE_FORESTS:
        what = "a Pipeline; give FIL the forest alone" if hasattr(model, "steps") else f"a {name}"
        raise BuildError(f"format fil: FIL serves tree ensembles ({', '.join(TREELITE_FORESTS)}); this is {what} "
                         "(build it as onnx)")
    if getattr(model, "n_outputs_", 1) > 1:
        raise BuildError(f"format fil: a {model.n_outputs_}-output {name}; FIL serves one target")
    try:
        treelite.sklearn.import_model(model).serialize(str(dest))
    except Exception as exc:
        raise BuildError(f"format fil: Treelite {treelite.__version__} cannot import this {name}: {one_line(exc)}") from None


def _named_columns(model: Any, rows: np.ndarray):
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return rows
    import pandas as pd

    return pd.DataFrame(rows, columns=list(names))
