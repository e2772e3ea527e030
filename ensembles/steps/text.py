"""Text preprocessing: one UTF-8 string per row -> the model's token arrays, with the model's own tokenizer.

The tokenizer is the model folder's ``tokenizer.json``, copied beside this file and read by the
``tokenizers`` library (what transformers' fast tokenizers run). Each text is cut to the model's
length; each request's rows are padded to its own longest row, so an answer never depends on
which other requests Triton batched with it.

Refused with a 400 naming the row: a text that is not valid UTF-8, one longer than
``max_text_bytes`` (the model reads only its first ``max_length`` tokens: cut such texts before
sending), an empty request.

Config parameter ``tritonforge_step`` (JSON)::

    {"tokenizer": "tokenizer.json", "max_length": 512, "max_text_bytes": 131072,
     "outputs": [{"name": "input_ids", "field": "ids"}, {"name": "attention_mask", "field": "attention_mask"}],
     "pad_id": 0, "pad_type_id": 0, "padding_side": "right", "truncation_side": "right"}
"""
import json
import os

import numpy as np

STEP_PARAMETER = "tritonforge_step"
RAW_INPUT = "RAW"
FIELDS = ("ids", "type_ids", "attention_mask")  # what a tokenizers Encoding offers, by the name the settings use


class RowError(ValueError):
    """A text that cannot be tokenized; the message names the row."""


def load_tokenizer(folder, spec):
    """The folder's tokenizer, cut at the model's length; padding is done here, per request."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(os.path.join(folder, spec["tokenizer"]))
    tokenizer.enable_truncation(spec["max_length"], direction=spec["truncation_side"])
    tokenizer.no_padding()
    return tokenizer


def decode(index, data, limit):
    if not isinstance(data, bytes):
        raise RowError(f"row {index}: expected a UTF-8 string, got {type(data).__name__}")
    if len(data) > limit:
        raise RowError(f"row {index}: text of {len(data)} bytes is longer than the step's limit of {limit} bytes "
                       "(the model reads only its first tokens: cut the text before sending it)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RowError(f"row {index}: text is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


def texts(raw_rows, spec):
    """The rows of one request as str, or a RowError for the first bad one."""
    if not raw_rows:
        raise RowError("empty request: send at least one text")
    limit = spec["max_text_bytes"]
    return [decode(i, data, limit) for i, data in enumerate(raw_rows)]


def pad(encodings, spec):
    """Token arrays of one request, padded to its longest row."""
    rows, longest = len(encodings), max(len(e.ids) for e in encodings)
    left = spec["padding_side"] == "left"
    arrays = {}
    for output in spec["outputs"]:
        field = output["field"]
        fill = spec["pad_id"] if field == "ids" else (spec["pad_type_id"] if field == "type_ids" else 0)
        array = np.full((rows, longest), fill, dtype=np.int64)
        for i, encoding in enumerate(encodings):
            values = getattr(encoding, field)
            if left:
                array[i, longest - len(values):] = values
            else:
                array[i, :len(values)] = values
        arrays[output["name"]] = array
    return arrays


def texts_to_inputs(tokenizer, raw_rows, spec):
    """One batch of encoded texts -> the model's padded token arrays."""
    return pad(tokenizer.encode_batch(texts(raw_rows, spec)), spec)


class TritonPythonModel:
    def initialize(self, args):
        global pb_utils
        import triton_python_backend_utils as pb_utils

        config = json.loads(args["model_config"])
        self.spec = json.loads(config["parameters"][STEP_PARAMETER]["string_value"])
        self.tokenizer = load_tokenizer(os.path.join(args["model_repository"], args["model_version"]), self.spec)

    def execute(self, requests):
        batches, counts, errors = [], [], []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, RAW_INPUT).as_numpy().reshape(-1)
            try:
                decoded = texts(raw.tolist(), self.spec)
            except RowError as exc:
                counts.append(0)
                errors.append((str(exc), pb_utils.TritonError.INVALID_ARG))
                continue
            except Exception as exc:  # a fault of this step, not of the text: one line, no traceback
                counts.append(0)
                errors.append((f"text step failed: {type(exc).__name__}", pb_utils.TritonError.INTERNAL))
                continue
            batches.extend(decoded)
            counts.append(len(decoded))
            errors.append(None)
        # Every text of every request tokenized in one call (the tokenizers library runs it in Rust).
        encodings = self.tokenizer.encode_batch(batches) if batches else []
        responses, offset = [], 0
        for count, error in zip(counts, errors):
            if error is not None:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(*error)))
                continue
            arrays = pad(encodings[offset:offset + count], self.spec)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, v) for n, v in arrays.items()]))
            offset += count
        return responses
