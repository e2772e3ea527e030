"""Quality against a target, and agreement between two models' answers to the same rows.

    quality(answers, data.target)     # Quality(accuracy=0.947, log_loss=0.14, auc=0.99, ...)
    agreement(baseline, candidate)    # Agreement(same_label=0.98, max_diff=0.61, ...)

Classifiers: accuracy, log-loss and ROC AUC (one-vs-rest when there are more than two classes;
both only when the model scores every class), scikit-learn's definitions. Regressors: MAE and
RMSE. A target given as class indices (0, 1) is read as the model's class names in index order.
Agreement: the share of rows with the same label (classifiers) or with predictions within
``VALUE_TOLERANCE`` of the baseline's (regressors), and the largest and mean absolute difference
of the scores (per row, the largest over the classes both models scored).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .answers import CLASSIFIER, Answers, CompareError

VALUE_TOLERANCE = 1e-3  # relative (absolute below 1): regressors' predictions this close count as the same answer
WORST_ROWS = 5


@dataclass(frozen=True)
class Quality:
    """One model's figures against the target (None where they do not apply or cannot be computed)."""

    accuracy: float | None = None
    log_loss: float | None = None
    auc: float | None = None
    mae: float | None = None
    rmse: float | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Disagreement:
    """A row where two models differ: its index, each answer, the score difference, the target."""

    row: int
    baseline: str
    candidate: str
    difference: float
    target: str | None = None


@dataclass(frozen=True)
class Agreement:
    """How a candidate's answers compare with the baseline's, row by row."""

    candidate: str
    same_label: float  # share of rows answered the same (see the module's docstring for regressors)
    max_diff: float
    mean_diff: float
    differences: tuple[float, ...]  # per row, for the histogram
    worst: tuple[Disagreement, ...]

    @property
    def disagreement(self) -> float:
        return 1.0 - self.same_label

    def as_dict(self) -> dict:
        out = asdict(self)
        out["disagreement"] = self.disagreement
        out["worst"] = [asdict(w) for w in self.worst]
        return out


def target_labels(answers: Answers, target: np.ndarray) -> np.ndarray:
    """The target as class names; indices become the names the model gives them."""
    target = np.array([str(v).strip() for v in target], dtype=object)
    names = list(answers.classes) or sorted(set(answers.labels))
    if set(target) <= set(names):
        return target
    try:
        indices = [int(float(v)) for v in target]
    except ValueError:
        indices = None
    if indices is not None and names and all(0 <= i < len(names) for i in indices) and not set(names) & set(target):
        return np.array([names[i] for i in indices], dtype=object)
    return target  # unknown classes simply never match


def quality(answers: Answers, target: np.ndarray, source: str = "the data") -> Quality:
    if answers.kind == CLASSIFIER:
        truth = target_labels(answers, target)
        accuracy = float(np.mean(answers.labels == truth))
        return Quality(accuracy=accuracy, log_loss=_log_loss(answers, truth), auc=_auc(answers, truth))
    try:
        expected = np.asarray(target, dtype=float)
    except ValueError:
        bad = next(v for v in target if not _is_number(v))
        raise CompareError(f"{source}: target value '{bad}' is not a number ({answers.entry.label} is a regressor)") from None
    error = answers.values[:, 0] - expected
    return Quality(mae=float(np.abs(error).mean()), rmse=float(np.sqrt((error ** 2).mean())))


def _log_loss(answers: Answers, truth: np.ndarray) -> float | None:
    if not answers.complete or not set(truth) <= set(answers.classes):
        return None
    # scikit-learn's log_loss orders classes alphabetically; the model's order is kept here instead.
    probabilities = answers.class_scores / answers.class_scores.sum(axis=1, keepdims=True)
    column = [answers.classes.index(t) for t in truth]
    true_class = np.clip(probabilities[np.arange(len(truth)), column], 1e-15, 1.0)
    return float(-np.log(true_class).mean())


def _auc(answers: Answers, truth: np.ndarray) -> float | None:
    if not answers.complete or not set(truth) <= set(answers.classes) or len(set(truth)) < 2:
        return None
    from sklearn.metrics import roc_auc_score

    probabilities = answers.class_scores / answers.class_scores.sum(axis=1, keepdims=True)
    if len(answers.classes) == 2:
        return float(roc_auc_score(truth == answers.classes[1], probabilities[:, 1]))
    if len(set(truth)) < len(answers.classes):
        return None  # one-vs-rest needs every class among the rows
    return float(roc_auc_score(truth, probabilities, multi_class="ovr", labels=list(answers.classes)))


def agreement(baseline: Answers, candidate: Answers, target: np.ndarray | None = None) -> Agreement:
    if baseline.kind != candidate.kind:
        raise CompareError(f"{candidate.entry.label} is a {candidate.kind} and {baseline.entry.label} a "
                           f"{baseline.kind}: their answers cannot be compared")
    if baseline.kind == CLASSIFIER:
        same = baseline.labels == candidate.labels
        differences = _score_differences(baseline, candidate)
        shown_a, shown_b = _described(baseline), _described(candidate)
        truth = target_labels(baseline, target) if target is not None else None
    else:
        if baseline.values.shape != candidate.values.shape:
            raise CompareError(f"{candidate.entry.label} predicts {candidate.values.shape[1]} values per row and "
                               f"{baseline.entry.label} {baseline.values.shape[1]}: they cannot be compared")
        gap = np.abs(baseline.values - candidate.values)
        differences = gap.max(axis=1)
        same = (gap <= VALUE_TOLERANCE * np.maximum(1.0, np.abs(baseline.values))).all(axis=1)
        shown_a = [_number(v) for v in baseline.values[:, 0]]
        shown_b = [_number(v) for v in candidate.values[:, 0]]
        truth = target
    known = differences[~np.isnan(differences)]
    # The worst rows: a different answer first, then the largest score difference.
    order = sorted(range(len(same)), key=lambda i: (bool(same[i]), -np.nan_to_num(differences[i], nan=-1.0)))
    worst = tuple(Disagreement(i, shown_a[i], shown_b[i], float(differences[i]),
                               None if truth is None else str(truth[i]))
                  for i in order[:WORST_ROWS] if not same[i] or np.nan_to_num(differences[i]) > 0)
    return Agreement(candidate.entry.label, float(np.mean(same)),
                     float(known.max()) if known.size else float("nan"),
                     float(known.mean()) if known.size else float("nan"),
                     tuple(float(d) for d in differences), worst)


def _score_differences(a: Answers, b: Answers) -> np.ndarray:
    """Per row, the largest |score difference| over the classes both models scored (NaN if none)."""
    if a.class_scores is None or b.class_scores is None:
        return np.full(a.rows, np.nan)
    classes = list(dict.fromkeys(a.classes + b.classes))
    gap = np.abs(a.scores(classes) - b.scores(classes))
    out = np.full(a.rows, np.nan)
    scored = ~np.isnan(gap).all(axis=1)
    out[scored] = np.nanmax(gap[scored], axis=1)
    return out


def _described(answers: Answers) -> list[str]:
    if answers.class_scores is None:
        return [str(label) for label in answers.labels]
    column = {name: i for i, name in enumerate(answers.classes)}
    return [f"{label} ({answers.class_scores[i, column[label]]:.2f})" if label in column else str(label)
            for i, label in enumerate(answers.labels)]


def _number(value: float) -> str:
    return f"{value:.4g}"


def _is_number(text) -> bool:
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False
