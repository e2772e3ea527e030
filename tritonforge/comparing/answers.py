"""One model's answers to every row, in a form two models can be compared in.

    answers = ask(client, Entry.parse("cancer_xgb:1"), data, progress=print)
    answers.kind                 # "classifier" or "regressor"
    answers.labels[:3]           # array(['benign', 'malignant', 'benign'], dtype=object)
    answers.scores(["malignant", "benign"])   # [rows, 2] probabilities, NaN where a class is unknown

What counts as the answer is read from the served contract, not from names:
- a classifier has an output with a labels file (``label_filename``): asked for with Triton's
  classification extension for every class, it gives each row's score for each named class;
- an ensemble ending in ``classify`` gives ``LABELS`` (BYTES) and ``SCORES`` (top-k, best first):
  the scores of the top-k classes only;
- an integer or BYTES output with no labels file is a label by itself (class names are its values);
- otherwise the model is a regressor and its first floating output is the prediction.
Scores that do not look like probabilities (negative, or rows not summing to one) are logits and
go through a softmax, so that a model ending in logits compares with one ending in probabilities.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from tritonforge.clients import ModelSpec, ServerError, TritonClient

from .rows import DataSet

CLASSIFIER, REGRESSOR = "classifier", "regressor"


class CompareError(RuntimeError):
    """compare-models cannot go on; the message is one line (a missing model, an answer it cannot read)."""


@dataclass(frozen=True)
class Entry:
    """A served model named on the command line: ``name`` or ``name:version``."""

    name: str
    version: str = ""

    @classmethod
    def parse(cls, text: str) -> "Entry":
        name, _, version = text.partition(":")
        if not name or (version and not version.isdigit()):
            raise CompareError(f"'{text}' is not a model name or name:version (e.g. cancer_xgb or cancer_xgb:2)")
        return cls(name, version)

    @property
    def label(self) -> str:
        return f"{self.name}:{self.version}" if self.version else self.name

    @property
    def path(self) -> str:
        """The model's part of a KServe URL (``name`` or ``name/versions/N``)."""
        return f"{self.name}/versions/{self.version}" if self.version else self.name


@dataclass(frozen=True)
class Answers:
    """What one entry answered: labels and class scores (classifiers) or values (regressors)."""

    entry: Entry
    kind: str
    output: str  # the output read (the scores', or the prediction's)
    labels: np.ndarray | None = None  # [rows] class names (str)
    classes: tuple[str, ...] = ()  # names of the columns of class_scores
    class_scores: np.ndarray | None = None  # [rows, len(classes)], NaN where the model did not say
    values: np.ndarray | None = None  # [rows, d] predictions (regressors)

    @property
    def rows(self) -> int:
        return len(self.labels) if self.labels is not None else len(self.values)

    @property
    def complete(self) -> bool:
        """Every row has a score for every class (what log-loss and AUC need)."""
        return self.class_scores is not None and not np.isnan(self.class_scores).any()

    def scores(self, classes: list[str]) -> np.ndarray:
        """Scores laid out in ``classes``' order (NaN for a class this model never named)."""
        out = np.full((self.rows, len(classes)), np.nan)
        for column, name in enumerate(self.classes):
            if name in classes:
                out[:, classes.index(name)] = self.class_scores[:, column]
        return out


def check_served(client: TritonClient, entry: Entry, where: str) -> ModelSpec:
    """The entry's spec, or :class:`CompareError` naming a model or version the server does not serve."""
    served = client.models()
    if entry.name not in served:
        raise CompareError(f"no model '{entry.name}' on {where} (it serves {', '.join(served) or 'nothing'})")
    spec = client.spec(entry.name)
    if entry.version and entry.version not in spec.versions:
        raise CompareError(f"no version {entry.version} of model '{entry.name}' on {where} "
                           f"(it serves version {', '.join(spec.versions)})")
    return client.spec(entry.name, entry.version)


def ask(client: TritonClient, entry: Entry, data: DataSet, progress: Callable[[str], None] | None = None) -> Answers:
    """Send every row of ``data`` to ``entry`` (in batches the model accepts) and read its answers."""
    spec = client.spec(entry.name, entry.version)
    arrays = data.inputs_for(spec)
    rows = len(next(iter(arrays.values())))
    batch = spec.max_batch_size if spec.batches else rows
    top_k = _class_count(spec)
    names = _class_names(client, entry, spec, arrays, top_k) if top_k else None
    parts = []
    for start in range(0, rows, batch):
        chunk = {name: array[start:start + batch] for name, array in arrays.items()}
        try:
            parts.append(client.infer(entry.name, chunk, version=entry.version))
        except ServerError as exc:
            raise CompareError(f"{entry.label} refused rows {start}-{min(start + batch, rows) - 1} of "
                               f"{data.source}: {exc.message.splitlines()[0] if exc.message else exc}") from None
        if progress:
            progress(f"{entry.label}: {min(start + batch, rows)}/{rows} rows answered")
    answers = _read(entry, spec, parts, names)
    if answers.rows != data.rows:
        raise CompareError(f"{entry.label} answered {answers.rows} rows for the {data.rows} of {data.source} "
                           "(a raw-row CSV file needs its header line)")
    return answers


def _class_count(spec: ModelSpec) -> int:
    """Classes of the labelled output (its last dimension), so the server names and scores them all."""
    for tensor in spec.outputs:
        if tensor.name in spec.labelled_outputs and tensor.shape and tensor.shape[-1] > 0:
            return int(tensor.shape[-1])
    return 0


def _class_names(client: TritonClient, entry: Entry, spec: ModelSpec, arrays, count: int) -> list[str]:
    """The labels file's names in class-index order, asked of the server once (one row, every class):
    the classification extension prints scores to six decimals, so the scores themselves come raw."""
    first = {name: array[:1] for name, array in arrays.items()}
    try:
        answer = client.infer(entry.name, first, version=entry.version, top_k=count)
    except ServerError as exc:
        raise CompareError(f"{entry.label} refused row 0: {exc.message.splitlines()[0] if exc.message else exc}") from None
    row = next(iter(answer.classes.values()))[0]
    return [c.label for c in sorted(row, key=lambda c: c.index)]


def _read(entry: Entry, spec: ModelSpec, parts, names: list[str] | None) -> Answers:
    outputs = {t.name: t for t in spec.outputs}
    arrays = {name: np.concatenate([part.outputs[name] for part in parts]) for name in outputs}
    labelled = [name for name in spec.labelled_outputs if name in outputs]
    if labelled and names:
        scores = arrays[labelled[0]].astype(float)
        return _classifier(entry, labelled[0], names, scores.reshape(len(scores), -1))
    text = [n for n, t in outputs.items() if t.datatype == "BYTES"]
    floats = [n for n, t in outputs.items() if np.issubdtype(np.dtype(t.dtype), np.floating)]
    integers = [n for n, t in outputs.items() if np.issubdtype(np.dtype(t.dtype), np.integer)]
    if text and floats and arrays[text[0]].shape == arrays[floats[0]].shape:  # classify: LABELS, SCORES top-k
        labels = _as_text(arrays[text[0]]).reshape(len(arrays[text[0]]), -1)
        top = arrays[floats[0]].reshape(len(labels), -1).astype(float)
        names = list(dict.fromkeys(labels.reshape(-1)))
        scores = np.full((len(labels), len(names)), np.nan)
        for i in range(len(labels)):
            for label, score in zip(labels[i], top[i]):
                scores[i, names.index(label)] = score
        return _classifier(entry, floats[0], names, scores, labels[:, 0])
    if integers and floats and arrays[floats[0]].ndim == 2 and arrays[floats[0]].shape[1] > 1:
        # A classifier with no labels file (label + probabilities): classes are named by index.
        scores = arrays[floats[0]].astype(float)
        return _classifier(entry, floats[0], [str(i) for i in range(scores.shape[1])], scores)
    if text or integers:
        name = (text or integers)[0]
        labels = _as_text(arrays[name]).reshape(len(arrays[name]), -1)[:, 0]
        return Answers(entry, CLASSIFIER, name, labels=labels)
    if not floats:
        raise CompareError(f"{entry.label} gives no output that is a label, a score or a number ({spec.describe()})")
    values = arrays[floats[0]].astype(float)
    return Answers(entry, REGRESSOR, floats[0], values=values.reshape(len(values), -1))


def _classifier(entry: Entry, output: str, names: list[str], scores: np.ndarray, labels=None) -> Answers:
    complete = not np.isnan(scores).any()
    if complete and ((scores < 0).any() or not np.allclose(scores.sum(axis=1), 1, atol=1e-3)):
        shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores = shifted / shifted.sum(axis=1, keepdims=True)  # logits: as the probabilities they mean
    if labels is None:
        labels = np.array([names[i] for i in np.nanargmax(scores, axis=1)], dtype=object)
    return Answers(entry, CLASSIFIER, output, labels=np.asarray(labels, dtype=object), classes=tuple(names),
                   class_scores=scores)


def _as_text(array: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda v: v.decode("utf-8") if isinstance(v, bytes) else str(v), otypes=[object])(array)
