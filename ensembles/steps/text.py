"""Text preprocessing: one UTF-8 string per row -> the model's token arrays, with the model's own tokenizer.

The tokenizer is the model folder's ``tokenizer.json``, copied beside this file and read by the
``tokenizers`` library (what transformers' fast tokenizers run). Each text is cut to the model's
length; each request's rows are padded to its own longest row, so an answer never depends on
which other requests Triton batched with it (and the model's batcher joins requests of equal length).

Refused with a 400 naming the row: a text that is not valid UTF-8, one longer than
``max_text_bytes`` (the model reads only its first ``max_length`` tokens: cut such texts before
sending), an empty request.

Config parameter ``tritonforge_step`` (JSON)::

    {"tokenizer": "tokenizer.json", "max_length": 512, "max_text_bytes": 131072,
     "outputs": [{"name": "input_ids", "field": "ids"}, {"name": "attention_mask", "field": "attention_mask"}],
     "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]", "padding_side": "right", "truncation_side": "right",
     "cut_chars": 4096}                # 0: never cut a long text before tokenizing it (see shortened)
"""
import json
import os

import numpy as np

# One step instance runs one execute at a time beside the model on the same cores: the tokenizers
# library's thread pool costs more than it saves here (a one-text request: 116 us -> 39 us).
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

STEP_PARAMETER = "tritonforge_step"
RAW_INPUT = "RAW"


class RowError(ValueError):
    """A text that cannot be tokenized; the message names the row."""


def load_tokenizer(folder, spec):
    """The folder's tokenizer, cut at the model's length and padding each call's texts to its longest."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(os.path.join(folder, spec["tokenizer"]))
    tokenizer.enable_truncation(spec["max_length"], direction=spec["truncation_side"])
    tokenizer.enable_padding(direction=spec["padding_side"], pad_id=spec["pad_id"], pad_type_id=spec["pad_type_id"],
                             pad_token=spec["pad_token"])
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


def whitespace_before(text, end):
    """The start of the run of whitespace that the last word before ``end`` is followed by, or 0."""
    cut = max(text.rfind(" ", 0, end), text.rfind("\n", 0, end), text.rfind("\t", 0, end))
    while cut > 0 and text[cut - 1].isspace():
        cut -= 1
    return max(cut, 0)


def shortened(tokenizer, text, spec):
    """A text far longer than the model reads, cut before a whitespace where its own tokens already
    overflow the model's length; then the tokens kept are the whole text's, since the tokenizer
    splits words at whitespace before anything else (``cut_chars`` is 0 for one that does not).
    A 128 KB text costs a few KB of tokenizing, not all of it."""
    window = spec["cut_chars"]
    while window and len(text) > window:
        cut = whitespace_before(text, window)
        if cut == 0:
            return text
        if tokenizer.encode(text[:cut]).overflowing:  # truncated already: the rest cannot reach the model
            return text[:cut]
        window *= 4
    return text


def encode(tokenizer, rows, spec):
    """One request's texts -> the model's token arrays, padded to its longest text."""
    if spec["cut_chars"]:
        rows = [shortened(tokenizer, text, spec) if len(text) > spec["cut_chars"] else text for text in rows]
    encodings = [tokenizer.encode(rows[0])] if len(rows) == 1 else tokenizer.encode_batch(rows)
    return {o["name"]: np.array([getattr(e, o["field"]) for e in encodings], dtype=np.int64) for o in spec["outputs"]}


def texts_to_inputs(tokenizer, raw_rows, spec):
    """One request's encoded texts -> the model's padded token arrays."""
    return encode(tokenizer, texts(raw_rows, spec), spec)


class TritonPythonModel:
    def initialize(self, args):
        global pb_utils
        import triton_python_backend_utils as pb_utils

        config = json.loads(args["model_config"])
        self.spec = json.loads(config["parameters"][STEP_PARAMETER]["string_value"])
        self.tokenizer = load_tokenizer(os.path.join(args["model_repository"], args["model_version"]), self.spec)

    def execute(self, requests):
        responses = []
        for request in requests:  # each request padded to its own longest text
            raw = pb_utils.get_input_tensor_by_name(request, RAW_INPUT).as_numpy().reshape(-1)
            try:
                arrays = texts_to_inputs(self.tokenizer, raw.tolist(), self.spec)
            except RowError as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)))
                continue
            except Exception as exc:  # a fault of this step, not of the text: one line, no traceback
                message = f"text step failed: {type(exc).__name__}"
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INTERNAL)))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, v) for n, v in arrays.items()]))
        return responses
