"""TensorFlow SavedModels, served by Triton's ``tensorflow_savedmodel`` platform (its serving_default signature)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tritonforge.errors import BuildError
from .base import FormatDefaults
from tritonforge.repository import DYNAMIC, Signature, TensorSpec


def _spec(name: str, tensor_spec) -> TensorSpec:
    dtype = np.dtype(object) if tensor_spec.dtype.name == "string" else np.dtype(tensor_spec.dtype.as_numpy_dtype)
    shape = tuple(DYNAMIC if d is None else int(d) for d in tensor_spec.shape.as_list())
    return TensorSpec(name, dtype, shape)


def _serving_signature(path: Path):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    if "serving_default" not in loaded.signatures:
        raise BuildError(f"{path.name}: SavedModel has no 'serving_default' signature, which Triton serves")
    return loaded, loaded.signatures["serving_default"]


class SavedModelFormat(FormatDefaults):
    name = "savedmodel"
    platform = "tensorflow_savedmodel"
    filename = "model.savedmodel"

    def read_signature(self, path: Path, declared: Signature | None) -> Signature:
        _, function = _serving_signature(path)
        inputs = function.structured_input_signature[1]
        outputs = function.structured_outputs
        return Signature(
            tuple(_spec(k, v) for k, v in sorted(inputs.items())),
            tuple(_spec(k, v) for k, v in sorted(outputs.items())),
        )

    def runner(self, path: Path):
        import tensorflow as tf

        loaded, function = _serving_signature(path)

        def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            result = function(**{k: tf.constant(v) for k, v in inputs.items()})
            return {k: v.numpy() for k, v in result.items()}

        run.keepalive = loaded  # the signature function needs its trackable object alive
        return run

