"""The examples answer right: held-out rows from the shipped input files, served, give the
answers a person can check (the iris setosa row is setosa, a drawn 7 is a 7)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tritonforge.clients import TritonClient, read_inputs

ROOT = Path(__file__).resolve().parents[1]
INPUTS = ROOT / "examples" / "inputs"
sys.path.insert(0, str(ROOT / "examples"))
PROTOCOLS = ("http", "grpc")


def _ask(served, protocol, model, *files, top_k=0):
    server, _ = served
    url = server.http_url if protocol == "http" else server.grpc_url
    with TritonClient(url, protocol) as client:
        inputs = read_inputs([INPUTS / f for f in files], client.spec(model))
        return client.infer(model, inputs, top_k=top_k)


def _labels(result, output="LABELS"):
    return [v.decode() if isinstance(v, bytes) else str(v) for v in result.outputs[output][:, 0]]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_iris_rows_are_their_species(served_examples, protocol):
    result = _ask(served_examples, protocol, "iris_xgb", "iris_rows.csv", top_k=1)
    assert [row[0].label for row in result.classes["probabilities"]] == ["setosa", "versicolor", "virginica"]
    assert result.classes["probabilities"][0][0].score > 0.9  # the textbook setosa row, with confidence


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("digit", [0, 3, 7])
def test_drawn_digits_are_read_as_their_digits(served_examples, protocol, digit):
    result = _ask(served_examples, protocol, "digits_cnn_ensemble", f"digit_{digit}.png")
    assert _labels(result) [0] == str(digit)
    assert result.outputs["SCORES"][0, 0] > 0.5


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("rows", ["churn_rows.json", "churn_rows.csv"])
def test_churn_rows_follow_the_rule_the_data_was_made_by(served_examples, protocol, rows):
    import json

    result = _ask(served_examples, protocol, "churn_pipeline_ensemble", rows)
    records = json.loads((INPUTS / "churn_rows.json").read_text())
    expected = ["churns" if (r["age"] < 35) != (r["city"] == "nice") else "stays" for r in records]
    assert _labels(result) == expected


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_house_prices_are_near_the_rule_the_data_was_made_by(served_examples, protocol):
    from train_models import HOUSE_FEATURES

    result = _ask(served_examples, protocol, "house_price_xgb_ensemble", "house_rows.csv")
    weights = dict(zip(HOUSE_FEATURES, (40, -0.8, 1.5, 3, 25, -4)))
    lines = (INPUTS / "house_rows.csv").read_text().splitlines()[1:]  # after the header line
    assert len(lines) == 3
    for line, predicted in zip(lines, result.outputs[next(iter(result.outputs))].reshape(-1)):
        values = {k: float(v) for k, v in (pair.split("=") for pair in line.split())}
        if len(values) < len(HOUSE_FEATURES):
            continue  # a missing feature: the rule cannot say
        truth = 100 + sum(weights[k] * values[k] for k in HOUSE_FEATURES)
        assert abs(predicted - truth) < 80, (line, predicted, truth)


def test_shipped_inputs_are_what_the_trainer_writes(tmp_path):
    """The files in examples/inputs/ are rows held out from training, regenerated bit for bit."""
    from train_models import write_inputs

    for path in write_inputs(tmp_path):
        assert path.read_bytes() == (INPUTS / path.name).read_bytes(), path.name
