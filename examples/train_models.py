"""Train the small example models, one per framework and shape of problem, into a folder.

    python examples/train_models.py models/

Everything is synthetic and seeded, so the folder is the same on every machine.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from tritonforge.converters.native import import_tensorflow

DIGITS = [str(i) for i in range(10)]
IRIS_CLASSES = ["setosa", "versicolor", "virginica"]


def keras_sequential_cnn(out: Path) -> None:
    _, keras = import_tensorflow()

    rng = np.random.default_rng(0)
    x = rng.random((64, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 64)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    model.save(out / "digits_cnn.keras")
    (out / "digits_cnn.yaml").write_text(
        "labels: [" + ", ".join(DIGITS) + "]\n"
        "preprocess: {step: image}\n"  # PNG/JPEG bytes in, the 28x28x1 tensor out
        "postprocess: {step: classify, top_k: 3}\n"
    )


def keras_functional_two_inputs(out: Path) -> None:
    _, keras = import_tensorflow()

    rng = np.random.default_rng(1)
    numeric = keras.Input((8,), name="numeric")
    extra = keras.Input((4,), name="extra")
    merged = keras.layers.Concatenate()([keras.layers.Dense(8, activation="relu")(numeric), extra])
    price = keras.layers.Dense(1, name="price")(merged)
    model = keras.Model([numeric, extra], price)
    model.compile("adam", "mse")
    model.fit([rng.random((64, 8)), rng.random((64, 4))], rng.random((64, 1)), epochs=1, verbose=0)
    logging.getLogger("absl").setLevel(logging.ERROR)  # HDF5 on purpose: the legacy format users still have
    model.save(out / "price_two_inputs.h5")


def torch_cnn(out: Path) -> None:
    import torch

    class SmallCNN(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.pool = torch.nn.AdaptiveAvgPool2d((4, 4))
            self.head = torch.nn.Linear(8 * 4 * 4, 5)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return self.head(torch.flatten(self.pool(torch.relu(self.conv(image))), 1))

    torch.manual_seed(0)
    model = SmallCNN().eval()
    example = (torch.randn(2, 3, 32, 32),)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model, example, dynamic_shapes={"image": {0: batch}})
    torch.export.save(program, out / "torch_cnn.pt2")


def sklearn_pipeline_with_strings(out: Path) -> None:
    import joblib
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(2)
    n = 200
    frame = pd.DataFrame(
        {
            "city": rng.choice(["paris", "lyon", "nice"], n),
            "age": rng.integers(18, 80, n).astype(np.float32),
            "income": rng.normal(3000, 800, n).astype(np.float32),
        }
    )
    churned = ((frame["age"] < 35) ^ (frame["city"] == "nice")).astype(int)
    pipeline = Pipeline(
        [
            (
                "features",
                ColumnTransformer(
                    [
                        ("city", OneHotEncoder(handle_unknown="ignore"), ["city"]),
                        ("numbers", StandardScaler(), ["age", "income"]),
                    ]
                ),
            ),
            ("classifier", LogisticRegression()),
        ]
    )
    pipeline.fit(frame, churned)
    joblib.dump(pipeline, out / "churn_pipeline.joblib")
    (out / "churn_pipeline.yaml").write_text(
        "labels: [stays, churns]\n"
        "preprocess: {step: tabular}\n"  # JSON objects or CSV lines: city, age, income
        "postprocess: {step: classify, top_k: 2}\n"
    )


def xgboost_multiclass_booster(out: Path) -> None:
    import xgboost as xgb

    rng = np.random.default_rng(3)
    x = rng.random((150, 4)).astype(np.float32)
    y = (x[:, 0] * 3).astype(int).clip(0, 2)
    features = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    data = xgb.DMatrix(x, label=y, feature_names=features)
    booster = xgb.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 3}, data, 10)
    booster.save_model(out / "iris_xgb.json")
    (out / "iris_xgb.yaml").write_text("labels: [" + ", ".join(IRIS_CLASSES) + "]\n")


def xgboost_regressor_with_missing(out: Path) -> None:
    import xgboost as xgb

    rng = np.random.default_rng(4)
    x = rng.random((300, 6)).astype(np.float32)
    y = x @ np.arange(1, 7, dtype=np.float32)
    x[rng.random(x.shape) < 0.1] = np.nan
    regressor = xgb.XGBRegressor(n_estimators=20, max_depth=4)
    regressor.fit(x, y)
    regressor.save_model(out / "house_price_xgb.ubj")
    # A user step: clients send "rooms=3 age=12 ..." lines, examples/house_features.py parses them.
    shutil.copyfile(Path(__file__).with_name("house_features.py"), out / "house_features.py")
    (out / "house_price_xgb.yaml").write_text(
        "preprocess:\n"
        "  step: user\n"
        "  file: house_features.py\n"
        "  function: parse\n"
        "  inputs: [{name: TEXT, shape: [-1, 1], dtype: string}]\n"
        "  samples: {TEXT: ['rooms=3 age=12 area=80', 'rooms=5 garden=1 distance=2.5', 'floor=2', 'age=40 area=120 floor=0']}\n"
    )


EXAMPLES = [
    keras_sequential_cnn,
    keras_functional_two_inputs,
    torch_cnn,
    sklearn_pipeline_with_strings,
    xgboost_multiclass_booster,
    xgboost_regressor_with_missing,
]


def train_examples(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for make in EXAMPLES:
        make(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, nargs="?", default=Path("models"))
    args = parser.parse_args(argv)
    train_examples(args.out)
    print(f"wrote {len(list(args.out.iterdir()))} files to {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
