"""Triton Python-based backend for platform ``tensorflow_savedmodel`` (CPU, TensorFlow).

Serves ``<model>/<version>/model.savedmodel`` through its ``serving_default`` signature; config
tensor names are the signature's input and output keys. The config is checked against the
signature with the wording of Triton's ONNX Runtime backend. (Triton's TensorFlow backend takes
its thread settings from --backend-config, not per model, so there is no parameter to read.)
"""
import numpy as np

from tritonforge.serving.backends.common import (
    BatchedModel, ConfigRefused, ModelArgs, TensorSpec, artifact_tensor, check_config, refuse,
)


def _spec(name, spec) -> TensorSpec:
    import tensorflow as tf

    # TensorFlow dtypes Triton has a type for (as numpy dtypes); others keep TensorFlow's name.
    names = {t: t.as_numpy_dtype for t in (tf.bool, tf.uint8, tf.uint16, tf.uint32, tf.uint64, tf.int8, tf.int16,
                                           tf.int32, tf.int64, tf.float16, tf.float32, tf.float64, tf.string)}
    dims = None if spec.shape.rank is None else tuple(-1 if d is None else int(d) for d in spec.shape)
    return artifact_tensor(name, names.get(spec.dtype, spec.dtype.name), dims)


class TritonPythonModel:
    def initialize(self, args):
        import tensorflow as tf

        try:
            margs = ModelArgs.parse(args)
            loaded = tf.saved_model.load(margs.artifact("model.savedmodel"))
            if "serving_default" not in loaded.signatures:
                raise ConfigRefused(
                    f"unable to load model '{margs.name}', the SavedModel has no 'serving_default' "
                    f"signature (it has: {', '.join(loaded.signatures) or 'none'})"
                )
            self.signature = loaded.signatures["serving_default"]
            self._keep = loaded
            inputs = [_spec(k, v) for k, v in sorted(self.signature.structured_input_signature[1].items())]
            outputs = [_spec(k, v) for k, v in sorted(self.signature.structured_outputs.items())]
            check_config(margs, inputs, outputs)
        except Exception as exc:
            raise refuse(exc) from None
        self.tf = tf
        self.output_names = [io["name"] for io in margs.outputs()]
        self.model = BatchedModel(margs, self._run)

    def _run(self, arrays):
        feed = {name: self.tf.constant(value) for name, value in arrays.items()}
        result = self.signature(**feed)
        return {name: np.asarray(result[name].numpy()) for name in self.output_names}

    def execute(self, requests):
        return self.model.execute(requests)
