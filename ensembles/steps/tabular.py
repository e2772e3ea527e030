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
    arrays = read_batch(raw_rows, spec)
    return arrays if arrays is not None else to_arrays(read_rows(raw_rows, spec), spec)


# ---- the whole batch in one pass ---------------------------------------------------------------
# read_batch gives the same arrays as read_rows + to_arrays for a batch with nothing unusual in it,
# with one json.loads for every JSON row and one float() per CSV value; on anything else (a bad or
# missing value, a long row, an empty line, quotes) it gives None and read_rows, row by row, names
# what is wrong. The rows are joined with ",\n" so that no row can borrow another's text: a raw
# newline is illegal inside a JSON string, and a row that leaves an object or array open turns the
# next rows into a nested value, which no field accepts.
_NUMBER_TYPES = {int, float}


def read_batch(raw_rows, spec):
    """One array per model input for the whole batch, or None: then read_rows says what is wrong."""
    try:
        texts = [raw.decode("utf-8").strip() for raw in raw_rows if len(raw) <= MAX_ROW_BYTES]
    except (UnicodeDecodeError, AttributeError):
        return None
    if len(texts) != len(raw_rows) or not texts:
        return None
    kind = spec.get("format", "auto")
    if kind == "json" or (kind == "auto" and all(t[:1] == "{" for t in texts)):
        records = _json_records(texts, field_order(spec))
        return None if records is None else _columns_of_records(records, spec)
    if kind == "csv" or (kind == "auto" and not any(t[:1] in ("{", "[") for t in texts)):
        return _columns_of_lines(texts, spec)
    return None


def _json_records(texts, order):
    if not all(t[-1:] == "}" for t in texts):
        return None
    try:
        records = json.loads("[" + ",\n".join(texts) + "]")
    except (ValueError, RecursionError):
        return None
    if len(records) != len(texts) or not all(type(r) is dict for r in records):
        return None
    known = set(order)
    return records if all(r.keys() <= known for r in records) else None


def _columns_of_records(records, spec):
    arrays = {}
    for output in spec["outputs"]:
        values = [record.get(field) for record in records for field in output["fields"]]
        kinds = set(map(type, values))
        if output["dtype"] == "string":
            if kinds != {str}:
                return None
            array = np.array([v.encode("utf-8") for v in values], dtype=np.object_)
        else:
            if not kinds <= _NUMBER_TYPES:
                return None
            array = _finite(values, output, spec)
            if array is None:
                return None
        arrays[output["name"]] = array.reshape(len(records), -1)
    return arrays


def _columns_of_lines(texts, spec):
    if any('"' in t or "\n" in t or "\r" in t or not t for t in texts):
        return None  # quoting and line breaks are csv.reader's job, row by row
    order = field_order(spec)
    split = [t.split(",") for t in texts]
    if any(len(values) != len(order) for values in split):
        return None
    arrays, start = {}, 0
    for output in spec["outputs"]:
        width = len(output["fields"])
        values = [v for row in split for v in row[start:start + width]]
        start += width
        if output["dtype"] == "string":
            if not all(values):
                return None  # an empty value is a missing field
            array = np.array([v.encode("utf-8") for v in values], dtype=np.object_)
        else:
            try:
                numbers = [float(v) for v in values]
            except ValueError:
                return None
            array = _finite(numbers, output, spec)
            if array is None:
                return None
        arrays[output["name"]] = array.reshape(len(texts), -1)
    return arrays


def _finite(numbers, output, spec):
    """The numbers as the output's dtype, or None for an infinity or a NaN the model takes no NaN for."""
    try:
        wide = np.array(numbers, dtype=np.float64)
    except OverflowError:  # an integer beyond float64
        return None
    finite = np.isfinite(wide)
    if not finite.all() and (np.isinf(wide).any() or not spec.get("allow_missing", False)):
        return None
    return wide.astype(output["dtype"])


class TritonPythonModel:
    def initialize(self, args):
        global pb_utils
        import triton_python_backend_utils as pb_utils

        config = json.loads(args["model_config"])
        self.spec = json.loads(config["parameters"][STEP_PARAMETER]["string_value"])

    def execute(self, requests):
        # Triton hands several requests at once: read every row of every request in one pass, and
        # only if that finds something wrong, request by request (a bad row fails its request alone).
        raws = [pb_utils.get_input_tensor_by_name(r, RAW_INPUT).as_numpy().reshape(-1) for r in requests]
        counts = [len(raw) for raw in raws]
        arrays = read_batch(np.concatenate(raws).tolist(), self.spec) if all(counts) else None
        if arrays is None:
            return self._request_by_request(raws)
        if len(requests) == 1:
            return [pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, v) for n, v in arrays.items()])]
        responses, offset = [], 0
        for count in counts:
            tensors = [pb_utils.Tensor(name, value[offset:offset + count]) for name, value in arrays.items()]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            offset += count
        return responses

    def _request_by_request(self, raws):
        columns = {output["name"]: [] for output in self.spec["outputs"]}
        counts, errors = [], []
        for raw in raws:
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
