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


def _best(result, output):
    """Each row's best class (label, score), as Triton's classification extension named it."""
    return [(row[0].label, row[0].score) for row in result.classes[output]]


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("rows", ["iris_rows.csv", "iris_rows.json"])  # plain numbers; fields named as the features
def test_iris_rows_are_their_species(served_examples, protocol, rows):
    result = _ask(served_examples, protocol, "iris_xgb", rows, top_k=1)
    assert [row[0].label for row in result.classes["probabilities"]] == ["setosa", "versicolor", "virginica"]
    assert result.classes["probabilities"][0][0].score > 0.9  # the textbook setosa row, with confidence


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_wine_rows_served_by_the_fil_entry_are_their_cultivars(served_examples, protocol):
    result = _ask(served_examples, protocol, "wine_lgbm", "wine_rows.csv", top_k=1)
    assert [row[0].label for row in result.classes["output__0"]] == ["cultivar_1", "cultivar_2", "cultivar_3"]
    assert all(row[0].score > 0.8 for row in result.classes["output__0"])


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("digit", [0, 3, 7])
def test_drawn_digits_are_read_as_their_digits(served_examples, protocol, digit):
    result = _ask(served_examples, protocol, "digits_cnn_ensemble", f"digit_{digit}.png", top_k=3)
    [(label, score)] = _best(result, "digit")
    assert label == str(digit) and score > 0.5


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("rows", ["churn_rows.json", "churn_rows.csv"])
def test_churn_rows_follow_the_rule_the_data_was_made_by(served_examples, protocol, rows):
    import json

    result = _ask(served_examples, protocol, "churn_pipeline_ensemble", rows, top_k=2)
    records = json.loads((INPUTS / "churn_rows.json").read_text())
    expected = ["churns" if (r["age"] < 35) != (r["city"] == "nice") else "stays" for r in records]
    assert expected == ["stays", "churns", "churns", "stays"]  # one customer from each corner of the rule
    assert [label for label, _ in _best(result, "probabilities")] == expected


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_price_two_inputs_scores_the_held_out_patients_as_trained(served_examples, protocol):
    """The served (converted) model predicts the diabetes patients it never saw as well as the
    trainer measured: R^2 0.43 there, so above 0.4 here."""
    from train_models import diabetes_split

    server, _ = served_examples
    numeric, extra, progression, test = diabetes_split()
    numeric, extra = numeric[test], extra[test]
    with TritonClient(server.http_url if protocol == "http" else server.grpc_url, protocol) as client:
        predicted = np.concatenate([  # in requests of 32: the model's max batch is smaller than 96
            client.infer("price_two_inputs", {"numeric": numeric[i:i + 32], "extra": extra[i:i + 32]}).outputs["progression"]
            for i in range(0, len(numeric), 32)
        ]).astype(np.float64)
    truth = progression[test].astype(np.float64)
    assert predicted.shape == truth.shape == (96, 1)
    r2 = 1 - ((predicted - truth) ** 2).sum() / ((truth - truth.mean()) ** 2).sum()
    assert r2 > 0.4, r2


def test_shipped_inputs_are_what_the_trainer_writes(tmp_path):
    """The files in examples/inputs/ are rows held out from training, regenerated bit for bit."""
    from train_models import write_inputs

    for path in write_inputs(tmp_path):
        assert path.read_bytes() == (INPUTS / path.name).read_bytes(), path.name


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("digit", [0, 3])
def test_torch_cnn_reads_the_drawn_digits_it_knows(served_examples, protocol, digit):
    """torch_cnn learnt the digits 0-4 in RGB at 32x32: the grey 28x28 PNG is resized and made RGB by the client."""
    result = _ask(served_examples, protocol, "torch_cnn", f"digit_{digit}.png", top_k=1)
    (output,) = result.classes
    assert result.classes[output][0][0].label == str(digit)


@pytest.mark.slow
@pytest.mark.parametrize("digit", [0, 3, 7])
def test_digits_cnn_alone_reads_the_png_as_the_ensemble_does(served_examples, digit):
    """The model without its ensemble, fed by the client's own image reading, gives the same digit."""
    result = _ask(served_examples, "http", "digits_cnn", f"digit_{digit}.png", top_k=1)
    (output,) = result.classes
    assert result.classes[output][0][0].label == str(digit)


def _trainer_report(out: Path) -> list[str]:
    from train_models import train_examples

    lines = []
    train_examples(out, report=lines.append)
    return lines


@pytest.mark.slow
def test_a_second_training_run_leaves_every_example_untouched(example_models, tmp_path):
    """A .keras file records its save time: retraining would change its bytes and make build-repo
    write a new version of a model that did not change, so an unchanged example is not retrained."""
    import shutil

    from fixtures_build import tree_digest

    models = tmp_path / "models"
    shutil.copytree(example_models, models)
    before = tree_digest(models)
    from train_models import EXAMPLES

    lines = _trainer_report(models)
    assert len(lines) == len(EXAMPLES) and all(": unchanged (" in line for line in lines), lines
    assert tree_digest(models) == before


@pytest.mark.slow
def test_an_example_whose_file_is_gone_is_trained_again_alone(example_models, tmp_path):
    import shutil

    from fixtures_build import tree_digest

    models = tmp_path / "models"
    shutil.copytree(example_models, models)
    before = tree_digest(models)
    (models / "iris_xgb.json").unlink()
    lines = _trainer_report(models)
    retrained = [line for line in lines if ": unchanged (" not in line]
    assert len(retrained) == 1 and retrained[0].startswith("xgboost_multiclass_booster: held-out accuracy"), lines
    # Seeded and single-threaded: the booster comes back byte for byte, nothing else was written.
    assert tree_digest(models) == before
