"""Tabular preprocessing: BYTES rows (JSON objects or CSV lines) -> the model's input tensors.

Its config parameter ``tritonforge_step`` (JSON) says which fields feed which input::

    {"format": "auto",                      # json | csv | auto (a row starting with '{' or '[' is JSON)
     "outputs": [{"name": "input", "dtype": "float32", "fields": ["a", "b"]},
                 {"name": "city", "dtype": "string", "fields": ["city"]}],
     "allow_missing": true}                 # missing numbers become NaN (the model accepts them)

CSV lines list the fields in the order of ``outputs`` then ``fields``, with no header.
"""
import csv
import json

import numpy as np

STEP_PARAMETER = "tritonforge_step"
RAW_INPUT = "RAW"
MAX_ROW_BYTES = 64 << 10  # bounded before parsing: a row is a record, not a document


class RowError(ValueError):
    """A row that cannot be read; the message names the row and the field."""


def field_order(spec):
    return [field for output in spec["outputs"] for field in output["fields"]]


def _parse_row(index, raw, spec, order):
    if len(raw) > MAX_ROW_BYTES:
        raise RowError(f"row {index}: {len(raw)} bytes is longer than {MAX_ROW_BYTES}")
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
    except UnicodeDecodeError as exc:
        raise RowError(f"row {index}: not UTF-8 text (byte {exc.start})") from None
    text = text.strip()
    kind = spec.get("format", "auto")
    if kind == "json" or (kind == "auto" and text[:1] in ("{", "[")):
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RowError(f"row {index}: not valid JSON ({exc.msg} at char {exc.pos})") from None
        except RecursionError:
            raise RowError(f"row {index}: JSON nested too deeply") from None
        except ValueError as exc:  # an integer of thousands of digits
            raise RowError(f"row {index}: not valid JSON ({str(exc)[:80]})") from None
        if not isinstance(record, dict):
            raise RowError(f"row {index}: a JSON row must be an object of field: value")
        unknown = sorted(set(record) - set(order))
        if unknown:
            raise RowError(f"row {index}: unknown field '{str(unknown[0])[:40]}' (expected: {', '.join(order)})")
        return record
    values = next(csv.reader([text]))
    if len(values) != len(order):
        raise RowError(f"row {index}: CSV row has {len(values)} values, expected {len(order)} ({', '.join(order)})")
    return {field: (None if value == "" else value) for field, value in zip(order, values)}


def _number(index, field, value, allow_missing):
    if value is None:
        if allow_missing:
            return np.nan
        raise RowError(f"row {index}: missing field '{field}'")
    if isinstance(value, bool):
        raise RowError(f"row {index}: field '{field}' must be a number, got {_shown(value)}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise RowError(f"row {index}: field '{field}' must be a number, got {_shown(value)}") from None
    if number != number:  # NaN (JSON NaN, CSV 'nan'): a missing value
        if allow_missing:
            return number
        raise RowError(f"row {index}: field '{field}' is NaN, and this model takes no missing values")
    if number in (float("inf"), float("-inf")):
        raise RowError(f"row {index}: field '{field}' must be a finite number, got {_shown(value)}")
    return number


def _shown(value):
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _text(index, field, value):
    if value is None:
        raise RowError(f"row {index}: missing field '{field}'")
    if not isinstance(value, str):
        raise RowError(f"row {index}: field '{field}' must be a string, got {_shown(value)}")
    return value


def read_rows(raw_rows, spec, first_row=0):
    """Check and convert rows: one list of row values per model input. Raises RowError naming the row and field."""
    order = field_order(spec)
    allow_missing = spec.get("allow_missing", False)
    columns = {output["name"]: [] for output in spec["outputs"]}
    for index, raw in enumerate(raw_rows, first_row):
        record = _parse_row(index, raw, spec, order)
        for output in spec["outputs"]:
            if output["dtype"] == "string":
                columns[output["name"]].append([_text(index, f, record.get(f)).encode("utf-8") for f in output["fields"]])
            else:
                columns[output["name"]].append([_number(index, f, record.get(f), allow_missing) for f in output["fields"]])
    return columns


def to_arrays(columns, spec):
    dtypes = {output["name"]: np.object_ if output["dtype"] == "string" else output["dtype"] for output in spec["outputs"]}
    return {name: np.array(rows, dtype=dtypes[name]).reshape(len(rows), -1) for name, rows in columns.items()}


def rows_to_inputs(raw_rows, spec):
    """Decode a batch of rows into one array per model input."""
    return to_arrays(read_rows(raw_rows, spec), spec)


class TritonPythonModel:
    def initialize(self, args):
        global pb_utils
        import triton_python_backend_utils as pb_utils

        config = json.loads(args["model_config"])
        self.spec = json.loads(config["parameters"][STEP_PARAMETER]["string_value"])

    def execute(self, requests):
        # Triton hands several requests at once: check each request's rows (a bad one fails alone),
        # then build each input array once for all of them and split it.
        columns = {output["name"]: [] for output in self.spec["outputs"]}
        counts, errors = [], []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, RAW_INPUT).as_numpy().reshape(-1)
            try:
                if raw.size == 0:
                    raise RowError("empty request: send at least one row")
                rows = read_rows(raw.tolist(), self.spec)
            except RowError as exc:
                counts.append(0)
                errors.append((str(exc), pb_utils.TritonError.INVALID_ARG))
                continue
            except Exception as exc:  # a fault of this step, not of the row: one line, no traceback
                counts.append(0)
                errors.append((f"tabular step failed: {type(exc).__name__}", pb_utils.TritonError.INTERNAL))
                continue
            for name, values in rows.items():
                columns[name].extend(values)
            counts.append(len(raw))
            errors.append(None)
        arrays = to_arrays(columns, self.spec) if any(counts) else {}
        responses, offset = [], 0
        for count, error in zip(counts, errors):
            if error is not None:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(*error)))
                continue
            tensors = [pb_utils.Tensor(name, value[offset:offset + count]) for name, value in arrays.items()]
            offset += count
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
