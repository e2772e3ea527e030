"""What the three CPU backends share: config reading, load-time checks, batched execution.

Each backend's ``model.py`` is loaded by the Triton Python stub by file path; it imports this
module through the installed ``tritonforge.serving`` package (the stub runs the venv's ``python3``).

A backend describes its artifact as a list of :class:`TensorSpec` (made by :func:`artifact_tensor`:
name, numpy dtype, full shape with the batch dimension and -1 for a free one) and a ``run(dict) -> dict`` function;
:func:`check_config` refuses a config that does not fit, with the wording of Triton's ONNX
Runtime backend, and :class:`BatchedModel` turns the requests Triton hands ``execute()``
into one framework call per group of compatible requests.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from tritonforge.repository import TensorSpec, numpy_dtype
from tritonforge.repository.dtypes import UnknownDtype, config_types
from tritonforge.repository.layout import REFUSE_NAN_PARAMETER


class ConfigRefused(Exception):
    """The model's config does not fit its artifact; the message is what the user sees."""


def artifact_tensor(name: str, dtype, shape) -> TensorSpec:
    """One input or output as the artifact declares it: ``dtype`` a numpy dtype or, for a type
    Triton has none for, the framework's own name (kept to word the refusal); ``shape`` full,
    batch included, -1 for a free dimension, None for an unknown rank.

    >>> artifact_tensor("input", np.float32, (-1, 4))   # any batch, 4 features
    """
    try:
        return TensorSpec(name, numpy_dtype(dtype), shape)
    except UnknownDtype:
        return TensorSpec(name, dtype, shape)


def type_of(spec: TensorSpec) -> str:
    """The config type of an artifact tensor, or the framework's name for one Triton has none for."""
    try:
        return spec.config_type
    except (UnknownDtype, TypeError):
        return str(spec.dtype)


def shape_str(shape) -> str:
    return "[" + ",".join(str(int(d)) for d in shape) + "]"


@dataclass
class ModelArgs:
    """What ``initialize(args)`` gives a backend, parsed once."""

    name: str
    version: str
    model_dir: str
    config: dict

    @classmethod
    def parse(cls, args: dict) -> "ModelArgs":
        return cls(
            name=args["model_name"],
            version=args["model_version"],
            model_dir=args["model_repository"],
            config=json.loads(args["model_config"]),
        )

    @property
    def max_batch_size(self) -> int:
        return int(self.config.get("max_batch_size", 0))

    def artifact(self, default_name: str) -> str:
        name = self.config.get("default_model_filename") or default_name
        path = os.path.join(self.model_dir, str(self.version), name)
        if not os.path.exists(path):
            raise ConfigRefused(
                f"unable to load model '{self.name}', unable to find '{path}' for model instance"
            )
        return path

    def parameter(self, key: str, default: str | None = None) -> str | None:
        params = self.config.get("parameters") or {}
        value = params.get(key)
        if value is None:
            return default
        return value.get("string_value", default)

    def inputs(self) -> list[dict]:
        return list(self.config.get("input", []))

    def outputs(self) -> list[dict]:
        return list(self.config.get("output", []))


def _config_dims(io: dict) -> list[int]:
    # What the model sees: the reshape when there is one (an empty reshape is a scalar).
    reshape = io.get("reshape")
    if reshape is not None:
        return [int(d) for d in reshape.get("shape", [])]
    return [int(d) for d in io.get("dims", [])]


def _wire_dims(io: dict) -> list[int]:
    return [int(d) for d in io.get("dims", [])]


def _compare_dims(model: str, tensor: str, model_shape, dims, max_batch_size: int, exact: bool):
    """The rule of Triton's backend_common CompareDimsSupported, with its messages."""
    model_shape = [int(d) for d in model_shape]
    if max_batch_size > 0:
        if not model_shape or model_shape[0] != -1:
            raise ConfigRefused(
                f"model '{model}', tensor '{tensor}': for the model to support batching the "
                "shape should have at least 1 dimension and the first dimension must be -1; "
                f"but shape expected by the model is {shape_str(model_shape)}"
            )
        full = [-1] + list(dims)
        ok = len(model_shape) == len(full) and all(
            m == f for i, (m, f) in enumerate(zip(model_shape, full))
            if exact or (i != 0 and m != -1 and f != -1)
        )
        if not ok:
            raise ConfigRefused(
                f"model '{model}', tensor '{tensor}': the model expects {len(model_shape)} "
                f"dimensions (shape {shape_str(model_shape)}) but the model configuration "
                f"specifies {len(full)} dimensions (an initial batch dimension because "
                "max_batch_size > 0 followed by the explicit tensor shape, making complete "
                f"shape {shape_str(full)})"
            )
    else:
        ok = len(model_shape) == len(dims) and all(
            m == f for m, f in zip(model_shape, dims) if exact or (m != -1 and f != -1)
        )
        if not ok:
            raise ConfigRefused(
                f"model '{model}', tensor '{tensor}': the model expects {len(model_shape)} "
                f"dimensions (shape {shape_str(model_shape)}) but the model configuration "
                f"specifies {len(dims)} dimensions (shape {shape_str(dims)})"
            )


def check_config(
    args: ModelArgs,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    *,
    exact_output_dims: bool = True,
) -> None:
    """Refuse a config that does not fit the artifact, as Triton's ONNX Runtime backend does.

    Order and wording follow onnxruntime_backend's ValidateInputs/ValidateOutputs: input
    count, then per input name, dtype, dims; then per output name, dtype, dims.
    """
    model = args.name
    mbs = args.max_batch_size
    cfg_inputs = args.inputs()
    expected = sum(1 for io in cfg_inputs if not io.get("optional", False))
    if len(inputs) != expected:
        raise ConfigRefused(
            f"unable to load model '{model}', configuration expects {expected} inputs, "
            f"model provides {len(inputs)}"
        )
    for io in cfg_inputs:
        if io.get("optional", False) and mbs != 0:
            raise ConfigRefused(
                f"unable to load model '{model}', optional input '{io['name']}' is not supported "
                "for models that support batching"
            )
        _check_tensor(model, "input", io, inputs, mbs, exact=False)
    for io in args.outputs():
        _check_tensor(model, "output", io, outputs, mbs, exact=exact_output_dims)


def _check_tensor(model: str, kind: str, io: dict, specs: list[TensorSpec], mbs: int, *, exact: bool) -> None:
    """One config tensor against the artifact's: name, dtype, dims, in the real backend's words."""
    by_name = {t.name: t for t in specs}
    name, dtype = io["name"], io.get("data_type", "TYPE_INVALID")
    spec = by_name.get(name)
    if spec is None:
        raise ConfigRefused(f"unexpected inference {kind} '{name}', allowed {kind}s are: {', '.join(sorted(by_name))}")
    if dtype not in config_types():
        raise ConfigRefused(f"unsupported datatype {dtype} for {kind} '{name}' for model '{model}'")
    if dtype != type_of(spec):
        raise ConfigRefused(
            f"unable to load model '{model}', configuration expects datatype {dtype} for "
            f"{kind} '{name}', model provides {type_of(spec)}"
        )
    if spec.shape is not None and len(spec.shape) > 0:
        _compare_dims(model, name, spec.shape, _config_dims(io), mbs, exact=exact)


def to_bytes_objects(array: np.ndarray) -> np.ndarray:
    """A string tensor as Triton sends it: np.object_ of bytes."""
    flat = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in array.reshape(-1)]
    out = np.empty(len(flat), dtype=np.object_)
    out[:] = flat
    return out.reshape(array.shape)


class BadRequest(ValueError):
    """A request the model cannot answer as sent: INVALID_ARG (HTTP 400), not an internal error."""


class BatchedModel:
    """Serve Triton's requests with one framework call per batch of compatible requests.

    ``run`` takes ``{input name: numpy array}`` (strings as np.object_ of bytes, batch first
    when max_batch_size > 0) and returns ``{output name: numpy array}``.

    Per request this does what any Python model must (read each input, make one Tensor per
    output and one response) and nothing more: dtype conversion, reshape and string encoding
    run once on the batch's answer, each request gets a view of its rows, and a lone request
    (batching off, or a quiet queue) is neither concatenated nor split.
    """

    def __init__(self, args: ModelArgs, run):
        import triton_python_backend_utils as pb_utils

        self._pb = pb_utils
        self._tensor = pb_utils.Tensor
        self._response_type = pb_utils.InferenceResponse
        self.args = args
        self.run = run
        self.input_names = [io["name"] for io in args.inputs()]
        self.output_types = {io["name"]: io["data_type"] for io in args.outputs()}
        # Triton's reshape: the client sees ``dims``, the model ``reshape.shape``.
        self.input_reshape = {io["name"]: _config_dims(io) for io in args.inputs() if "reshape" in io}
        self.output_reshape = {io["name"]: _wire_dims(io) for io in args.outputs() if "reshape" in io}
        self.batching = args.max_batch_size > 0
        # (name, numpy dtype or None for strings, wire dims or None), in the config's order.
        self._outputs = [(name, None if dtype == "TYPE_STRING" else numpy_dtype(dtype), self.output_reshape.get(name))
                         for name, dtype in self.output_types.items()]
        self.refuse_nan = frozenset(n for n in (args.parameter(REFUSE_NAN_PARAMETER) or "").split(",") if n)

    def _read(self, request) -> dict[str, np.ndarray]:
        arrays = {}
        tensors = {t.name(): t for t in request.inputs()}
        for name in self.input_names:
            tensor = tensors.get(name)
            if tensor is not None:
                value = tensor.as_numpy()
                if name in self.input_reshape:
                    lead = list(value.shape[:1]) if self.batching else []
                    value = value.reshape(lead + self.input_reshape[name])
                if name in self.refuse_nan and value.dtype.kind == "f" and np.isnan(value).any():
                    row = int(np.argwhere(np.isnan(value))[0][0]) if self.batching else 0
                    raise BadRequest(f"input '{name}' has NaN in row {row}, which this model cannot take (it would answer NaN); "
                                     f"send a number there, or build the model with 'allow_nan: true' in its sidecar")
                arrays[name] = value
        return arrays

    def _wire(self, outputs: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
        """The answer as clients get it, in the config's order: types, reshape, bytes."""
        wire = []
        for name, dtype, dims in self._outputs:
            value = outputs[name]
            if dims is not None:
                lead = list(np.shape(value)[:1]) if self.batching else []
                value = np.reshape(value, lead + dims)
            if dtype is None:
                value = to_bytes_objects(np.asarray(value))
            else:
                value = np.ascontiguousarray(value, dtype=dtype)
            wire.append((name, value))
        return wire

    def _response(self, request, wire, start=None, stop=None):
        wanted = request.requested_output_names()
        tensor = self._tensor
        if start is None:
            tensors = [tensor(name, value) for name, value in wire if not wanted or name in wanted]
        else:
            tensors = [tensor(name, value[start:stop]) for name, value in wire if not wanted or name in wanted]
        return self._response_type(tensors)

    def _error(self, message: str, bad_request: bool = False):
        error = self._pb.TritonError
        text = f"model '{self.args.name}': {message}"
        return self._pb.InferenceResponse(
            output_tensors=[], error=error(text, error.INVALID_ARG) if bad_request else error(text))

    def _answer(self, members, requests, responses) -> None:
        """One framework call for ``members`` [(request index, arrays)], whose inputs agree beyond the batch dim."""
        try:
            if len(members) == 1:
                i, arrays = members[0]
                responses[i] = self._response(requests[i], self._wire(self.run(arrays)))
                return
            first = members[0][1]
            batch = {name: np.concatenate([arrays[name] for _, arrays in members]) for name in first}
            wire = self._wire(self.run(batch))
            start = 0
            for i, arrays in members:
                stop = start + len(next(iter(arrays.values())))
                responses[i] = self._response(requests[i], wire, start, stop)
                start = stop
        except Exception as exc:
            for i, _ in members:
                responses[i] = self._error(f"{type(exc).__name__}: {exc}")

    def execute(self, requests):
        responses = [None] * len(requests)
        read = []
        for i, request in enumerate(requests):
            try:
                read.append((i, self._read(request)))
            except Exception as exc:  # a malformed request fails alone
                responses[i] = self._error(str(exc), bad_request=isinstance(exc, BadRequest))
        if not self.batching:
            for member in read:
                self._answer([member], requests, responses)
            return responses
        if len(read) > 1 and not self._concatenable(read):
            # Requests can be concatenated when every input agrees beyond the batch dim.
            groups: dict[tuple, list] = {}
            for i, arrays in read:
                key = tuple((n, a.dtype.str, a.shape[1:]) for n, a in sorted(arrays.items()))
                groups.setdefault(key, []).append((i, arrays))
            for members in groups.values():
                self._answer(members, requests, responses)
            return responses
        if read:
            self._answer(read, requests, responses)
        return responses

    @staticmethod
    def _concatenable(read) -> bool:
        first = read[0][1]
        key = [(n, a.dtype, a.shape[1:]) for n, a in first.items()]
        for _, arrays in read[1:]:
            if len(arrays) != len(key):
                return False
            for n, dtype, rest in key:
                a = arrays.get(n)
                if a is None or a.dtype != dtype or a.shape[1:] != rest:
                    return False
        return True


def refuse(exc: Exception) -> Exception:
    """An exception for initialize() whose text is the refusal, nothing else."""
    return exc if isinstance(exc, ConfigRefused) else ConfigRefused(f"{type(exc).__name__}: {exc}")
