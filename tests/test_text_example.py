"""The text example answers right: trained from its rule, built, served, and asked about reviews it
never saw, with the README's triton-infer command on examples/inputs/text_reviews.csv."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from train_text import HELD_OUT, NEGATIVE, POSITIVE, train_text_example, write_text_inputs

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(__import__("sys").executable).parent


def rule(text: str) -> str:
    words = set(text.split())
    assert len(words & set(POSITIVE + NEGATIVE)) == 1, text
    return "positive" if words & set(POSITIVE) else "negative"


@pytest.fixture(scope="module")
def text_example(tmp_path_factory):
    from tritonforge.builder import build_repository

    models = tmp_path_factory.mktemp("text_example")
    score = train_text_example(models)
    repo = tmp_path_factory.mktemp("text_example_built") / "model_repository"
    results = {r.name: r for r in build_repository(models, repo)}
    return score, repo, results


def test_the_example_learns_its_rule(text_example):
    score, _, results = text_example
    accuracy = float(score.split()[2])
    assert accuracy >= 0.95, score
    assert {n: r.status.name for n, r in results.items()} == {"review_text": "OK", "review_text_preprocess": "OK",
                                                              "review_text_ensemble": "OK"}


def test_the_shipped_reviews_are_the_examples_held_out_ones(tmp_path):
    assert write_text_inputs(tmp_path).read_text() == (ROOT / "examples" / "inputs" / "text_reviews.csv").read_text()


def test_triton_infer_names_each_held_out_review_by_the_rule(text_example):
    from tritonforge.serving.server import serve

    _, repo, _ = text_example
    with serve(repo, control_mode="none", ready_timeout=600) as server:
        done = subprocess.run([str(BIN / "triton-infer"), "review_text_ensemble", "--input", "examples/inputs/text_reviews.csv",
                               "--top-k", "1", "-u", server.http_url], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.strip().startswith("row ")]
    assert len(rows) == len(HELD_OUT)
    for line, review in zip(rows, HELD_OUT):
        assert rule(review) in line, (review, line)
