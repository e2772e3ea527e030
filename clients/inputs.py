"""Files in, request tensors out: numpy (.npy/.npz), JSON, CSV rows and image files.

    arrays = read_inputs([Path("rows.csv")], spec)     # {"city": array([[b"paris"], ...]), ...}

How each file maps onto the model's inputs (``spec`` comes from the server):
- ``.npz``: one array per input, keyed ``<name>`` or ``input/<name>`` (a ``samples.npz`` that
  build-repo wrote works as it is); ``output/...``, ``atol`` and ``rtol`` are ignored.
- ``.npy``: the one input of a single-input model.
- ``.json``: ``{"<input>": values, ...}``; a row ``{"city": "paris", "age": 31}`` or a list of
  such rows (one column per input); a plain (nested) list for a single-input model; or a KServe
  v2 body ``{"inputs": [{"name", "data", "shape"}]}``.
- ``.csv``: a header row; a column named ``<input>`` feeds that input, columns ``<input>_0``,
  ``<input>_1``... (or ``<input>[0]``...) feed a vector input in index order; a single-input
  model takes every column, and then the header may be left out.
- images (``.png``, ``.jpg``...): decoded, converted to grey or RGB and resized to the
  input's height and width (HWC or CHW, read from its shape), floats scaled to [0, 1]; several
  images make a batch.
A model whose only input is BYTES (an ensemble that decodes its own payload) gets the raw file
bytes of an image, one JSON document per element of a JSON list, and one line per CSV row.

Only what is needed to build the request is done here (dtype, a missing batch axis, a column
made [rows, 1]); shapes are left for the server to check, so that its own message is shown.
"""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np

from tritonforge.clients.spec import ModelSpec, TensorSpec
from tritonforge.repository import read_samples

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class InputError(ValueError):
    """A file cannot be turned into the model's inputs; the message names the file and why."""


def to_bytes_array(values) -> np.ndarray:
    """Strings (or anything) as an np.object_ array of UTF-8 bytes, the form BYTES tensors take."""
    array = np.asarray(values, dtype=object)

    def encode(v):
        if isinstance(v, bytes):
            return v
        if isinstance(v, np.bytes_):
            return bytes(v)
        return str(v).encode("utf-8")

    return np.vectorize(encode, otypes=[object])(array) if array.size else array


def conform(array, tensor: TensorSpec, spec: ModelSpec) -> np.ndarray:
    """``array`` with the tensor's dtype, and a batch axis when the model batches and it lacks one."""
    if tensor.datatype == "BYTES":
        array = to_bytes_array(array)
    else:
        try:
            array = np.asarray(array, dtype=tensor.dtype)
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"input '{tensor.name}' of model '{spec.name}' is {tensor.datatype}: {exc}"
            ) from None
    rank = len(tensor.shape)
    if rank and array.ndim == rank - 1 and (spec.batches or tensor.shape[0] == 1):
        array = array[np.newaxis, ...]
    elif rank == 2 and array.ndim == 1 and tensor.shape[1] == 1:
        array = array[:, np.newaxis]  # a column of rows for a [-1, 1] input
    return array


def read_inputs(paths, spec: ModelSpec) -> dict[str, np.ndarray]:
    """Read every file and return one array per input, conformed to the model's dtypes.

    Arrays for the same input from several files are concatenated along the batch axis.
    """
    if not paths:
        raise InputError(f"no input file given for model '{spec.name}' (it takes {spec.describe()})")
    found: dict[str, list[np.ndarray]] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        for name, array in _read_one(path, spec).items():
            try:
                tensor = spec.input(name)
            except KeyError:
                # Passed through unchanged: the server names what it expected.
                found.setdefault(name, []).append(np.asarray(array))
                continue
            found.setdefault(name, []).append(conform(array, tensor, spec))
    return {name: arrays[0] if len(arrays) == 1 else np.concatenate(arrays) for name, arrays in found.items()}


def _single_input(spec: ModelSpec, path: Path) -> TensorSpec:
    if len(spec.inputs) != 1:
        names = ", ".join(t.name for t in spec.inputs)
        raise InputError(
            f"{path}: model '{spec.name}' has {len(spec.inputs)} inputs ({names}); "
            "give a file that names them (.npz, a JSON object, or a CSV header)"
        )
    return spec.inputs[0]


def _raw_bytes_input(spec: ModelSpec) -> TensorSpec | None:
    if len(spec.inputs) == 1 and spec.inputs[0].datatype == "BYTES":
        return spec.inputs[0]
    return None


def _read_one(path: Path, spec: ModelSpec) -> dict[str, object]:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _read_npz(path)
    if suffix == ".npy":
        return {_single_input(spec, path).name: np.load(path, allow_pickle=False)}
    if suffix == ".json":
        return _read_json(path, spec)
    if suffix == ".csv":
        return _read_csv(path, spec)
    if suffix in IMAGE_SUFFIXES:
        return _read_image(path, spec)
    raise InputError(
        f"{path}: unknown input file type '{suffix}' (use .npy, .npz, .json, .csv or an image)"
    )


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    arrays = read_samples(path).inputs
    if not arrays:
        raise InputError(f"{path}: no input arrays (keys '<name>' or 'input/<name>')")
    return arrays


def _read_json(path: Path, spec: ModelSpec) -> dict[str, object]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not valid JSON: {exc}") from None
    raw = _raw_bytes_input(spec)
    names = {t.name for t in spec.inputs}
    if isinstance(doc, dict) and isinstance(doc.get("inputs"), list):  # KServe v2 request body
        arrays = {}
        for item in doc["inputs"]:
            values = np.asarray(item["data"], dtype=object if item.get("datatype") == "BYTES" else None)
            arrays[item["name"]] = values.reshape(item["shape"]) if "shape" in item else values
        return arrays
    if raw is not None and isinstance(doc, list):
        return {raw.name: np.array([[json.dumps(row)] for row in doc], dtype=object)}
    if isinstance(doc, dict):
        if raw is not None and not set(doc) & names:
            return {raw.name: np.array([[json.dumps(doc)]], dtype=object)}
        if set(doc) & names and any(isinstance(v, (list, dict)) for v in doc.values()):
            return dict(doc)  # {"<input>": values, ...}
        if not set(doc) & names and any(isinstance(v, (list, dict)) for v in doc.values()):
            raise InputError(
                f"{path}: keys {', '.join(doc)} are not inputs of model '{spec.name}' "
                f"(it takes {spec.describe()})"
            )
        rows = [doc]  # one row of named fields
    elif isinstance(doc, list) and doc and all(isinstance(r, dict) for r in doc):
        rows = doc
    elif isinstance(doc, list):
        return {_single_input(spec, path).name: doc}
    else:
        raise InputError(f"{path}: expected a JSON object or list, got {type(doc).__name__}")
    return _columns(rows, spec, path)


def _columns(rows: list[dict], spec: ModelSpec, path: Path) -> dict[str, object]:
    """Rows of named fields -> one array per input (a field per input, or indexed fields)."""
    header = list(rows[0].keys())
    groups = _group_columns(header, spec)
    if not groups:
        tensor = _single_input(spec, path)
        return {tensor.name: [[_scalar(r[c]) for c in header] for r in rows]}
    return {
        name: [[_scalar(r.get(c)) for c in cols] for r in rows] for name, cols in groups.items()
    }


def _group_columns(header: list[str], spec: ModelSpec) -> dict[str, list[str]]:
    groups: dict[str, list[tuple[int, str]]] = {}
    for column in header:
        for tensor in spec.inputs:
            if column == tensor.name:
                groups.setdefault(tensor.name, []).append((0, column))
                break
            match = re.fullmatch(re.escape(tensor.name) + r"(?:_(\d+)|\[(\d+)\])", column)
            if match:
                index = int(match.group(1) or match.group(2))
                groups.setdefault(tensor.name, []).append((index, column))
                break
    return {name: [c for _, c in sorted(cols)] for name, cols in groups.items()}


def _scalar(value):
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _read_csv(path: Path, spec: ModelSpec) -> dict[str, object]:
    text = path.read_text()
    raw = _raw_bytes_input(spec)
    lines = [line for line in text.splitlines() if line.strip()]
    if raw is not None:
        return {raw.name: np.array([[line] for line in lines[1:]], dtype=object)}
    table = list(csv.reader(io.StringIO("\n".join(lines))))
    if not table:
        raise InputError(f"{path}: empty CSV file")
    first = table[0]
    if all(is_number(cell) for cell in first):  # no header: every column feeds the one input
        tensor = _single_input(spec, path)
        return {tensor.name: [[float(c) if c.strip() else np.nan for c in row] for row in table]}
    header, body = first, table[1:]
    if not body:
        raise InputError(f"{path}: a header and no rows")
    rows = [dict(zip(header, row)) for row in body]
    groups = _group_columns(header, spec)
    wanted = {t.name for t in spec.inputs}
    if groups and set(groups) != wanted:
        missing = ", ".join(sorted(wanted - set(groups)))
        raise InputError(
            f"{path}: no column for input(s) {missing} of model '{spec.name}' "
            f"(columns: {', '.join(header)}; name them '<input>' or '<input>_<i>')"
        )
    converted = []
    for row in rows:
        converted.append({k: (np.nan if v == "" else _scalar(v)) if is_number(v) or v == "" else v
                          for k, v in row.items()})
    return _columns(converted, spec, path)


def is_number(text: str) -> bool:
    """A CSV cell that reads as a number ("nan" included)."""
    try:
        float(text)
        return True
    except ValueError:
        return text.strip().lower() == "nan"


def image_layout(tensor: TensorSpec) -> tuple[str, int, int, int]:
    """('HWC' or 'CHW', height, width, channels) for an image input, from its shape."""
    dims = list(tensor.shape[1:] if len(tensor.shape) == 4 else tensor.shape)
    if len(dims) == 2:
        return "HW", dims[0], dims[1], 1
    if len(dims) == 3 and dims[-1] in (1, 3, 4):
        return "HWC", dims[0], dims[1], dims[2]
    if len(dims) == 3 and dims[0] in (1, 3, 4):
        return "CHW", dims[1], dims[2], dims[0]
    raise InputError(f"input '{tensor.name}' of shape {list(tensor.shape)} does not look like an image")


def _read_image(path: Path, spec: ModelSpec) -> dict[str, object]:
    raw = _raw_bytes_input(spec)
    if raw is not None:
        return {raw.name: np.array([[path.read_bytes()]], dtype=object)}
    from PIL import Image

    tensor = _single_input(spec, path)
    layout, height, width, channels = image_layout(tensor)
    try:
        image = Image.open(path)
        image = image.convert({1: "L", 3: "RGB", 4: "RGBA"}[channels])
    except Exception as exc:  # PIL raises several types for unreadable files
        raise InputError(f"{path}: cannot read the image: {exc}") from None
    if height > 0 and width > 0:
        image = image.resize((width, height))
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    if layout == "CHW":
        pixels = pixels.transpose(2, 0, 1)
    elif layout == "HW":
        pixels = pixels[:, :, 0]
    if np.issubdtype(np.dtype(tensor.dtype), np.floating):
        pixels = pixels.astype(np.float32) / 255.0
    return {tensor.name: pixels[np.newaxis, ...]}
