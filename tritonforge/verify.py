"""Compare the converted artifact's answers with the source framework's, output by output."""
from __future__ import annotations

import numpy as np

from dataclasses import dataclass

from .errors import BuildError
from .repository import DYNAMIC, Signature, TensorSpec


@dataclass(frozen=True)
class OutputError:
    """How far the converted artifact's output is from the source model's."""

    name: str
    max_abs: float
    max_rel: float
    atol: float
    rtol: float
    ok: bool


DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3


def sample_inputs(signature: Signature, rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Generic rows that fit each input: floats in [0, 1), small integers, short strings."""
    samples = {}
    for spec in signature.inputs:
        shape = tuple(rows if i == 0 and d == DYNAMIC else (4 if d == DYNAMIC else d) for i, d in enumerate(spec.shape))
        if spec.dtype == np.dtype(object):
            samples[spec.name] = rng.choice(np.array(["a", "b", "c"], dtype=object), shape)
        elif spec.dtype.kind == "f":
            samples[spec.name] = rng.random(shape).astype(spec.dtype)
        elif spec.dtype.kind == "b":
            samples[spec.name] = rng.random(shape) < 0.5
        else:
            samples[spec.name] = rng.integers(0, 10, shape).astype(spec.dtype)
    return samples


LARGE = 1e6  # a float this far from zero counts as an extreme (table rows put +-1e6 in each column)


def extreme_rows(row: dict[str, np.ndarray], limit: int = 16) -> dict[str, np.ndarray] | None:
    """Copies of a one-row sample with one float column at a time at +-LARGE (one at a time, so that
    no two extremes cancel in a sum), at most ``limit`` rows; None where no input is float."""
    rows = []
    for name, value in row.items():
        if value.dtype.kind != "f":
            continue
        for column in range(int(np.prod(value.shape[1:], dtype=int))):
            for sign in (1, -1):
                copy = {key: other.copy() for key, other in row.items()}
                copy[name].reshape(1, -1)[0, column] = sign * LARGE
                rows.append(copy)
    if not rows:
        return None
    return {name: np.concatenate([r[name] for r in rows[:limit]]) for name in row}


def with_extremes(samples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Table rows plus their extremes (for models whose columns are features, not pixels or tokens)."""
    extremes = extreme_rows({name: value[:1] for name, value in samples.items()})
    if extremes is None:
        return samples
    return {name: np.concatenate([value, extremes[name].astype(value.dtype)]) for name, value in samples.items()}


def without_nan(samples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The rows with no NaN in any float input (a step that refuses a missing field is not asked them)."""
    keep = np.ones(len(next(iter(samples.values()))), bool)
    for value in samples.values():
        if value.dtype.kind == "f":
            keep &= ~np.isnan(value.reshape(len(value), -1)).any(axis=1)
    return {name: value[keep] for name, value in samples.items()}


def coverage(samples: dict[str, np.ndarray], model_facts: tuple[str, ...] = ()) -> list[str]:
    """What the verification rows exercised, for the manifest: "batch>1", "NaN", "extremes" read off
    the rows themselves, then what only the adapter can tell (an unseen category, a repeated word)."""
    facts = []
    if samples and min(len(value) for value in samples.values()) > 1:
        facts.append("batch>1")
    floats = [np.asarray(value) for value in samples.values() if np.asarray(value).dtype.kind == "f"]
    if any(np.isnan(value).any() for value in floats):
        facts.append("NaN")
    if any((np.abs(np.nan_to_num(value)) >= LARGE).any() for value in floats):
        facts.append("extremes")
    return facts + [fact for fact in model_facts if fact not in facts]


def check_sample_inputs(samples: dict[str, np.ndarray], signature: Signature, origin: str) -> dict[str, np.ndarray]:
    """Sidecar-given samples must name every input and fit its shape; cast to its dtype."""
    checked = {}
    for spec in signature.inputs:
        if spec.name not in samples:
            raise BuildError(f"{origin}: has no array for input '{spec.name}' (it has: {', '.join(samples) or 'none'})")
        value = np.asarray(samples[spec.name])
        if not _fits(value.shape, spec):
            raise BuildError(f"{origin}: input '{spec.name}' has shape {list(value.shape)}, the model takes {list(spec.shape)}")
        checked[spec.name] = value.astype(object) if spec.dtype == np.dtype(object) else value.astype(spec.dtype)
    return checked


def _fits(shape: tuple[int, ...], spec: TensorSpec) -> bool:
    return len(shape) == len(spec.shape) and all(d == DYNAMIC or d == s for d, s in zip(spec.shape, shape))


def compare(signature: Signature, expected: dict[str, np.ndarray], actual: dict[str, np.ndarray],
            atol: float, rtol: float) -> tuple[OutputError, ...]:
    errors = []
    for spec in signature.outputs:
        if spec.name not in actual or spec.name not in expected:
            raise BuildError(f"output '{spec.name}' missing from the {'artifact' if spec.name not in actual else 'source'} answer")
        errors.append(compare_one(spec.name, expected[spec.name], actual[spec.name], atol, rtol))
    return tuple(errors)


def compare_one(name: str, expected: np.ndarray, actual: np.ndarray, atol: float, rtol: float) -> OutputError:
    expected, actual = np.asarray(expected), np.asarray(actual)
    if expected.shape != actual.shape:
        if expected.size != actual.size:
            raise BuildError(f"output '{name}' has shape {list(actual.shape)}, the source gave {list(expected.shape)}")
        expected = expected.reshape(actual.shape)
    if expected.dtype.kind in "fc" or actual.dtype.kind in "fc":
        exp, act = expected.astype(np.float64), actual.astype(np.float64)
        both_nan = np.isnan(exp) & np.isnan(act)
        diff = np.where(both_nan, 0.0, np.abs(exp - act))
        diff = np.nan_to_num(diff, nan=np.inf)
        rel = diff / np.maximum(np.abs(exp), np.finfo(np.float32).tiny)
        ok = bool(np.all(diff <= atol + rtol * np.abs(np.nan_to_num(exp))))
        return OutputError(name, float(diff.max(initial=0.0)), float(rel.max(initial=0.0)), atol, rtol, ok)
    same = _as_text(expected) == _as_text(actual)
    mismatched = float(np.count_nonzero(~same))
    return OutputError(name, mismatched, mismatched / max(same.size, 1), 0.0, 0.0, mismatched == 0)


def _as_text(values: np.ndarray) -> np.ndarray:
    if values.dtype == object or values.dtype.kind in "US":
        return np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else str(v), otypes=[object])(values)
    return values.astype(np.int64) if values.dtype.kind in "iub" else values


def describe_mismatch(errors: tuple[OutputError, ...]) -> str:
    bad = [e for e in errors if not e.ok]
    parts = []
    for e in bad:
        if e.atol == 0 and e.rtol == 0:
            parts.append(f"output '{e.name}' differs from the source in {int(e.max_abs)} values")
        else:
            parts.append(f"output '{e.name}' differs from the source by {e.max_abs:.3g} (max abs; allowed atol {e.atol:g} + rtol {e.rtol:g})")
    return "; ".join(parts)


@dataclass(frozen=True)
class Gate:
    """The thresholds a reduced entry must meet (README: "Reduced precision").

    Quantization changes the numbers on purpose: classifiers are judged by label agreement and the
    largest probability error, other outputs by their largest error relative to their spread.
    """

    min_agreement: float  # classifiers: share of rows whose label equals the source's
    max_error: float  # probabilities: largest |diff|; other outputs: largest |diff| / output spread

    def judge(self, expected: dict[str, np.ndarray], actual: dict[str, np.ndarray], classifier_outputs: set[str]) -> dict:
        """{"agreement": ..., "error": ..., "ok": bool, "worst": output name} over every float output."""
        agreement, error, worst = 1.0, 0.0, ""
        for name, want in expected.items():
            got = np.asarray(actual[name])
            want = np.asarray(want)
            if want.dtype.kind != "f":
                continue
            if name in classifier_outputs and want.ndim == 2 and want.shape[1] > 1:
                agreement = min(agreement, float(np.mean(got.argmax(axis=1) == want.argmax(axis=1))))
                if not np.allclose(want.sum(axis=1), 1, atol=1e-3):  # logits: compare the probabilities they mean
                    got, want = _softmax(got), _softmax(want)
                this = float(np.max(np.abs(got - want))) if want.size else 0.0
            else:
                scale = float(np.std(want)) or float(np.max(np.abs(want))) or 1.0
                this = float(np.max(np.abs(got.astype(np.float64) - want))) / scale if want.size else 0.0
            if this >= error:
                error, worst = this, name
        return {"agreement": agreement, "error": error, "worst": worst,
                "ok": agreement >= self.min_agreement and error <= self.max_error}

    def as_dict(self) -> dict:
        return {"min_agreement": self.min_agreement, "max_error": self.max_error}


def _softmax(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    values = np.exp(values - values.max(axis=1, keepdims=True))
    return values / values.sum(axis=1, keepdims=True)
