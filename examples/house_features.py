"""A user step for the house_price_xgb example: free-text feature lines -> the booster's input matrix.

    "rooms=3 age=12 ..." -> one float32 row of six features, NaN for a feature that is absent.

build-repo wraps ``parse`` into a Python-backend model (see house_price_xgb.yaml); it receives the
whole batch at once as numpy arrays and raises ValueError for a line it cannot read, which Triton
answers with a 400.
"""
import numpy as np

FEATURES = ("rooms", "age", "area", "floor", "garden", "distance")
COLUMN = {name: i for i, name in enumerate(FEATURES)}  # feature name -> its column
MISSING = [float("nan")] * len(FEATURES)


def parse(batch):
    rows = []  # plain Python lists, made into one array at the end: cheaper than writing into numpy cell by cell
    for i, line in enumerate(batch["TEXT"].reshape(-1).tolist()):
        text = line.decode("utf-8") if isinstance(line, bytes) else str(line)
        row = MISSING.copy()
        for pair in text.split():
            name, _, value = pair.partition("=")
            column = COLUMN.get(name)
            if column is None:
                raise ValueError(f"row {i}: unknown feature '{name}' (known: {', '.join(FEATURES)})")
            try:
                row[column] = float(value)
            except ValueError:
                raise ValueError(f"row {i}: feature '{name}' must be a number, got '{value}'") from None
        rows.append(row)
    return {"input": np.array(rows, dtype=np.float32).reshape(len(rows), len(FEATURES))}
