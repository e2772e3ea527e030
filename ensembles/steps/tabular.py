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
from operator import itemgetter

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


NO_MISSING = "this model takes no missing values"


def _has_no_nan(dtype):
    """Integers and booleans: a missing value (NaN) cannot be one."""
    return np.dtype(dtype).kind in "iub"


def _number(index, field, value, allow_missing, no_missing=NO_MISSING):
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
        raise RowError(f"row {index}: field '{field}' is NaN, and {no_missing}")
    if number in (float("inf"), float("-inf")):
        raise RowError(f"row {index}: field '{field}' must be a finite number, got {_shown(value)}")
    return number


def _shown(value):
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _text(index, field, value):
    """The field's UTF-8 bytes."""
    if value is None:
        raise RowError(f"row {index}: missing field '{field}'")
    if not isinstance(value, str):
        raise RowError(f"row {index}: field '{field}' must be a string, got {_shown(value)}")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:  # JSON's "\ud800": a lone surrogate has no UTF-8
        raise RowError(f"row {index}: field '{field}' is not valid Unicode text (a lone surrogate)") from None


def read_rows(raw_rows, spec, first_row=0):
    """Check and convert rows: one list of row values per model input. Raises RowError naming the row and field."""
    order = field_order(spec)
    allow_missing = spec.get("allow_missing", False)
    columns = {output["name"]: [] for output in spec["outputs"]}
    # An integer input has no NaN: there a missing value is refused whatever allow_missing says.
    no_nan = {output["name"]: f"input '{output['name']}' takes integers, which have no missing value"
              for output in spec["outputs"] if output["dtype"] != "string" and _has_no_nan(output["dtype"])}
    for index, raw in enumerate(raw_rows, first_row):
        record = _parse_row(index, raw, spec, order)
        for output in spec["outputs"]:
            name = output["name"]
            if output["dtype"] == "string":
                columns[name].append([_text(index, f, record.get(f)) for f in output["fields"]])
            else:
                takes_nan = allow_missing and name not in no_nan
                columns[name].append([_number(index, f, record.get(f), takes_nan, no_nan.get(name, NO_MISSING))
                                      for f in output["fields"]])
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
# The work is column by column over the batch: one list of values per output (row-major, the
# output's own fields), then one float64 array for every number of every output and one object
# array for every string, each output a view of its part of them.
_NUMBER_TYPES = {int, float}
_JSON = json.JSONDecoder()  # json.loads(text) is _JSON.decode(text) after checks a joined text never needs


class Layout:
    """What read_batch needs of a spec, worked out once (the served step keeps one)."""

    def __init__(self, spec):
        self.kind = spec.get("format", "auto")
        self.allow_missing = spec.get("allow_missing", False)
        self.order = field_order(spec)
        self.keys = len(set(self.order))  # a record with every field and no more keys has no unknown field
        self.names = [output["name"] for output in spec["outputs"]]
        # The outputs of numbers and those of strings, each as (name, its first field in a row, its width,
        # a getter of its fields in a record, its dtype): each group's values go into one array, output
        # after output, and each output is a view of its part.
        self.numbers, self.strings, start = [], [], 0
        for output in spec["outputs"]:
            fields, string = output["fields"], output["dtype"] == "string"
            dtype = np.dtype(object if string else output["dtype"])
            (self.strings if string else self.numbers).append((output["name"], start, len(fields), itemgetter(*fields), dtype))
            start += len(fields)
        # NaN (a missing value) fits no integer input: with one among the outputs, a batch holding a
        # NaN is left to read_rows, which says whether the NaN fell in a float field or an integer one.
        self.nan_allowed = self.allow_missing and not any(_has_no_nan(entry[4]) for entry in self.numbers)
        dtypes = {entry[4] for entry in self.numbers}
        self.dtype = dtypes.pop() if len(dtypes) == 1 else None  # one cast for every number when they share a dtype
        # A group whose outputs have one width (and one dtype) is one (outputs, rows, width) array.
        self.number_width = _one_width(self.numbers) if self.dtype is not None else None
        self.string_width = _one_width(self.strings)


def _one_width(group):
    widths = {entry[2] for entry in group}
    return widths.pop() if len(widths) == 1 else None


def read_batch(raw_rows, spec, layout=None):
    """One array per model input for the whole batch, or None: then read_rows says what is wrong."""
    layout = layout or Layout(spec)
    try:
        texts = [raw.decode("utf-8").strip() for raw in raw_rows if len(raw) <= MAX_ROW_BYTES]
    except (UnicodeDecodeError, AttributeError):
        return None
    if len(texts) != len(raw_rows) or not texts:
        return None
    kind = layout.kind
    if kind == "json" or (kind == "auto" and all(t[:1] == "{" for t in texts)):
        return _columns_of_records(texts, layout)
    if kind == "csv" or (kind == "auto" and not any(t[:1] in ("{", "[") for t in texts)):
        return _columns_of_lines(texts, layout)
    return None


def _columns_of_records(texts, layout):
    if not all(t[-1:] == "}" for t in texts):
        return None
    try:
        records = _JSON.decode("[" + ",\n".join(texts) + "]")
    except (ValueError, RecursionError):
        return None
    if len(records) != len(texts) or set(map(type, records)) != {dict} or set(map(len, records)) != {layout.keys}:
        return None
    try:  # a missing field (KeyError) is read_rows' to name; with every field there and no more keys, none is unknown
        numbers = [_values(records, entry) for entry in layout.numbers]
        strings = [_values(records, entry) for entry in layout.strings]
    except KeyError:
        return None
    numbers = _flat(numbers)
    if not set(map(type, numbers)) <= _NUMBER_TYPES:  # bool, None, str, list, dict: read_rows says which
        return None
    return _arrays(len(texts), numbers, _flat(strings), layout)


def _values(records, entry):
    _, _, width, getter, _ = entry
    values = list(map(getter, records))
    return values if width == 1 else [v for row in values for v in row]


def _flat(lists):
    return lists[0] if len(lists) == 1 else [v for values in lists for v in values]


def _columns_of_lines(texts, layout):
    if any('"' in t or "\n" in t or "\r" in t or not t for t in texts):
        return None  # quoting and line breaks are csv.reader's job, row by row
    split = [t.split(",") for t in texts]
    if set(map(len, split)) != {len(layout.order)}:
        return None
    strings = _flat([_cells(split, entry) for entry in layout.strings]) if layout.strings else []
    if not all(strings):
        return None  # an empty value is a missing field
    try:
        numbers = list(map(float, _flat([_cells(split, entry) for entry in layout.numbers]))) if layout.numbers else []
    except ValueError:
        return None
    return _arrays(len(texts), numbers, strings, layout)


def _cells(split, entry):
    _, first, width, _, _ = entry
    return [row[first] for row in split] if width == 1 else [v for row in split for v in row[first:first + width]]


def _arrays(count, numbers, strings, layout):
    """Each output's array: a view of its part of the batch's numbers (float64, cast) or strings (encoded)."""
    arrays = dict.fromkeys(layout.names)  # the spec's order
    if layout.numbers:
        wide = _finite(numbers, layout.nan_allowed)
        if wide is None:
            return None
        _parts(arrays, wide if layout.dtype is None else wide.astype(layout.dtype), count, layout.numbers, layout.number_width)
    if layout.strings:
        try:
            encoded = [v.encode("utf-8") for v in strings]
        except (AttributeError, UnicodeEncodeError):  # not a string (read_rows names it), or a lone surrogate
            return None
        _parts(arrays, np.array(encoded, dtype=np.object_), count, layout.strings, layout.string_width)
    return arrays


def _parts(arrays, block, count, group, width):
    if width is not None:  # (outputs, rows, width): each output one step along the first axis
        block = block.reshape(-1, count, width)
        for index, entry in enumerate(group):
            arrays[entry[0]] = block[index]
        return
    offset = 0
    for name, _, width, _, dtype in group:
        part = block[offset:offset + width * count].reshape(count, width)
        arrays[name] = part if part.dtype == dtype else part.astype(dtype)
        offset += width * count


def _finite(numbers, allow_missing):
    """The numbers as float64, or None for an infinity, or a NaN where the model takes none."""
    try:
        total = sum(numbers)  # finite only when every number is (an overflow of the sum is checked below)
        wide = np.array(numbers, dtype=np.float64)
    except OverflowError:  # an integer beyond float64
        return None
    if total - total == 0:
        return wide
    finite = np.isfinite(wide)
    if not finite.all() and (np.isinf(wide).any() or not allow_missing):
        return None
    return wide


class TritonPythonModel:
    def initialize(self, args):
        global pb_utils
        import triton_python_backend_utils as pb_utils

        config = json.loads(args["model_config"])
        self.spec = json.loads(config["parameters"][STEP_PARAMETER]["string_value"])
        self.layout = Layout(self.spec)

    def execute(self, requests):
        # Triton hands several requests at once: read every row of every request in one pass, and
        # only if that finds something wrong, request by request (a bad row fails its request alone).
        # The step has one input, RAW, so a request's inputs() is [RAW]: no lookup by name.
        raws = [r.inputs()[0].as_numpy().ravel().tolist() for r in requests]
        if len(raws) == 1:
            return [self._answer(raws[0])]
        counts = list(map(len, raws))
        try:
            arrays = read_batch([row for raw in raws for row in raw], self.spec, self.layout) if all(counts) else None
        except Exception:  # left to each request alone, where it fails that request with one line
            arrays = None
        if arrays is None:
            return self._request_by_request(raws)
        return self._split(arrays, counts)

    def _split(self, arrays, counts):
        responses, offset = [], 0
        for count in counts:
            end = offset + count
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, v[offset:end]) for n, v in arrays.items()]))
            offset = end
        return responses

    def _request_by_request(self, raws):
        """Each request's rows read row by row: a bad row fails its own request, the others are answered."""
        columns = {name: [] for name in self.layout.names}
        counts, errors = [], []
        for raw in raws:
            try:
                if not raw:
                    raise RowError("empty request: send at least one row")
                rows = read_rows(raw, self.spec)
            except RowError as exc:
                counts.append(0)
                errors.append(_error(str(exc), pb_utils.TritonError.INVALID_ARG))
                continue
            except Exception as exc:  # a fault of this step, not of the row: one line, no traceback
                counts.append(0)
                errors.append(_error(f"tabular step failed: {type(exc).__name__}", pb_utils.TritonError.INTERNAL))
                continue
            for name, values in rows.items():
                columns[name].extend(values)
            counts.append(len(raw))
            errors.append(None)
        try:
            arrays = to_arrays(columns, self.spec) if any(counts) else {}
        except Exception:  # a value the model's dtype cannot take (NaN as an integer): each request alone says whose
            return [self._answer(raw) for raw in raws]
        answered = iter(self._split(arrays, [count for count in counts if count]))
        return [next(answered) if error is None else error for error in errors]

    def _answer(self, rows):
        """One request's rows alone: its tensors, or its error (the first bad row, by row and field)."""
        try:
            if not rows:
                raise RowError("empty request: send at least one row")
            arrays = read_batch(rows, self.spec, self.layout)
            if arrays is None:
                arrays = to_arrays(read_rows(rows, self.spec), self.spec)
        except RowError as exc:
            return _error(str(exc), pb_utils.TritonError.INVALID_ARG)
        except Exception as exc:  # a fault of this step, not of the row: one line, no traceback
            return _error(f"tabular step failed: {type(exc).__name__}", pb_utils.TritonError.INTERNAL)
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, v) for n, v in arrays.items()])


def _error(message, code):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))
