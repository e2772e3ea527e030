"""The build report: fixed columns whatever the names, and counts in plain English."""
from __future__ import annotations

import numpy as np
import pytest

from tritonforge.builder import BuildResult
from tritonforge.builder.report import line, summary
from tritonforge.repository import Signature, TensorSpec

SIGNATURE = Signature((TensorSpec("input", np.dtype("float32"), (-1, 4)),), (TensorSpec("output", np.dtype("float32"), (-1, 3)),))
RESULTS = [
    BuildResult("iris", "iris.json", "xgboost", "onnx", SIGNATURE, 1, "OK"),
    BuildResult("house_price_xgb_postprocess", "house.json", "python", "python", SIGNATURE, 12, "OK"),
    BuildResult("digits_cnn", "digits_cnn.keras", "tensorflow", "savedmodel", SIGNATURE, 3, "UNCHANGED"),
    BuildResult("churn_pipeline_ensemble", "churn.joblib", "ensemble", "ensemble", SIGNATURE, 100, "OK"),
    BuildResult("notes", "notes.txt", reason="notes.txt: not a model this tool recognises"),
]


def test_every_column_starts_at_the_same_place_on_every_line():
    lines = [line(r) for r in RESULTS]
    status = {text.index(r.status) for text, r in zip(lines, RESULTS)}
    assert len(status) == 1
    ok_lines = [text for text, r in zip(lines, RESULTS) if r.ok]
    assert len({text.index(" -> ") for text in ok_lines}) == 1
    assert len({text.index("input:float32") for text in ok_lines}) == 1


@pytest.mark.parametrize("count, text", [(1, "1 model: 1 built, 0 unchanged, 0 failed"), (2, "2 models: 2 built, 0 unchanged, 0 failed")])
def test_summary_counts_in_plain_english(count, text):
    assert summary(RESULTS[:1] * count) == text


@pytest.mark.parametrize("error, shown", [(0.0, "0"), (1.2e-108, "<1e-9"), (6e-08, "6e-08"), (0.0123, "0.012"), (3.0, "3")])
def test_error_figures_are_shown_as_a_person_reads_them(error, shown):
    from tritonforge.builder.report import readable_error

    assert readable_error(error) == shown
