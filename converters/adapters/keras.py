"""TensorFlow/Keras: ``.keras`` archives, HDF5 ``.h5`` files and SavedModel folders."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from tritonforge.errors import BuildError
from tritonforge.repository import Signature, tensor_name
from tritonforge.sidecar import Sidecar

from ..native import import_tensorflow
from ..probe import FileProbe, one_line
from .base import AdapterBase, by_position

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


class KerasAdapter(AdapterBase):
    framework = "tensorflow"  # Keras files and TensorFlow SavedModels alike
    formats = ("onnx", "savedmodel")
    neural = True

    def detect(self, probe: FileProbe) -> bool:
        if probe.path.is_dir():
            return (probe.path / "saved_model.pb").is_file()
        if probe.head.startswith(HDF5_MAGIC):
            return True
        return probe.has_member("config.json") and probe.has_member("model.weights.h5")

    def load(self, probe: FileProbe, sidecar: Sidecar) -> Any:
        tf, keras = import_tensorflow()

        try:
            if probe.path.is_dir():
                loaded = tf.saved_model.load(str(probe.path))
                if "serving_default" not in loaded.signatures:
                    raise BuildError(f"{probe.path.name}: SavedModel has no 'serving_default' signature")
                return SavedModelSource(probe.path, loaded)
            model = keras.saving.load_model(probe.path, compile=False)
        except BuildError:
            raise
        except Exception as exc:
            raise BuildError(f"{probe.path.name}: Keras cannot load it ({one_line(exc)})") from None
        # A loaded model that was never called cannot be exported ("The model provided has never called").
        model([np.zeros((1,) + tuple(d or 1 for d in i.shape[1:]), i.dtype) for i in model.inputs] if len(model.inputs) > 1
              else np.zeros((1,) + tuple(d or 1 for d in model.inputs[0].shape[1:]), model.inputs[0].dtype))
        return model

    def convert(self, model: Any, sidecar: Sidecar, fmt: str, dest: Path) -> Signature | None:
        if isinstance(model, SavedModelSource):
            return model.convert(sidecar, fmt, dest)
        if fmt == "onnx":
            # tf2onnx's from_keras breaks on Keras 3 Sequential models; Keras' own export works.
            model.export(str(dest), format="onnx", verbose=False, opset_version=sidecar.opset)
            import onnx

            from ..formats.onnx import rename_tensors, save_single_file

            proto = onnx.load(str(dest))
            if len(proto.graph.input) > len(model.inputs):
                proto = _through_savedmodel(model, sidecar, dest)
            # Keras' exporter names outputs Identity:0, Identity_1:0...: give them the user's names.
            rename_tensors(proto, keras_input_names(model), keras_output_names(model))
            save_single_file(proto, dest)
        else:
            model.export(str(dest), format="tf_saved_model", verbose=False)
        return None

    def reference(self, model: Any, inputs: dict[str, np.ndarray], signature: Signature) -> dict[str, np.ndarray]:
        if isinstance(model, SavedModelSource):
            return model.reference(inputs, signature)
        by_name = {spec.name: inputs[spec.name] for spec in signature.inputs}
        names = [i.name for i in model.inputs]
        ordered = [by_name[n] for n in names] if set(names) == set(by_name) else list(by_name.values())
        result = model(ordered if len(ordered) > 1 else ordered[0], training=False)
        if isinstance(result, dict):  # exporters name dict outputs by their keys, in sorted order
            named = {k: np.asarray(v) for k, v in result.items()}
            if set(named) == {s.name for s in signature.outputs}:
                return named
            return by_position(signature, [named[k] for k in sorted(named)])
        outputs = [np.asarray(r) for r in (result if isinstance(result, (list, tuple)) else [result])]
        return by_position(signature, outputs)


def _through_savedmodel(model: Any, sidecar: Sidecar, dest: Path):
    """Keras' ONNX exporter (tf2onnx from a tf.function) turns tensors a layer computed when it was
    adapted (Normalization's mean and variance, captured as eager tensors) into graph inputs
    ('norm_1/Sub/y:0') that no client sends. The serving signature of a SavedModel, frozen into
    constants, has only the model's own inputs: convert that graph instead."""
    import tempfile

    import tensorflow as tf
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    with tempfile.TemporaryDirectory() as scratch:
        model.export(scratch, format="tf_saved_model", verbose=False)
        loaded = tf.saved_model.load(scratch)
        frozen = convert_variables_to_constants_v2(loaded.signatures["serving_default"])
        proto, _ = tf2onnx.convert.from_graph_def(frozen.graph.as_graph_def(), input_names=[t.name for t in frozen.inputs],
                                                  output_names=[t.name for t in frozen.outputs], opset=sidecar.opset)
    return proto


def _invented(name: str, operation) -> bool:
    """Keras names what the user left unnamed after the class (dense, dense_1, keras_tensor_3)."""
    import re

    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", type(operation).__name__).lower() if operation is not None else ""
    return bool(re.fullmatch(rf"(keras_tensor|input_layer|{re.escape(snake)})(_\d+)?", name))


def _names(tensors, role: str) -> list[str]:
    named = []
    for index, tensor in enumerate(tensors):
        history = getattr(tensor, "_keras_history", None)
        operation = history.operation if history is not None else None
        name = operation.name if role == "output" and operation is not None else tensor.name
        if _invented(name, operation):
            name = role if len(tensors) == 1 else f"{role}_{index}"
        named.append(tensor_name(name))
    return named if len(set(named)) == len(named) else [f"{role}_{i}" for i in range(len(named))]


def keras_input_names(model) -> list[str]:
    """The names users gave their Inputs; 'input' / 'input_<i>' where Keras invented one."""
    return _names(list(model.inputs), "input")


def keras_output_names(model) -> list[str] | None:
    """The names of the layers that make each output (dict outputs keep their keys, which the
    exporter already uses); 'output' / 'output_<i>' where Keras invented the layer's name."""
    if isinstance(getattr(model, "_outputs_struct", None), dict):
        return None
    outputs = model.outputs if isinstance(model.outputs, (list, tuple)) else [model.outputs]
    return _names(list(outputs), "output")


class SavedModelSource:
    """A SavedModel folder: its serving signature is both the source and the interface."""

    def __init__(self, path: Path, loaded: Any) -> None:
        self.path = path
        self.loaded = loaded
        self.function = loaded.signatures["serving_default"]

    def convert(self, sidecar: Sidecar, fmt: str, dest: Path) -> None:
        if fmt == "savedmodel":
            shutil.copytree(self.path, dest)
            return None
        import tensorflow as tf
        import tf2onnx

        keys = list(self.function.structured_input_signature[1])
        specs = [tf.TensorSpec(s.shape, s.dtype, name=k) for k, s in self.function.structured_input_signature[1].items()]
        signature_function = self.function

        # tf2onnx takes a tf.function with positional inputs; the serving signature takes keywords.
        @tf.function(input_signature=specs)
        def serve(*args):
            return signature_function(**dict(zip(keys, args)))

        model_proto, _ = tf2onnx.convert.from_function(serve, input_signature=specs, opset=sidecar.opset)
        from ..formats.onnx import save_single_file

        save_single_file(model_proto, dest)
        return None

    def reference(self, inputs: dict[str, np.ndarray], signature: Signature) -> dict[str, np.ndarray]:
        import tensorflow as tf

        keys = list(self.function.structured_input_signature[1])
        if set(keys) == set(inputs):
            result = self.function(**{k: tf.constant(inputs[k]) for k in keys})
        else:  # tf2onnx may append ':0' to names
            result = self.function(**{k: tf.constant(inputs[s.name]) for k, s in zip(keys, signature.inputs)})
        by_key = {k: v.numpy() for k, v in result.items()}
        if set(by_key) == {s.name for s in signature.outputs}:
            return by_key
        return by_position(signature, [by_key[k] for k in self.function.structured_outputs])

