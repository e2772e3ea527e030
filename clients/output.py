"""Answers as text for people (labels with scores for classifiers) or as JSON for programs."""
from __future__ import annotations

import json

import numpy as np

from tritonforge.clients.client import InferResult

_MAX_VALUES = 12


def _values(array: np.ndarray) -> str:
    flat = array.reshape(-1)
    if array.dtype == object:
        shown = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat[:_MAX_VALUES]]
    elif np.issubdtype(array.dtype, np.floating):
        shown = [f"{v:.6g}" for v in flat[:_MAX_VALUES]]
    else:
        shown = [str(v) for v in flat[:_MAX_VALUES]]
    more = f" ... ({flat.size - _MAX_VALUES} more)" if flat.size > _MAX_VALUES else ""
    return " ".join(shown) + more


def format_text(result: InferResult) -> str:
    """One block per output; a classified output shows each row's classes as 'label (score)'."""
    lines = [f"{result.model} (version {result.version})"]
    for name, array in result.outputs.items():
        if name in result.classes:  # a labelled output (a classifier, or an ensemble that classifies)
            rows = result.classes[name]
            said = " (probabilities: a softmax of the model's logits)" if name in result.softmax else ""
            lines.append(f"  {name}: top {len(rows[0]) if rows else 0} classes per row{said}")
            for i, row in enumerate(rows):
                shown = ", ".join(f"{c.label} ({c.score:.4f})" for c in row)
                lines.append(f"    row {i}: {shown}")
            continue
        shape = "x".join(str(d) for d in array.shape)
        lines.append(f"  {name}:{_dtype_label(array)}[{shape}]")
        rows = array.reshape(array.shape[0], -1) if array.ndim > 1 else array.reshape(-1, 1)
        names = _class_names(result, rows)
        for i, row in enumerate(rows[:_MAX_VALUES]):
            shown = f"{names[int(row[0])]} ({int(row[0])})" if names else _values(row)
            lines.append(f"    row {i}: {shown}")
        if len(rows) > _MAX_VALUES:
            lines.append(f"    ... ({len(rows) - _MAX_VALUES} more rows)")
    return "\n".join(lines)


def _dtype_label(array: np.ndarray) -> str:
    """The build report's spelling: string for BYTES, numpy names otherwise."""
    return "string" if array.dtype == object else array.dtype.name


def _class_names(result: InferResult, rows: np.ndarray) -> dict[int, str]:
    """Names for a one-column integer output (a classifier's ``label``) whose every value is a class
    index the server's classification extension named in this answer; else nothing."""
    known = {c.index: c.label for classified in result.classes.values() for row in classified for c in row if c.label}
    if not known or rows.ndim != 2 or rows.shape[1] != 1 or rows.dtype.kind not in "iu":
        return {}
    return known if all(int(v) in known for v in rows.reshape(-1)) else {}


def to_json(result: InferResult) -> dict:
    """A JSON-ready dict: outputs as nested lists, classes as {label, score, index} rows, and the
    classified outputs whose scores are a softmax of the model's logits."""
    def plain(array):
        if array.dtype == object:
            return np.vectorize(lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes) else v,
                                otypes=[object])(array).tolist()
        return array.tolist()

    return {
        "model": result.model,
        "version": result.version,
        "outputs": {name: plain(array) for name, array in result.outputs.items() if name not in result.classes},
        "classes": {name: [[{"label": c.label, "score": c.score, "index": c.index} for c in row] for row in rows]
                    for name, rows in result.classes.items()},
        "softmax": list(result.softmax),  # classified outputs whose logits were turned into probabilities
    }


def format_json(result: InferResult) -> str:
    return json.dumps(to_json(result), indent=2)
