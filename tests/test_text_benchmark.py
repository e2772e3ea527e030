"""benchmarks/text.py's parts, without the load: the repository it measures (the example, a floor
step in the tokenizer step's own config, an ensemble through that floor) loads and answers each
figure's request, and its report words the ratios. (The benchmark itself is run by hand: minutes.)"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import text as bench  # noqa: E402
from tritonforge.loadtests.native import LoadResult  # noqa: E402


def _figure(rate: float, cpu_us: float) -> bench.Figure:
    return bench.Figure(LoadResult("m", 32, 4.0, int(rate * 4), rate, 1.0, 2.0, 3.0, 0, 0.05), server_us_per_request=cpu_us)


def test_the_report_gives_rows_per_second_and_both_goals(monkeypatch):
    class Args:
        rows, rounds, seconds, load = 8, 1, 4.0, [(1.0, 1.0, 1.0), (2.0, 2.0, 2.0)]

    figures = {bench.BARE: [_figure(1000, 400)], bench.ENSEMBLE: [_figure(700, 600)], bench.FLOOR_ENSEMBLE: [_figure(800, 500)],
               bench.STEP: [_figure(2000, 120)], bench.FLOOR_STEP: [_figure(2500, 100)]}
    text = bench.report(figures, Args)
    assert "| text ensemble, strings (`review_text_ensemble`) | 5,600 rows/s |" in text
    assert "text ensemble / bare model: **0.70x** (goal >= 0.6x)" in text
    assert "tokenizer step / floor, server CPU per request: **1.20x** (goal <= 1.25x)" in text


@pytest.mark.slow
def test_every_figure_of_the_benchmark_repository_answers_its_request(tmp_path):
    from tritonforge.serving.server import serve
    import tritonclient.http as httpclient

    repo, requests = bench.build(tmp_path, rows=3)
    with serve(repo, control_mode="explicit", load_models=list(bench.FIGURES), ready_timeout=600) as server:
        client = server.http_client()
        answers = {}
        for model in bench.FIGURES:
            inputs = []
            for name, value in requests[model].items():
                tensor = httpclient.InferInput(name, list(value.shape), "BYTES" if value.dtype == object else "INT64")
                tensor.set_data_from_numpy(value)
                inputs.append(tensor)
            answers[model] = client.infer(model, inputs).get_response()["outputs"]
    # The step and its floor answer the same tensors; the floor's are stored, not tokenized.
    assert [(o["name"], o["shape"][0]) for o in answers[bench.STEP]] == [(o["name"], o["shape"][0]) for o in answers[bench.FLOOR_STEP]]
    assert {o["name"] for o in answers[bench.BARE]} >= {"probabilities"}
    assert [o["shape"] for o in answers[bench.ENSEMBLE]] == [o["shape"] for o in answers[bench.FLOOR_ENSEMBLE]] == [[3, 2]]
    assert np.all(np.asarray(requests[bench.BARE]["attention_mask"]).sum(axis=1) > 2)
