#!/usr/bin/env bash
# Sets up .venv, trains the example models, builds the Triton repository, serves it with the
# bundled tritonserver (no Docker, no GPU) and checks every served answer against the source models.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=3
.venv/bin/python examples/train_models.py models/
# The examples include a scikit-learn pipeline saved with joblib: loading it runs pickle code.
.venv/bin/build-repo models/ model_repository/ --allow-pickle
# Starts serve-repo on 127.0.0.1, sends each model's stored samples over HTTP and gRPC, stops it.
.venv/bin/check-repo model_repository/
