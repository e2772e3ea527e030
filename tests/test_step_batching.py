"""Served Python steps under dynamic batching: one execute() with good and bad requests answers each alone.

Two steps are served alone (no model behind them), each with a long queue delay so that requests
sent together reach one execute(): the tabular step (churn rows) and a user step (the house
example's parse). A bad request is refused with its own message and a 400; the others in the same
batch get what the step computes in-process; a single request takes the same answers.
"""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from fixtures_serving import wait_for
from tritonforge.ensembles import wiring
from tritonforge.ensembles.library import ModelFacts, load_template, make_step
from tritonforge.repository import STRING, Signature, TensorSpec
from tritonforge.repository import config as configs

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BATCH = 8  # requests of one row each: a full batch is executed at once, well before the queue delay
CHURN = Signature(
    tuple(TensorSpec(name, dtype, (-1, 1)) for name, dtype in (("city", STRING), ("age", np.dtype("float32")), ("income", np.dtype("float32")))),
    (TensorSpec("probabilities", np.dtype("float32"), (-1, 2)),),
)
HOUSE = Signature((TensorSpec("input", np.dtype("float32"), (-1, 6)),), (TensorSpec("variable", np.dtype("float32"), (-1, 1)),))


def _install(repo: Path, name: str, step) -> None:
    config = wiring.step_config(name, step, BATCH)
    config.dynamic_batching.max_queue_delay_microseconds = 1_000_000
    version = repo / name / "1"
    version.mkdir(parents=True)
    shutil.copyfile(step.template, version / "model.py")
    for file_name, path in step.files:
        shutil.copyfile(path, version / file_name)
    configs.write(repo / name / "config.pbtxt", config)


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    """The tabular and user steps served alone: (server, the steps' StepModels by model name)."""
    from tritonforge.serving.server import serve

    repo = tmp_path_factory.mktemp("steps") / "model_repository"
    churn = ModelFacts(CHURN, None, False, ("stays", "churns"), "probabilities", True)
    house = ModelFacts(HOUSE, None, True, None, None, False, folder=EXAMPLES)
    models = {
        "rows": make_step("preprocess", {"step": "tabular"}, churn, "churn.yaml"),
        "lines": make_step("preprocess", {"step": "user", "file": "house_features.py", "function": "parse",
                                          "inputs": [{"name": "TEXT", "shape": [-1, 1], "dtype": "string"}]}, house, "house.yaml"),
    }
    for name, step in models.items():
        _install(repo, name, step)
    with serve(repo, control_mode="explicit", load_models=("*",)) as server:
        yield server, models


def _payload(rows) -> np.ndarray:
    return np.array([[r if isinstance(r, bytes) else r.encode()] for r in rows], dtype=object)


def _send_together(server, model: str, input_name: str, requests: list[np.ndarray]) -> list:
    """Every request sent at once; each answer is its outputs (dict) or the InferenceServerException."""
    client = server.http_client(concurrency=len(requests))
    before = _counts(client, model)
    pending = []
    for payload in requests:
        tensor = httpclient.InferInput(input_name, list(payload.shape), "BYTES")
        tensor.set_data_from_numpy(payload)
        pending.append(client.async_infer(model, [tensor]))
    answers = []
    for request in pending:
        try:
            result = request.get_result()
        except InferenceServerException as exc:
            answers.append(exc)
        else:
            answers.append({o["name"]: result.as_numpy(o["name"]) for o in result.get_response()["outputs"]})
    if len(requests) == BATCH:
        # Triton counts an execute() after the stub has sent its responses: wait (bounded) until every
        # request is counted, then see how many executions they took.
        wait_for(lambda: _counts(client, model)[0] - before[0] == len(requests), 5)
        after = _counts(client, model)
        assert after[0] - before[0] == len(requests), f"{after[0] - before[0]} of {len(requests)} requests counted"
        assert after[1] - before[1] == 1, "the requests were meant to reach one execute()"
    client.close()
    return answers


def _counts(client, model: str) -> tuple[int, int]:
    """(requests inferred, executions) so far."""
    stats = client.get_inference_statistics(model)["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])


def _assert_refused(answer, message: str) -> None:
    assert isinstance(answer, InferenceServerException), answer
    assert str(answer.status()) == "400", (answer.status(), answer.message())
    assert message in answer.message()
    assert "Traceback" not in answer.message()


def _assert_same(answer, expected: dict) -> None:
    assert isinstance(answer, dict), answer
    assert set(answer) == set(expected)
    for name, array in expected.items():
        assert answer[name].shape == array.shape
        if array.dtype == object:
            assert answer[name].tolist() == array.tolist()
        else:
            assert answer[name].dtype == array.dtype and np.array_equal(answer[name], array, equal_nan=True)


GOOD_ROWS = ['{"city": "nice", "age": 30, "income": 2500.5}', "paris,61,4200.5", '{"income": 1e3, "age": 44, "city": "lyon"}']
BAD_ROWS = [
    ('{"city": "nice", "age": "old", "income": 1}', "row 0: field 'age' must be a number, got \"old\""),
    ('{"city": "nice", "age": 30}', "row 0: missing field 'income'"),
    ("nice,30", "row 0: CSV row has 2 values, expected 3"),
    ('{"city": "\\ud800", "age": 1, "income": 1}', "row 0: field 'city' is not valid Unicode text (a lone surrogate)"),
]


@pytest.mark.parametrize("bad, message", BAD_ROWS, ids=["wrong type", "missing field", "short CSV line", "lone surrogate"])
def test_a_bad_row_fails_its_own_request_and_the_batch_around_it_is_answered(steps, bad, message):
    server, models = steps
    rows = [GOOD_ROWS[i % len(GOOD_ROWS)] for i in range(BATCH)]
    rows[3] = bad
    answers = _send_together(server, "rows", "RAW", [_payload([r]) for r in rows])
    tabular = load_template("tabular")
    for i, (row, answer) in enumerate(zip(rows, answers)):
        if i == 3:
            _assert_refused(answer, message)
        else:
            _assert_same(answer, tabular.rows_to_inputs([row.encode()], models["rows"].settings))


@pytest.mark.parametrize("rows", [
    [GOOD_ROWS[i % 3] for i in range(BATCH)],
    [f'{{"city": "nice", "age": {i}, "income": {i * 1000.5}}}' for i in range(BATCH)],
    [f"lyon,{i},{-i / 4}" for i in range(BATCH)],
], ids=["JSON and CSV rows", "JSON rows", "CSV lines"])
def test_a_batch_of_good_rows_is_answered_request_by_request(steps, rows):
    server, models = steps
    answers = _send_together(server, "rows", "RAW", [_payload([r]) for r in rows])
    expected = load_template("tabular").rows_to_inputs([r.encode() for r in rows], models["rows"].settings)
    for i, answer in enumerate(answers):
        _assert_same(answer, {name: array[i:i + 1] for name, array in expected.items()})


@pytest.mark.parametrize("rows, message", [
    (GOOD_ROWS, None),
    ([GOOD_ROWS[0], "paris,61"], "row 1: CSV row has 2 values, expected 3"),
    (['{"city": "x", "age": 1, "income": 2, "zip": 9}'], "row 0: unknown field 'zip'"),
], ids=["three good rows", "a bad second row", "an unknown field"])
def test_a_request_alone_gets_the_same_answer(steps, rows, message):
    server, models = steps
    [answer] = _send_together(server, "rows", "RAW", [_payload(rows)])
    if message:
        _assert_refused(answer, message)
    else:
        _assert_same(answer, load_template("tabular").rows_to_inputs([r.encode() for r in rows], models["rows"].settings))


def _house_features():
    spec = importlib.util.spec_from_file_location("house_features", EXAMPLES / "house_features.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HOUSE_LINES = ["rooms=3 age=12 area=80 floor=2 garden=1 distance=5", "garden=1", "", "rooms=1 age=3 area=20.5"]


@pytest.mark.parametrize("bad, message", [
    ("rooms=3 pool=1", "row 0: unknown feature 'pool' (known: rooms, age, area, floor, garden, distance)"),
    ("rooms=3 age=old", "row 0: feature 'age' must be a number, got 'old'"),
], ids=["unknown feature", "not a number"])
def test_a_line_the_user_function_refuses_fails_its_own_request_only(steps, bad, message):
    server, _ = steps
    lines = [HOUSE_LINES[i % len(HOUSE_LINES)] for i in range(BATCH)]
    lines[5] = bad
    answers = _send_together(server, "lines", "TEXT", [_payload([line]) for line in lines])
    parse = _house_features().parse
    for i, (line, answer) in enumerate(zip(lines, answers)):
        if i == 5:
            _assert_refused(answer, message)
        else:
            _assert_same(answer, parse({"TEXT": _payload([line])}))


def test_a_user_step_request_alone_is_answered_or_refused_as_in_a_batch(steps):
    server, _ = steps
    [good] = _send_together(server, "lines", "TEXT", [_payload(HOUSE_LINES)])
    expected = np.full((4, 6), np.nan, np.float32)
    expected[0] = [3, 12, 80, 2, 1, 5]
    expected[1, 4] = 1
    expected[3, :3] = [1, 3, 20.5]
    _assert_same(good, {"input": expected})
    [bad] = _send_together(server, "lines", "TEXT", [_payload(["rooms=2", "rooms=two"])])
    _assert_refused(bad, "row 1: feature 'rooms' must be a number, got 'two'")
