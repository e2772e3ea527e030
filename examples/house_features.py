"""A user step for the house_price_xgb example: free-text feature lines -> the booster's input matrix.

    "rooms=3 age=12 ..." -> one float32 row of six features, NaN for a feature that is absent.

build-repo wraps ``parse`` into a Python-backend model (see house_price_xgb.yaml); it receives the
whole batch at once as numpy arrays and raises ValueError for a line it cannot read, which Triton
answers with a 400.
"""
import numpy as np

FEATURES = ("rooms", "age", "area", "floor", "garden", "distance")


def parse(batch):
    lines = batch["TEXT"].reshape(-1)
    rows = np.full((len(lines), len(FEATURES)), np.nan, dtype=np.float32)
    for i, line in enumerate(lines):
        text = line.decode("utf-8") if isinstance(line, bytes) else str(line)
        for pair in text.split():
            name, _, value = pair.partition("=")
            if name not in FEATURES:
                raise ValueError(f"row {i}: unknown feature '{name}' (known: {', '.join(FEATURES)})")
            try:
                rows[i, FEATURES.index(name)] = float(value)
            except ValueError:
                raise ValueError(f"row {i}: feature '{name}' must be a number, got '{value}'") from None
    return {"input": rows}
