"""compare-models: the same rows to several served models, their quality, agreement and cost side by side,
and a verdict that gates CI (exit 1), with one line and exit 2 for what cannot be compared."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tritonforge.comparing import Answers, CompareError, Entry
from tritonforge.comparing.cli import main as compare_main
from tritonforge.comparing.metrics import agreement, quality

ROOT = Path(__file__).resolve().parents[1]
COMPARE_MODELS = str(Path(sys.executable).parent / "compare-models")
CANCER_ROWS = ROOT / "examples" / "inputs" / "cancer_rows.csv"
CHURN_ROWS = ROOT / "examples" / "inputs"


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = compare_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _url(server, protocol: str) -> list[str]:
    """Answers over ``protocol``, the cost over HTTP: the session's shared server gets no h2load, whose
    cancelled calls at the end of a run can crash tritonserver 2.51's gRPC server (server#7472);
    the cost over gRPC is measured on servers of their own (--repo, below)."""
    if protocol == "http":
        return ["--url", server.http_url]
    return ["--url", server.grpc_url, "-i", "grpc", "--load-url", server.http_url, "--cost-protocol", "http"]


# ---- the two example models, over both protocols -----------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_two_cancer_models_compared_give_quality_agreement_and_cost(served_examples, capsys, tmp_path, protocol):
    server, _ = served_examples
    report = tmp_path / "compare.json"
    code, out, err = _run(capsys, "cancer_xgb", "cancer_keras", "--data", CANCER_ROWS, "--target", "diagnosis",
                          *_url(server, protocol), "--duration", "1", "--concurrency", "4", "--json", report)
    assert code == 0, err
    doc = json.loads(report.read_text())
    assert doc["protocol"] == protocol and doc["data"]["rows"] == 113 and doc["baseline"] == "cancer_xgb"
    for model in doc["models"]:
        assert model["kind"] == "classifier" and model["classes"] == ["malignant", "benign"]
        assert 0.9 < model["quality"]["accuracy"] <= 1.0
        assert 0 < model["quality"]["log_loss"] and 0.9 < model["quality"]["auc"] <= 1.0
        assert list(model["costs"]) == ["http"] and model["cost"] == model["costs"]["http"]
        assert model["cost"]["requests"] > 0 and 0 <= model["cost"]["client_cpu_share"] <= 1
    assert doc["cost_settings"]["generators"] == {"http": "wrk"}
    (agreed,) = doc["agreement"]
    assert agreed["candidate"] == "cancer_keras" and 0.9 < agreed["same_label"] < 1.0
    assert 0 < agreed["mean_diff"] <= agreed["max_diff"] <= 1
    assert agreed["worst"] and agreed["worst"][0]["target"] in ("malignant", "benign")
    assert doc["verdict"] == {"judged": False, "passed": True, "candidates": [
        {"candidate": "cancer_keras", "passed": True, "reasons": []}]}
    for heading in ("accuracy", "log-loss", "AUC", "same answer", "req/s", "p99 ms", "gen CPU", "wrk over HTTP",
                    "rows where cancer_keras differs most from cancer_xgb", "verdict: not judged"):
        assert heading in out
    assert "cancer_keras: 113/113 rows answered" in err  # progress while it runs


def test_the_served_accuracy_is_the_source_model_s(served_examples, example_models, capsys, tmp_path):
    """The figures are the trained booster's own on the held-out tumours, not the server's approximation."""
    import xgboost as xgb

    from train_models import cancer_split

    server, _ = served_examples
    report = tmp_path / "compare.json"
    code, _, err = _run(capsys, "cancer_xgb", "cancer_xgb", "--data", CANCER_ROWS, "--target", "diagnosis",
                        "--url", server.http_url, "--no-cost", "--json", report)
    assert code == 0, err
    features, target, _, test = cancer_split()
    booster = xgb.XGBClassifier()
    booster.load_model(example_models / "cancer_xgb.json")
    expected = float(np.mean(booster.predict(features[test]) == target[test]))
    assert json.loads(report.read_text())["models"][0]["quality"]["accuracy"] == pytest.approx(expected)


def test_an_entry_compared_with_itself_agrees_fully(served_examples, capsys, tmp_path):
    server, _ = served_examples
    report = tmp_path / "self.json"
    code, out, err = _run(capsys, "cancer_keras", "cancer_keras:1", "--data", CANCER_ROWS, "--target", "diagnosis",
                          "--url", server.http_url, "--no-cost", "--max-disagreement", "0", "--json", report)
    assert code == 0, err
    (agreed,) = json.loads(report.read_text())["agreement"]
    assert agreed["same_label"] == 1.0 and agreed["max_diff"] == 0.0 and agreed["worst"] == []
    assert "cancer_keras:1 answers every row as cancer_keras does" in out
    assert "verdict: PASS: cancer_keras:1 passes (disagreement 0.0% <= 0%)" in out


# The two cancer models differ on a few tumours and both score above 0.9: thresholds either side of that.
@pytest.mark.parametrize("thresholds, verdict", [
    (["--max-disagreement", "0"], r"cancer_keras FAILS \(disagreement \d+\.\d% > 0%\)"),
    (["--max-quality-drop", "-0.5"], r"cancer_keras FAILS \(accuracy drop [+-]0\.\d{3} > -0\.5\)"),
    (["--max-disagreement", "0.5", "--max-quality-drop", "0.5"],
     r"cancer_keras passes \(disagreement \d+\.\d% <= 50%, accuracy drop [+-]0\.\d{3} <= 0\.5\)"),
])
def test_the_verdict_gates_on_the_thresholds(served_examples, capsys, thresholds, verdict):
    server, _ = served_examples
    code, out, err = _run(capsys, "cancer_xgb", "cancer_keras", "--data", CANCER_ROWS, "--target", "diagnosis",
                          "--url", server.http_url, "--no-cost", *thresholds)
    assert re.search(r"^verdict: (PASS|FAIL): " + verdict + "$", out, flags=re.M), out
    assert code == (1 if "FAILS" in verdict else 0), err


@pytest.mark.slow
def test_a_candidate_slower_than_the_speedup_asked_for_fails(served_examples, capsys):
    """No figure is asserted: a speedup of 1000x is beyond any model against itself."""
    server, _ = served_examples
    code, out, _ = _run(capsys, "cancer_xgb", "cancer_xgb", "--data", CANCER_ROWS, "--target", "diagnosis", "--url", server.http_url,
                        "--duration", "1", "--concurrency", "2", "--min-speedup", "1000")
    assert code == 1 and "verdict: FAIL: cancer_xgb FAILS (speedup " in out and "x < 1000x)" in out


@pytest.mark.slow
def test_the_cost_is_measured_over_the_protocol_asked(built_examples_repo, capsys, tmp_path):
    report = tmp_path / "compare.json"
    code, out, err = _run(capsys, "cancer_xgb", "cancer_keras", "--data", CANCER_ROWS, "--target", "diagnosis",
                          "--repo", built_examples_repo, "--cost-protocol", "grpc", "--duration", "1",
                          "--concurrency", "2", "--min-speedup", "0.001", "--json", report)
    assert code == 0, err
    doc = json.loads(report.read_text())
    assert doc["cost_settings"]["protocols"] == ["grpc"] and all(list(m["costs"]) == ["grpc"] for m in doc["models"])
    assert "h2load over gRPC" in out and "wrk over HTTP" not in out


@pytest.mark.slow
def test_versions_are_measured_over_http_only_and_the_report_says_why(served_examples, capsys, tmp_path):
    server, _ = served_examples
    report = tmp_path / "compare.json"
    code, _, err = _run(capsys, "cancer_xgb:1", "cancer_keras:1", "--data", CANCER_ROWS, "--target", "diagnosis",
                        "--url", server.http_url,
                        "--grpc-load-url", server.grpc_url, "--duration", "1", "--concurrency", "2", "--json", report)
    assert code == 0, err
    assert all(list(m["costs"]) == ["http"] for m in json.loads(report.read_text())["models"])
    assert "cost over grpc not measured: cancer_xgb:1, cancer_keras:1 name a version" in err


@pytest.mark.parametrize("argv, http, grpc", [
    ([], "127.0.0.1:8000", "127.0.0.1:8001"),                                    # local defaults, both
    (["-i", "grpc"], "127.0.0.1:8000", "127.0.0.1:8001"),
    (["--url", "h:9000"], "h:9000", None),                                        # a remote gRPC port is not guessed
    (["--url", "h:9001", "-i", "grpc"], None, "h:9001"),
    (["--url", "h:9000", "--grpc-load-url", "h:9001"], "h:9000", "h:9001"),
    (["--url", "h:9001", "-i", "grpc", "--load-url", "h:9000"], "h:9000", "h:9001"),
])
def test_each_protocol_s_cost_address_comes_from_what_was_given(argv, http, grpc):
    from tritonforge.comparing.cli import _load_urls, parser

    args = parser().parse_args(["a", "b", "--data", "rows.csv", *argv])
    url = args.url or {"http": "127.0.0.1:8000", "grpc": "127.0.0.1:8001"}[args.protocol]
    assert _load_urls(args, url) == {"http": http, "grpc": grpc}


@pytest.mark.parametrize("data", ["churn_rows.json", "churn_rows.csv"])
def test_a_bare_model_and_its_ensemble_take_the_same_raw_rows(served_examples, capsys, tmp_path, data):
    """The bare pipeline gets its three columns, the ensemble one raw row each; the answers are the same."""
    server, _ = served_examples
    report = tmp_path / "churn.json"
    code, _, err = _run(capsys, "churn_pipeline", "churn_pipeline_ensemble", "--data", CHURN_ROWS / data,
                        "--url", server.http_url, "--no-cost", "--max-disagreement", "0", "--json", report)
    assert code == 0, err
    doc = json.loads(report.read_text())
    bare, ensemble = (m["signature"].split(" -> ")[0] for m in doc["models"])
    assert "age:FP32" in bare and ensemble.count(":BYTES") == 1 and "age" not in ensemble
    assert doc["agreement"][0]["same_label"] == 1.0 and doc["agreement"][0]["max_diff"] < 1e-5


def _cancer_rows_as(fmt: str, folder: Path) -> Path:
    header, *rows = _cancer_table()
    records = [dict(zip(header, (float(v) for v in row[:-1]))) | {"diagnosis": row[-1]} for row in rows]
    path = folder / f"cancer_rows.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif fmt == "json":
        path.write_text(json.dumps(records))
    else:  # one array of features (named for neither model) and the target
        np.savez(path, features=np.array([row[:-1] for row in rows], np.float32), diagnosis=np.array([row[-1] for row in rows]))
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "json", "npz"])
def test_the_same_rows_in_any_format_give_the_same_figures(served_examples, capsys, tmp_path, fmt):
    server, _ = served_examples
    figures = []
    for data in (CANCER_ROWS, _cancer_rows_as(fmt, tmp_path)):
        report = tmp_path / f"{data.suffix}.json"
        code, _, err = _run(capsys, "cancer_xgb", "cancer_keras", "--data", data, "--target", "diagnosis",
                            "--url", server.http_url, "--no-cost", "--json", report)
        assert code == 0, err
        doc = json.loads(report.read_text())
        figures.append(([m["quality"] for m in doc["models"]], doc["agreement"][0]["same_label"], doc["data"]["rows"]))
    assert figures[0] == figures[1]


def test_a_folder_of_images_goes_decoded_to_the_model_and_encoded_to_its_ensemble(served_examples, capsys, tmp_path):
    """The ensemble answers the model's labelled scores (classify is Triton's classification extension): all 10 digits."""
    import shutil

    server, _ = served_examples
    for digit in (0, 3, 7):
        shutil.copy(ROOT / "examples" / "inputs" / f"digit_{digit}.png", tmp_path / f"digit_{digit}.png")
    report = tmp_path / "digits.json"
    code, out, err = _run(capsys, "digits_cnn", "digits_cnn_ensemble", "--data", tmp_path, "--url", server.http_url,
                          "--no-cost", "--max-disagreement", "0", "--json", report)
    assert code == 0, err
    doc = json.loads(report.read_text())
    assert doc["data"]["rows"] == 3 and len(doc["models"][0]["classes"]) == 10 and doc["models"][1]["output"] == "digit"
    assert doc["agreement"][0]["same_label"] == 1.0 and doc["agreement"][0]["max_diff"] < 1e-4


# ---- what cannot be compared: one line, exit 2 --------------------------------------------------
@pytest.mark.parametrize("models, fragment", [
    (["cancer_xgb", "no_such_model"], "no model 'no_such_model' on "),
    (["no_such_model", "cancer_xgb"], "no model 'no_such_model' on "),
    (["cancer_xgb", "cancer_keras:9"], "no version 9 of model 'cancer_keras' on "),
    (["cancer_xgb", "cancer_keras:latest"], "'cancer_keras:latest' is not a model name or name:version"),
    (["cancer_xgb"], "give at least two models"),
])
def test_models_that_cannot_be_compared_are_one_line(served_examples, capsys, models, fragment):
    server, _ = served_examples
    code, out, err = _run(capsys, *models, "--data", CANCER_ROWS, "--target", "diagnosis", "--url", server.http_url, "--no-cost")
    assert code == 2 and out == ""
    lines = [line for line in err.splitlines() if "rows answered" not in line]
    assert len(lines) == 1 and lines[0].startswith("compare-models: ") and fragment in lines[0], err


def _cancer_table() -> list[list[str]]:
    return [line.split(",") for line in CANCER_ROWS.read_text().splitlines()]


def _csv(rows: list[list[str]]) -> str:
    return "".join(",".join(row) + "\n" for row in rows)


def _without(rows, column: str):
    where = rows[0].index(column)
    return [[cell for i, cell in enumerate(row) if i != where] for row in rows]


def _with_cell(rows, row: int, column: int, value: str):
    rows = [list(r) for r in rows]
    rows[row][column] = value
    return rows


BAD_DATA = [
    # case, file name, contents (text, or a function of the path writing it), fragment of the one line
    ("missing target column", "rows.csv", lambda: _csv(_without(_cancer_table(), "diagnosis")), "no column 'diagnosis' (columns: mean_radius,"),
    ("wrong column count", "rows.csv", lambda: _csv(_cancer_table()[:3] + [_cancer_table()[3][:5]]), "line 4 has 5 columns, the header has 31"),
    ("empty file", "rows.csv", lambda: "", "empty file"),
    ("a header and no rows", "rows.csv", lambda: _csv(_cancer_table()[:1]), "a header and no rows"),
    ("non-numeric feature", "rows.csv", lambda: _csv(_with_cell(_cancer_table(), 2, 0, "big")), "could not convert string to float: 'big'"),
    ("a feature too few", "rows.csv", lambda: _csv(_without(_cancer_table(), "mean_radius")), "cancer_xgb refused row 0: "),
    ("no header line", "rows.csv", lambda: _csv(_cancer_table()[1:2]).replace("benign", "1").replace("malignant", "0"), "no header line, so no column 'diagnosis'"),
    ("unknown file type", "rows.txt", lambda: "1,2,3\n", "unknown data file type '.txt'"),
    ("JSON that is not JSON", "rows.json", lambda: "[{", "not valid JSON"),
    ("JSON lines missing the target", "rows.jsonl", lambda: '{"diagnosis": "benign", "a": 1}\n{"a": 2}\n', "row 1 has no field 'diagnosis'"),
    ("npz missing the target", "rows.npz", lambda: {"input": np.zeros((2, 30), np.float32)}, "no array 'diagnosis' (arrays: input)"),
    ("not an npz", "rows.npz", lambda: b"not a zip", "not a readable .npz file"),
]


@pytest.mark.parametrize("case, name, contents, fragment", BAD_DATA, ids=[row[0] for row in BAD_DATA])
def test_a_bad_data_file_is_one_line(served_examples, capsys, tmp_path, case, name, contents, fragment):
    server, _ = served_examples
    path = tmp_path / name
    made = contents()
    if isinstance(made, dict):
        np.savez(path, **made)
    elif isinstance(made, bytes):
        path.write_bytes(made)
    else:
        path.write_text(made)
    code, out, err = _run(capsys, "cancer_xgb", "cancer_keras", "--data", path, "--target", "diagnosis",
                          "--url", server.http_url, "--no-cost", "-q")
    assert code == 2 and out == "", err
    assert len(err.splitlines()) == 1 and err.startswith("compare-models: ") and fragment in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv, fragment", [
    (["--max-disagreement", "5"], "--max-disagreement 5: give a share from 0 to 1"),
    (["--duration", "600"], "--duration 600: give more than 0 and at most 60 seconds"),
    (["--concurrency", "0"], "--concurrency 0: give 1 to 256"),
    (["--url", "127.0.0.1:9", "--no-cost"], "cannot reach 127.0.0.1:9 (http): "),
    (["--url", "127.0.0.1:9", "-i", "grpc", "--no-cost"], "no ready Triton server at 127.0.0.1:9 (grpc)"),
])
def test_bad_options_are_one_line(capsys, argv, fragment):
    code, out, err = _run(capsys, "a", "b", "--data", CANCER_ROWS, "--target", "diagnosis", "-q", *argv)
    assert code == 2 and len(err.splitlines()) == 1 and fragment in err, err


# ---- reports, the console script, a repository served for the comparison ------------------------
@pytest.mark.slow
def test_the_console_script_serves_a_repository_and_writes_both_reports(built_examples_repo, tmp_path):
    """--repo: serve-repo on free ports for the two models, compared over gRPC, stopped afterwards."""
    json_path, html_path = tmp_path / "out" / "compare.json", tmp_path / "out" / "compare.html"
    before = _servers_of(built_examples_repo)  # the session's own server of the examples
    done = subprocess.run([COMPARE_MODELS, "cancer_xgb", "cancer_keras", "--data", str(CANCER_ROWS), "--target", "diagnosis",
                           "--repo", str(built_examples_repo), "-i", "grpc", "--duration", "1", "--concurrency", "2",
                           "--max-disagreement", "0.1", "--json", str(json_path), "--html", str(html_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "verdict: PASS: cancer_keras passes" in done.stdout
    doc = json.loads(json_path.read_text())
    assert doc["protocol"] == "grpc" and all(c["requests"] > 0 for m in doc["models"] for c in m["costs"].values())
    assert all(sorted(m["costs"]) == ["grpc", "http"] for m in doc["models"])  # both, by default
    page = html_path.read_text()
    assert page.count("data:image/png;base64,") == 2 and "verdict: PASS" in page
    assert sorted(p.name for p in json_path.parent.iterdir()) == ["compare.html", "compare.json"]  # no staging left
    assert _servers_of(built_examples_repo) == before, "the server compare-models started is still running"


def _servers_of(repo: Path) -> set[str]:
    found = subprocess.run(["pgrep", "-f", f"model-repository={repo}"], capture_output=True, text=True)
    return set(found.stdout.split())


def test_a_model_missing_from_the_repository_is_one_line_before_anything_starts(built_examples_repo, capsys):
    code, out, err = _run(capsys, "cancer_xgb", "cancer_catboost", "--data", CANCER_ROWS, "--repo", built_examples_repo)
    assert code == 2 and err == f"compare-models: no model 'cancer_catboost' in {built_examples_repo}\n"


# ---- the figures, on answers made by hand ------------------------------------------------------
def _classifier(name: str, scores) -> Answers:
    scores = np.asarray(scores, float)
    classes = ("malignant", "benign")
    labels = np.array([classes[i] for i in scores.argmax(axis=1)], dtype=object)
    return Answers(Entry(name), "classifier", "probabilities", labels, classes, scores)


def test_quality_reads_a_target_of_class_indices_as_the_model_s_class_names():
    answers = _classifier("a", [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    by_index = quality(answers, np.array(["0", "1", "1", "1"], dtype=object))
    by_name = quality(answers, np.array(["malignant", "benign", "benign", "benign"], dtype=object))
    assert by_index == by_name
    assert by_name.accuracy == 0.75 and by_name.auc == 1.0
    assert by_name.log_loss == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.4, 0.7])))


def test_regressors_get_mae_and_rmse_and_agree_within_a_relative_tolerance():
    a = Answers(Entry("a"), "regressor", "price", values=np.array([[100.0], [200.0], [300.0]]))
    b = Answers(Entry("b"), "regressor", "price", values=np.array([[100.05], [200.0], [310.0]]))
    figures = quality(a, np.array(["110", "190", "300"], dtype=object))
    assert figures.mae == pytest.approx(20 / 3) and figures.rmse == pytest.approx(np.sqrt(200 / 3))
    agreed = agreement(a, b)
    assert agreed.same_label == pytest.approx(2 / 3) and agreed.max_diff == pytest.approx(10.0)
    assert [w.row for w in agreed.worst] == [2, 0]  # the one that differs first, then by size


def test_agreement_orders_the_rows_that_differ_most_first():
    a = _classifier("a", [[0.9, 0.1], [0.6, 0.4], [0.5, 0.5], [0.2, 0.8]])
    b = _classifier("b", [[0.8, 0.2], [0.3, 0.7], [0.5, 0.5], [0.25, 0.75]])
    agreed = agreement(a, b, np.array(["malignant", "malignant", "benign", "benign"], dtype=object))
    assert agreed.same_label == 0.75 and agreed.max_diff == pytest.approx(0.3)
    assert [(w.row, w.baseline, w.candidate, w.target) for w in agreed.worst] == [
        (1, "malignant (0.60)", "benign (0.70)", "malignant"), (0, "malignant (0.90)", "malignant (0.80)", "malignant"),
        (3, "benign (0.80)", "benign (0.75)", "benign")]


def test_a_classifier_and_a_regressor_cannot_be_compared():
    a = _classifier("a", [[0.9, 0.1]])
    b = Answers(Entry("b"), "regressor", "price", values=np.array([[1.0]]))
    with pytest.raises(CompareError, match="^b is a regressor and a a classifier: their answers cannot be compared$"):
        agreement(a, b)
