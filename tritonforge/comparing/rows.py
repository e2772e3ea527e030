"""The rows every model is asked about: a data file read once, its target column set apart.

    with read_data(Path("rows.csv"), target="diagnosis") as data:
        data.rows, data.target          # 113, array(['benign', 'malignant', ...], dtype=object)
        arrays = data.inputs_for(spec)  # request tensors for one model, as triton-infer builds them

Formats: CSV (a header; a column per input or ``<input>_<i>``, or every column for a
single-input model), JSON (a list of row objects), JSON lines (``.jsonl``/``.ndjson``: one row
object per line), ``.npz`` (one array per input; the target an array of its own) and a folder of
images. The target column is removed here and the rest written, in the file's own format, to a
private folder; :func:`tritonforge.clients.read_inputs` then turns that file into each model's
tensors, so that compare-models sends exactly what ``triton-infer`` would send for it: a bare
model gets its inputs, an ensemble over raw rows gets one CSV line or JSON document per row.
"""
from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tritonforge.clients import InputError, ModelSpec, read_inputs
from tritonforge.clients.inputs import IMAGE_SUFFIXES, conform, is_number
from tritonforge.repository import Samples, read_samples, write_samples

JSON_LINES = {".jsonl", ".ndjson"}
FORMATS = "CSV, JSON rows, JSON lines, .npz or a folder of images"


class DataError(ValueError):
    """The data file cannot give the rows (or the target); the message is one line naming the file."""


@dataclass
class DataSet:
    """Rows to send (as files read_inputs takes), how many, and the target values when asked for."""

    source: Path
    rows: int
    files: list[Path]
    target_name: str | None = None
    target: np.ndarray | None = None
    _scratch: Path | None = field(default=None, repr=False)

    def inputs_for(self, spec: ModelSpec) -> dict[str, np.ndarray]:
        """The model's request tensors for every row; one line naming the data file when they cannot be made."""
        try:
            arrays = read_inputs(self.files, spec)
            if len(arrays) == 1 and len(spec.inputs) == 1 and spec.inputs[0].name not in arrays:
                # One unnamed table (an .npz array named for another model): it is this model's one input.
                return {spec.inputs[0].name: conform(next(iter(arrays.values())), spec.inputs[0], spec)}
            return arrays
        except InputError as exc:
            # read_inputs names the scratch copy; the user knows the file they gave.
            text = str(exc).replace(str(self._scratch or "\0"), str(self.source.parent))
            raise DataError(text if str(self.source) in text else f"{self.source}: {text}") from None

    def close(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __enter__(self) -> "DataSet":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_data(path: Path, target: str | None = None) -> DataSet:
    """Read ``path`` and set its ``target`` column apart; :class:`DataError` in one line when it cannot."""
    path = Path(path)
    if path.is_dir():
        return _images(path, target)
    if not path.is_file():
        raise DataError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _csv(path, target)
    if suffix == ".json" or suffix in JSON_LINES:
        return _json(path, target)
    if suffix == ".npz":
        return _npz(path, target)
    raise DataError(f"{path}: unknown data file type '{suffix}' (give {FORMATS})")


def _scratch_file(path: Path) -> Path:
    return Path(tempfile.mkdtemp(prefix="tritonforge-compare-")) / path.name


def _csv(path: Path, target: str | None) -> DataSet:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read it ({exc})") from None
    table = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if not table:
        raise DataError(f"{path}: empty file (no header, no rows)")
    header, body = table[0], table[1:]
    has_header = not all(is_number(cell) for cell in header)
    if not has_header:
        if target is not None:
            raise DataError(f"{path}: no header line, so no column '{target}' (the first line is numbers)")
        header, body = [f"column_{i}" for i in range(len(header))], table
    if not body:
        raise DataError(f"{path}: a header and no rows")
    for number, row in enumerate(body, start=2 if has_header else 1):
        if len(row) != len(header):
            raise DataError(f"{path}: line {number} has {len(row)} columns, the header has {len(header)}")
    if target is None:
        return DataSet(path, len(body), [path])
    if target not in header:
        raise DataError(f"{path}: no column '{target}' (columns: {', '.join(header)})")
    keep = [i for i, name in enumerate(header) if name != target]
    where = header.index(target)
    values = np.array([row[where].strip() for row in body], dtype=object)
    scratch = _scratch_file(path)
    with scratch.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerows([[row[i] for i in keep] for row in [header] + body])
    return DataSet(path, len(body), [scratch], target, values, scratch.parent)


def _json(path: Path, target: str | None) -> DataSet:
    try:
        text = path.read_text()
        if path.suffix.lower() in JSON_LINES:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            rows = json.loads(text) if text.strip() else []
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: not valid JSON: {exc}") from None
    if not rows:
        raise DataError(f"{path}: empty file (no rows)")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        if target is not None or not isinstance(rows, (list, dict)):
            raise DataError(f"{path}: expected rows of named fields (a JSON list of objects, or one object per line)")
        return DataSet(path, len(rows) if isinstance(rows, list) else 1, [path])
    if target is not None:
        missing = [i for i, row in enumerate(rows) if target not in row]
        if missing:
            raise DataError(f"{path}: row {missing[0]} has no field '{target}' (fields: {', '.join(rows[missing[0]])})")
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        raise DataError(f"{path}: rows have different numbers of fields ({', '.join(map(str, sorted(widths)))})")
    values = np.array([row[target] for row in rows], dtype=object) if target else None
    # read_inputs takes a JSON list of rows: JSON lines (and any file with a target) become one.
    scratch = _scratch_file(path.with_suffix(".json"))
    scratch.write_text(json.dumps([{k: v for k, v in row.items() if k != target} for row in rows]))
    return DataSet(path, len(rows), [scratch], target, values, scratch.parent)


def _npz(path: Path, target: str | None) -> DataSet:
    try:
        arrays = dict(read_samples(path).inputs)  # the repository's own reader: samples.npz files work too
    except Exception as exc:  # numpy raises several types for a file that is not an npz
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    if not arrays:
        raise DataError(f"{path}: empty file (no input arrays)")
    if target is not None and target not in arrays:
        raise DataError(f"{path}: no array '{target}' (arrays: {', '.join(arrays)})")
    counts = {name: (a.shape[0] if a.ndim else 0) for name, a in arrays.items()}
    if len(set(counts.values())) > 1:
        raise DataError(f"{path}: arrays have different numbers of rows ({', '.join(f'{k}: {v}' for k, v in counts.items())})")
    rows = next(iter(counts.values()))
    if target is None:
        return DataSet(path, rows, [path])
    values = arrays.pop(target)
    if not arrays:
        raise DataError(f"{path}: no array but the target '{target}'")
    scratch = _scratch_file(path)
    write_samples(scratch, Samples(arrays))
    return DataSet(path, rows, [scratch], target, np.asarray(values).reshape(rows, -1)[:, 0], scratch.parent)


def _images(folder: Path, target: str | None) -> DataSet:
    if target is not None:
        raise DataError(f"{folder}: a folder of images has no target column (compare them without --target)")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise DataError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return DataSet(folder, len(images), images)
