"""Each kind of config that does not fit its artifact is refused at load, in the real backends' words.

One table, one driver: every row writes a model with a mismatched config into the session's
tiny repository, asks the running server to load it, and expects the load to fail with the
message Triton's ONNX Runtime backend gives for that mistake.
"""
from __future__ import annotations

import pytest

from fixtures_serving import make_config, write_model
from tritonforge.serving.server import ServeError

F32_IN = [("input", "TYPE_FP32", [4])]
F32_OUT = [("output", "TYPE_FP32", [3])]

# (case, artifact, platform, filename, config keyword arguments, expected message)
CASES = [
    ("onnx-unknown-input-name", "onnx", "onnxruntime_onnx", "model.onnx",
     dict(inputs=[("INPUT0", "TYPE_FP32", [4])], outputs=F32_OUT),
     "unexpected inference input 'INPUT0', allowed inputs are: input"),
    ("onnx-missing-input", "onnx", "onnxruntime_onnx", "model.onnx",
     dict(inputs=[], outputs=F32_OUT),
     "configuration expects 0 inputs, model provides 1"),
    ("onnx-unknown-output-name", "onnx", "onnxruntime_onnx", "model.onnx",
     dict(inputs=F32_IN, outputs=[("probabilities", "TYPE_FP32", [3])]),
     "unexpected inference output 'probabilities', allowed outputs are: output"),
    ("onnx-input-dtype", "onnx", "onnxruntime_onnx", "model.onnx",
     dict(inputs=[("input", "TYPE_FP16", [4])], outputs=F32_OUT),
     "configuration expects datatype TYPE_FP16 for input 'input', model provides TYPE_FP32"),
    ("onnx-output-dtype", "onnx", "onnxruntime_onnx", "model.onnx",
     dict(inputs=F32_IN, outputs=[("output", "TYPE_INT64", [3])]),
     "configuration expects datatype TYPE_INT64 for output 'output', model provides TYPE_FP32"),
    ("onnx-batching-on-fixed-first-dim", "onnx_fixed", "onnxruntime_onnx", "model.onnx",
     dict(inputs=F32_IN, outputs=F32_OUT),
     "tensor 'input': for the model to support batching the shape should have at least 1 dimension "
     "and the first dimension must be -1; but shape expected by the model is [2,4]"),
    ("onnx-input-dims", "onnx", "onnxruntime_onnx", "model.onnx",
     dict(inputs=[("input", "TYPE_FP32", [5])], outputs=F32_OUT),
     "tensor 'input': the model expects 2 dimensions (shape [-1,4]) but the model configuration "
     "specifies 2 dimensions (an initial batch dimension because max_batch_size > 0 followed by the "
     "explicit tensor shape, making complete shape [-1,5])"),
    ("onnx-unbatched-rank", "onnx", "onnxruntime_onnx", "model.onnx",
     dict(inputs=[("input", "TYPE_FP32", [4])], outputs=F32_OUT, max_batch_size=0),
     "tensor 'input': the model expects 2 dimensions (shape [-1,4]) but the model configuration "
     "specifies 1 dimensions (shape [4])"),
    ("onnx-thread-parameter", "onnx", "onnxruntime_onnx", "model.onnx",
     dict(inputs=F32_IN, outputs=F32_OUT, parameters={"intra_op_thread_count": "many"}),
     "invalid literal for int() with base 10: 'many'"),
    ("onnx-spinning-parameter", "onnx", "onnxruntime_onnx", "model.onnx",
     dict(inputs=F32_IN, outputs=F32_OUT, parameters={"tritonforge_allow_spinning": "yes"}),
     "parameter tritonforge_allow_spinning must be 0 or 1, got 'yes'"),
    ("onnx-op-library-missing", "onnx", "onnxruntime_onnx", "model.onnx",
     dict(inputs=F32_IN, outputs=F32_OUT, op_libraries=["libnosuch_ops.so"]),
     "Failed to load library libnosuch_ops.so"),
    ("torch-input-name", "torchscript", "pytorch_libtorch", "model.pt",
     dict(inputs=[("features", "TYPE_FP32", [4])], outputs=[("OUTPUT__0", "TYPE_FP32", [3])]),
     "unexpected inference input 'features', allowed inputs are: INPUT__0, input"),
    ("torch-input-count", "torchscript", "pytorch_libtorch", "model.pt",
     dict(inputs=[("INPUT__0", "TYPE_FP32", [4]), ("INPUT__1", "TYPE_FP32", [4])],
          outputs=[("OUTPUT__0", "TYPE_FP32", [3])]),
     "configuration expects 2 inputs, model provides 1"),
    ("torch-input-dtype", "torchscript", "pytorch_libtorch", "model.pt",
     dict(inputs=[("INPUT__0", "TYPE_FP64", [4])], outputs=[("OUTPUT__0", "TYPE_FP32", [3])]),
     "configuration expects datatype TYPE_FP64 for input 'INPUT__0', model provides TYPE_FP32"),
    ("torch-output-dtype", "torchscript", "pytorch_libtorch", "model.pt",
     dict(inputs=[("INPUT__0", "TYPE_FP32", [4])], outputs=[("OUTPUT__0", "TYPE_FP16", [3])]),
     "configuration expects datatype TYPE_FP16 for output 'OUTPUT__0', model provides TYPE_FP32"),
    ("torch-output-dims", "torchscript", "pytorch_libtorch", "model.pt",
     dict(inputs=[("INPUT__0", "TYPE_FP32", [4])], outputs=[("OUTPUT__0", "TYPE_FP32", [7])]),
     "tensor 'OUTPUT__0': the model expects 2 dimensions (shape [-1,3])"),
    ("torch-input-dims", "torchscript", "pytorch_libtorch", "model.pt",
     dict(inputs=[("INPUT__0", "TYPE_FP32", [5])], outputs=[("OUTPUT__0", "TYPE_FP32", [3])]),
     "the model fails on inputs of the configured dtypes and dims"),
    ("tf-input-name", "savedmodel", "tensorflow_savedmodel", "model.savedmodel",
     dict(inputs=[("input_1", "TYPE_FP32", [4])], outputs=[("scores", "TYPE_FP32", [3])]),
     "unexpected inference input 'input_1', allowed inputs are: features"),
    ("tf-input-dtype", "savedmodel", "tensorflow_savedmodel", "model.savedmodel",
     dict(inputs=[("features", "TYPE_FP64", [4])], outputs=[("scores", "TYPE_FP32", [3])]),
     "configuration expects datatype TYPE_FP64 for input 'features', model provides TYPE_FP32"),
    ("tf-input-dims", "savedmodel", "tensorflow_savedmodel", "model.savedmodel",
     dict(inputs=[("features", "TYPE_FP32", [2, 2])], outputs=[("scores", "TYPE_FP32", [3])]),
     "tensor 'features': the model expects 2 dimensions (shape [-1,4])"),
]


@pytest.mark.parametrize("case,artifact,platform,filename,kwargs,expected", CASES, ids=[c[0] for c in CASES])
def test_mismatched_config_is_refused_at_load(tiny_server, tiny_repo, tiny_artifacts,
                                              case, artifact, platform, filename, kwargs, expected):
    name = "refused_" + case.replace("-", "_")
    config = make_config(name, platform, kwargs.pop("inputs"), kwargs.pop("outputs"), **kwargs)
    write_model(tiny_repo, config, tiny_artifacts[artifact], filename)
    with pytest.raises(ServeError) as info:
        tiny_server.load(name)
    message = str(info.value)
    assert message.startswith(f"model '{name}' failed to load")
    assert expected in message
    # Refused means not served: nothing of it is READY.
    assert all(state != "READY" for (model, _), state in tiny_server.model_states().items() if model == name)


def test_a_fitting_config_of_the_same_artifacts_loads(tiny_server, tiny_repo, tiny_artifacts):
    """The control for the table: the same driver with a correct config loads and serves."""
    config = make_config("accepted_onnx", "onnxruntime_onnx", F32_IN, F32_OUT,
                         parameters={"intra_op_thread_count": "1", "inter_op_thread_count": "1",
                                     "tritonforge_allow_spinning": "1"})
    write_model(tiny_repo, config, tiny_artifacts["onnx"], "model.onnx")
    tiny_server.load("accepted_onnx")
    assert tiny_server.model_states()[("accepted_onnx", "1")] == "READY"
