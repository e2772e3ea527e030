"""Builder fixtures: the example models trained once, and built once, per test session."""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

from tritonforge.builder import BuildOptions, build_repository  # noqa: E402
from train_models import train_examples  # noqa: E402

EXAMPLE_MODELS = ("cancer_keras", "cancer_xgb", "churn_pipeline", "digits_cnn", "house_price_xgb", "iris_xgb",
                  "price_two_inputs", "torch_cnn", "wine_lgbm")
# Every example is built as ONNX but these, whose sidecars ask for another format.
EXAMPLE_FORMATS = {"wine_lgbm": "fil"}
# The examples' sidecars ask for a tabular ensemble (churn_pipeline), an image ensemble (digits_cnn)
# and a user step (house_price_xgb: examples/house_features.py).
EXAMPLE_ENSEMBLES = ("churn_pipeline_ensemble", "digits_cnn_ensemble", "house_price_xgb_ensemble")
# Python steps only parse (rows, images, text lines): classify is Triton's classification extension, no step.
EXAMPLE_STEPS = ("churn_pipeline_preprocess", "digits_cnn_preprocess", "house_price_xgb_preprocess")


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``: equal digests mean nothing was written there."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def example_models(tmp_path_factory) -> Path:
    """The README's example models, trained once (read-only for tests: copy before changing)."""
    return train_examples(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def built_examples(example_models, tmp_path_factory):
    """The examples built to ONNX: (repository path, results by model name)."""
    repo = tmp_path_factory.mktemp("built") / "model_repository"
    results = build_repository(example_models, repo, BuildOptions(allow_pickle=True))
    return repo, {r.name: r for r in results}


@pytest.fixture(scope="session")
def built_examples_repo(built_examples) -> Path:
    """Path of the examples' ONNX repository (shared: do not modify; copy it first)."""
    return built_examples[0]
