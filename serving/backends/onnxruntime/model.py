"""Triton Python-based backend for platform ``onnxruntime_onnx`` (CPU, ONNX Runtime).

Serves ``<model>/<version>/model.onnx`` (or ``default_model_filename``) with the config checks
of Triton's C++ ONNX Runtime backend, the custom-op libraries its ``model_operations`` names
(found by :mod:`tritonforge.repository.op_libraries`), its thread parameters ``intra_op_thread_count`` and
``inter_op_thread_count`` and ``optimization.graph.level``; GPU-only settings (TensorRT, KIND_GPU)
are named once in Triton's log and ignored.
"""
import numpy as np

from tritonforge.repository import STRING, op_libraries
from tritonforge.serving.backends.common import (BadRequest, BatchedModel, ConfigRefused, ModelArgs, TensorSpec, artifact_tensor,
                                                  check_config, refuse)

# ONNX Runtime type strings -> numpy dtypes (Triton's names come from tritonforge.repository.dtypes).
_ORT_TYPES = {
    "tensor(bool)": "bool", "tensor(uint8)": "uint8", "tensor(uint16)": "uint16", "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64", "tensor(int8)": "int8", "tensor(int16)": "int16", "tensor(int32)": "int32",
    "tensor(int64)": "int64", "tensor(float16)": "float16", "tensor(float)": "float32",
    "tensor(double)": "float64", "tensor(string)": "object",
}


def _spec(node) -> TensorSpec:
    shape = node.shape
    dims = None if shape is None else tuple(d if isinstance(d, int) and d >= 0 else -1 for d in shape)
    return artifact_tensor(node.name, _ORT_TYPES.get(node.type, node.type), dims)


def _graph_levels():
    import onnxruntime as ort

    level = ort.GraphOptimizationLevel
    return {-1: level.ORT_ENABLE_BASIC, 1: level.ORT_ENABLE_EXTENDED, 2: level.ORT_DISABLE_ALL}


SPINNING_PARAMETER = "tritonforge_allow_spinning"


def allow_spinning(margs: ModelArgs) -> str:
    """ONNX Runtime's ``session.intra_op.allow_spinning`` for this model: "1" or "0".

    ORT's pool threads spin after each run by default. Triton's C++ backend can afford that; here
    the stub and tritonserver are two processes on the same cores. With dynamic batching the spin
    takes the CPU that tritonserver needs to answer and gather the next batch (on 2 cores: server
    CPU per request -20% on the 512-2048-2048-10 MLP, -25% on the 32-64-8 MLP, throughput
    unchanged), so it is off. Without it the model runs one request at a time and the next one
    waits on the pool threads waking up: spinning gave +16% requests/s on the large MLP
    (benchmarks/speed.py). ``parameters { key: "tritonforge_allow_spinning" }`` overrides either.
    """
    value = margs.parameter(SPINNING_PARAMETER)
    if value is not None:
        if value not in ("0", "1"):
            raise ConfigRefused(f"model '{margs.name}': parameter {SPINNING_PARAMETER} must be 0 or 1, got '{value}'")
        return value
    batched = "dynamic_batching" in margs.config or "sequence_batching" in margs.config
    return "0" if batched else "1"


def gpu_only_settings(config: dict) -> str:
    """The settings of a config that only a GPU uses, named for the one log line that says they are ignored."""
    accelerators = ((config.get("optimization") or {}).get("execution_accelerators") or {})
    names = [a.get("name", "?") for a in accelerators.get("gpu_execution_accelerator") or []]
    names += [f"cpu accelerator {a.get('name', '?')}" for a in accelerators.get("cpu_execution_accelerator") or []]
    if any(g.get("kind") == "KIND_GPU" for g in config.get("instance_group") or []):
        names.append("KIND_GPU")
    return ", ".join(names)


def register_op_libraries(margs: ModelArgs, options) -> None:
    """Register each library of ``model_operations { op_library_filename }``, as Triton's C++
    backend does before it creates the session; one it cannot find refuses the load in one line."""
    for filename in op_libraries.filenames_of(margs.config):
        try:
            path = op_libraries.resolve(filename)
            options.register_custom_ops_library(str(path))
        except Exception as exc:  # OpLibraryError, or ONNX Runtime's own refusal of the file
            cause = " ".join(str(exc).split())[:300]
            # Worded as Triton's C++ backend words it (onnx runtime error 1: Failed to load library ...).
            raise ConfigRefused(f"model '{margs.name}': Failed to load library {filename} of model_operations "
                                f"with error: {cause}") from None


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime as ort

        try:
            margs = ModelArgs.parse(args)
            options = ort.SessionOptions()
            intra = margs.parameter("intra_op_thread_count")
            inter = margs.parameter("inter_op_thread_count")
            if intra is not None:
                options.intra_op_num_threads = int(intra)
            if inter is not None:
                options.inter_op_num_threads = int(inter)
            options.add_session_config_entry("session.intra_op.allow_spinning", allow_spinning(margs))
            # optimization.graph.level as Triton's backend reads it: -1 basic, 1 extended, 2 none.
            level = ((margs.config.get("optimization") or {}).get("graph") or {}).get("level")
            if level is not None:
                options.graph_optimization_level = _graph_levels().get(int(level), ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
            register_op_libraries(margs, options)
            self.session = ort.InferenceSession(
                margs.artifact("model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
            )
            inputs = [_spec(n) for n in self.session.get_inputs()]
            outputs = [_spec(n) for n in self.session.get_outputs()]
            check_config(margs, inputs, outputs)
        except Exception as exc:
            raise refuse(exc) from None
        ignored = gpu_only_settings(margs.config)
        if ignored:  # once per model instance, in Triton's log
            import triton_python_backend_utils as pb_utils

            logger = getattr(pb_utils, "Logger", None)
            if logger is not None:
                logger.log_warn(f"model '{margs.name}': serve-repo runs ONNX Runtime on the CPU and ignores {ignored}")
        self.string_inputs = {t.name for t in inputs if t.dtype == STRING}
        self.output_names = [io["name"] for io in margs.outputs()]
        self.model = StringsModel(margs, self._run, self.string_inputs) if self.string_inputs else BatchedModel(margs, self._run)

    def _run(self, arrays):
        return dict(zip(self.output_names, self.session.run(self.output_names, arrays)))

    def execute(self, requests):
        return self.model.execute(requests)


class StringsModel(BatchedModel):
    """ONNX Runtime takes str, Triton sends bytes: each request's string inputs are decoded as it
    is read, so a request that is not UTF-8 is a 400 of its own, not a failure of the requests
    batched with it."""

    def __init__(self, args, run, string_inputs):
        super().__init__(args, run)
        self.string_inputs = frozenset(string_inputs)

    def _read(self, request):
        arrays = super()._read(request)
        for name in self.string_inputs.intersection(arrays):
            arrays[name] = decoded(name, arrays[name])
        return arrays


def decoded(name: str, value: np.ndarray) -> np.ndarray:
    try:
        return np.char.decode(value.astype(np.bytes_), "utf-8")
    except UnicodeDecodeError:
        pass
    rows = value.reshape(value.shape[0], -1) if value.ndim else value.reshape(1, 1)
    for row, items in enumerate(rows):
        for item in items:
            data = item if isinstance(item, bytes) else bytes(item)
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadRequest(f"input '{name}' row {row} is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset "
                                 f"{exc.start})") from None
    raise BadRequest(f"input '{name}' is not valid UTF-8")
