"""ONNX files, served by Triton's ``onnxruntime_onnx`` platform."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tritonforge.errors import BuildError
from .base import FormatDefaults
from tritonforge.repository import DYNAMIC, Signature, TensorSpec

# ONNX Runtime in the NGC 24.10 image (1.19) reads IR version 10 at most.
MAX_IR_VERSION = 10


def numpy_dtype(elem_type: int) -> np.dtype:
    import onnx

    if elem_type == onnx.TensorProto.STRING:
        return np.dtype(object)
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))


def _spec(value) -> TensorSpec:
    tensor = value.type.tensor_type
    if not value.type.HasField("tensor_type"):
        raise BuildError(f"tensor '{value.name}' is not a plain tensor (sequence or map), which Triton cannot serve")
    shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else DYNAMIC for d in tensor.shape.dim)
    return TensorSpec(value.name, numpy_dtype(tensor.elem_type), shape)


def signature_of(model) -> Signature:
    initializers = {init.name for init in model.graph.initializer}
    inputs = tuple(_spec(v) for v in model.graph.input if v.name not in initializers)
    return Signature(inputs, tuple(_spec(v) for v in model.graph.output))


def rename_tensors(model, inputs: list[str] | None = None, outputs: list[str] | None = None) -> None:
    """Give the graph's inputs and outputs these names, in order, everywhere the graph uses them."""
    initializers = {init.name for init in model.graph.initializer}
    graph_inputs = [v for v in model.graph.input if v.name not in initializers]
    mapping = {}
    for values, names in ((graph_inputs, inputs), (list(model.graph.output), outputs)):
        if names is not None:
            mapping.update({v.name: n for v, n in zip(values, names) if v.name != n})
    if not mapping:
        return
    clash = set(mapping.values()) & ({n for node in model.graph.node for n in node.output} - set(mapping))
    if clash:
        raise BuildError(f"cannot name a tensor '{sorted(clash)[0]}': the graph already has a tensor of that name")
    for value in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        value.name = mapping.get(value.name, value.name)
    for node in model.graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]


def save_single_file(model, path: Path) -> None:
    """Save with weights inside the file: Triton copies the version folder, not side files."""
    import onnx

    if model.ir_version > MAX_IR_VERSION:
        model.ir_version = MAX_IR_VERSION
    onnx.save_model(model, str(path), save_as_external_data=False)
    onnx.checker.check_model(str(path))


def as_onnx_strings(value: np.ndarray) -> np.ndarray:
    """ONNX Runtime reads str objects; bytes (Triton's BYTES) would be compared as "b'...'" and miss every category."""
    if value.dtype == object and value.size and isinstance(value.flat[0], bytes):
        return np.vectorize(lambda v: v.decode("utf-8") if isinstance(v, bytes) else v, otypes=[object])(value)
    return value


class OnnxFormat(FormatDefaults):
    name = "onnx"
    platform = "onnxruntime_onnx"
    filename = "model.onnx"

    def read_signature(self, path: Path, declared: Signature | None) -> Signature:
        import onnx

        return signature_of(onnx.load(str(path), load_external_data=False))

    def runner(self, path: Path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]

        def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return dict(zip(names, session.run(names, {k: as_onnx_strings(v) for k, v in inputs.items()})))

        return run

