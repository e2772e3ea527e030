#!/usr/bin/env bash
# Sets up .venv, trains the example models, builds the Triton repository, checks every served
# answer against the source models, then serves it with the bundled tritonserver (no Docker, no
# GPU) and asks it about held-out rows: iris flowers, drawn digits, customers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=3
# Examples whose inputs did not change are left as they are (a rerun builds no new version).
# --text: also a tiny BERT review classifier with its trained tokenizer (examples/train_text.py, ~1 min).
.venv/bin/python examples/train_models.py models/ --text models_text/
# The examples include a scikit-learn pipeline saved with joblib: loading it runs pickle code.
.venv/bin/build-repo models/ model_repository/ --allow-pickle
# The text example (HuggingFace folder + sidecar): its model and its text ensemble (docs/TEXT.md).
HF_HUB_OFFLINE=1 .venv/bin/build-repo models_text/ model_repository/
# The detection example: a small YOLO exported by ultralytics (the test fixture) and 24 held-out
# images with known objects; its build adds shapes_detect (image bytes in, boxes out; docs/DETECTION.md).
.venv/bin/python examples/detect_example.py models_detect/
.venv/bin/build-repo models_detect/ model_repository/
# Starts serve-repo on 127.0.0.1, sends each model's stored samples over HTTP and gRPC, stops it.
.venv/bin/check-repo model_repository/

# Serve it and ask: serve-repo on 127.0.0.1 (free ports), stopped by its PID at the end.
HTTP_PORT=$(.venv/bin/python -c "from tritonforge.serving.process import free_port; print(free_port())")
GRPC_PORT=$(.venv/bin/python -c "from tritonforge.serving.process import free_port; print(free_port())")
.venv/bin/serve-repo model_repository/ --model-control-mode none --http-port "$HTTP_PORT" --grpc-port "$GRPC_PORT" \
  --metrics-port 0 > serve-repo.log 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true' EXIT
# serve-repo says "serving" once every model is loaded.
for _ in $(seq 1 300); do
  grep -q "^serve-repo: serving" serve-repo.log && break
  kill -0 "$SERVER" 2>/dev/null || { tail -20 serve-repo.log; exit 1; }
  sleep 1
done
URL="127.0.0.1:$HTTP_PORT"
echo "--- iris flowers held out from training (setosa, versicolor, virginica):"
.venv/bin/triton-infer iris_xgb --input examples/inputs/iris_rows.csv --top-k 1 -u "$URL"
echo "--- a drawn 7, through the image ensemble:"
.venv/bin/triton-infer digits_cnn_ensemble --input examples/inputs/digit_7.png -u "$URL"
echo "--- the first wine of each cultivar, from the LightGBM model built for Triton's FIL backend:"
.venv/bin/triton-infer wine_lgbm --input examples/inputs/wine_rows.csv --top-k 1 -u "$URL"
echo "--- six reviews it never saw (a review is positive when its one opinion word is), strings in, tokenized in Triton:"
.venv/bin/triton-infer review_text_ensemble --input examples/inputs/text_reviews.csv --top-k 1 -u "$URL"
echo "--- 24 held-out images of squares, circles and triangles through the detection ensemble (mAP50), one drawn:"
.venv/bin/python examples/detect_example.py models_detect/ --score "$URL"
.venv/bin/triton-infer shapes_detect --input models_detect_held_out/shapes_01.jpg -u "$URL" --draw shapes_01_boxes.png
echo "--- four customers (the rule: churns when younger than 35 XOR living in nice), over gRPC:"
.venv/bin/triton-infer churn_pipeline_ensemble --input examples/inputs/churn_rows.json -i grpc -u "127.0.0.1:$GRPC_PORT"
