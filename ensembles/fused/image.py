"""``image``: the image classifier's ensemble (image step -> model -> Triton's classification) as one
ONNX graph that takes the encoded file's bytes.

Input ``RAW``: ``UINT8 [-1]``, the bytes of one PNG or JPEG file, one image a request
(``max_batch_size: 0``). Not the ensemble's ``BYTES``: Triton hands BYTES to ONNX Runtime as a
string tensor, and no standard or onnxruntime-extensions op turns a string into the ``uint8``
buffer that ``DecodeImage`` decodes; so clients send the file as UINT8. Requests of different
lengths cannot be batched together, hence one image a request and no dynamic batching. Outputs:
the ensemble's, with a batch of one (``[1, classes]``).

The graph does what ``ensembles/steps/image.py`` does, op for op, so its answers are the Python
step's:

- decode: onnxruntime-extensions' ``DecodeImage`` (domain ``com.microsoft.extensions``), which
  answers BGR ``[h, w, 3]`` uint8 for every PNG or JPEG (grey and palette images expanded, alpha
  dropped, as OpenCV's ``imdecode``). PNG pixels are OpenCV's and Pillow's exactly; JPEG pixels may
  differ from Pillow's libjpeg by a few levels;
- grey models: Pillow's ``convert("L")`` in integers, ``(R*19595 + G*38470 + B*7471 + 32768) >> 16``
  (a grey image expanded to BGR comes back unchanged); RGB models: the channels reversed;
- resize when the image is not the model's size: Pillow's BILINEAR resample exactly (horizontal
  pass then vertical, each rounded to 8 bits, with its 22-bit fixed-point coefficients: triangle
  filter widened by the downscale factor, the window cut at the edges and renormalised), built in
  the graph as two coefficient matrices from the image's size. ONNX ``Resize`` (linear,
  ``antialias=1``, ``exclude_outside=1``) comes within one level of it but not exactly, so it is
  not used;
- ``(pixel * scale - mean) / std`` in float32, in the model's layout and dtype.

Not in the graph: the step's bounds (32 MB, 4096x4096 pixels) and its 400 for an undecodable image:
the graph's refusal is ONNX Runtime's error (500 on Triton's C++ backend).
"""
from __future__ import annotations

import numpy as np

from .base import Fused, Fuser, Pipeline

RAW = "RAW"
DECODE_DOMAIN = "com.microsoft.extensions"  # DecodeImage in onnxruntime-extensions 0.15
LIBRARY = "ortextensions"  # tritonforge.repository.op_libraries
PREFIX = "tritonforge_image/"
MIN_OPSET = 13  # ReduceSum and Unsqueeze take their axes as an input from 13
PRECISION_BITS = 22  # Pillow's fixed point for 8-bit resampling (libImaging/Resample.c: 32 - 8 - 2)
# Pillow's RGB -> L weights (libImaging/Convert.c, L24), here in DecodeImage's BGR order.
GREY_WEIGHTS_BGR = (7471, 38470, 19595)


class ImageFuser(Fuser):
    kind = "image"

    def fuse(self, pipeline: Pipeline) -> Fused | str:
        import onnx

        if [s.kind for s in pipeline.steps] != ["image"]:
            return f"only an image step with classification fuses, this ensemble runs steps {[s.kind for s in pipeline.steps]}"
        settings = pipeline.steps[0].settings
        model = onnx.load(str(pipeline.artifact))
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        if opset < MIN_OPSET:
            return f"the model's ONNX opset is {opset}; the fused image graph needs {MIN_OPSET} or later"
        inputs, outputs = pipeline.ensemble.samples
        try:
            fused = fused_graph(model, settings, tuple(outputs))
        except ValueError as exc:
            return str(exc)
        requests = tuple({RAW: np.frombuffer(row, np.uint8)} for row in inputs[RAW].reshape(-1).tolist())
        expected = tuple({name: value[i:i + 1] for name, value in outputs.items()} for i in range(len(requests)))
        return Fused(fused, requests, expected, libraries=(LIBRARY,), batched=False)


def fused_graph(model, settings: dict, outputs: tuple[str, ...]):
    """``model`` (an ``onnx.ModelProto`` with one image input) with the image step in front of it:
    input ``RAW`` uint8 [-1], outputs ``outputs`` with a batch of one."""
    import onnx
    from onnx import TensorProto, helper

    graph = model.graph
    initialized = {i.name for i in graph.initializer}
    feeds = [i for i in graph.input if i.name not in initialized]
    if [i.name for i in feeds] != [settings["output"]]:
        raise ValueError(f"the model takes {[i.name for i in feeds]}, the image step feeds '{settings['output']}'")
    missing = [name for name in outputs if name not in {o.name for o in graph.output}]
    if missing:
        raise ValueError(f"the ensemble answers {missing}, which the model's ONNX does not output")
    nodes, constants = preprocess(settings)
    used = {n for node in graph.node for n in (*node.input, *node.output)} | initialized
    clash = sorted(used & {n for node in nodes for n in node.output} - {settings["output"]})
    if clash:
        raise ValueError(f"the model's ONNX already uses the names {clash[:3]}")
    fused = onnx.ModelProto()
    fused.CopyFrom(model)
    body = fused.graph
    kept_inputs = [i for i in body.input if i.name in initialized]  # old-IR models list initializers as inputs
    del body.input[:]
    body.input.extend([helper.make_tensor_value_info(RAW, TensorProto.UINT8, ["bytes"])] + kept_inputs)
    model_nodes = list(body.node)
    del body.node[:]
    body.node.extend(nodes + model_nodes)
    body.initializer.extend(constants)
    kept_outputs = [o for o in body.output if o.name in outputs]
    for output in kept_outputs:  # one image a request: the batch is 1
        dims = output.type.tensor_type.shape.dim
        if len(dims):
            dims[0].Clear()
            dims[0].dim_value = 1
    del body.output[:]
    body.output.extend(kept_outputs)
    if not any(o.domain == DECODE_DOMAIN for o in fused.opset_import):
        fused.opset_import.append(helper.make_opsetid(DECODE_DOMAIN, 1))
    return fused


class _Builder:
    """Nodes and constants under one prefix, each output named after its node."""

    def __init__(self):
        self.nodes, self.constants, self.count = [], [], 0

    def constant(self, name: str, value) -> str:
        from onnx import numpy_helper

        full = PREFIX + name
        self.constants.append(numpy_helper.from_array(np.asarray(value), full))
        return full

    def op(self, kind: str, inputs: list[str], name: str | None = None, output: str | None = None, **attributes) -> str:
        from onnx import helper

        self.count += 1
        out = output or f"{PREFIX}{name or kind.lower()}_{self.count}"
        domain = DECODE_DOMAIN if kind == "DecodeImage" else ""
        self.nodes.append(helper.make_node(kind, inputs, [out], name=out, domain=domain, **attributes))
        return out


def preprocess(settings: dict):
    """The image step as ONNX nodes: ``RAW`` -> the model's input tensor (``settings["output"]``)."""
    from onnx import TensorProto, helper

    b = _Builder()
    bgr = b.op("DecodeImage", [RAW], "bgr")  # [h, w, 3] uint8
    if settings["channels"] == 1:
        weighted = b.op("Mul", [b.op("Cast", [bgr], to=TensorProto.INT32), b.constant("grey_weights", np.array(GREY_WEIGHTS_BGR, np.int32))])
        summed = b.op("ReduceSum", [weighted, b.constant("channel_axis", np.array([2], np.int64))], keepdims=1)
        pixels = b.op("Div", [b.op("Add", [summed, b.constant("half", np.array(1 << 15, np.int32))]),
                              b.constant("unit", np.array(1 << 16, np.int32))], "grey")  # [h, w, 1]
    else:
        pixels = b.op("Gather", [bgr, b.constant("rgb", np.array([2, 1, 0], np.int64))], "rgb", axis=2)
    planes = b.op("Transpose", [b.op("Cast", [pixels], to=TensorProto.DOUBLE)], "chw", perm=[2, 0, 1])  # [c, h, w]
    shape = b.op("Shape", [planes])
    in_h = b.op("Gather", [shape, b.constant("h_index", np.array(1, np.int64))], "in_h")
    in_w = b.op("Gather", [shape, b.constant("w_index", np.array(2, np.int64))], "in_w")
    # Pillow resamples horizontally first, rounding to 8 bits, then vertically.
    across = _rounded(b, b.op("MatMul", [planes, _coefficients(b, in_w, settings["width"], "w")]))  # [c, h, width]
    down = b.op("Transpose", [_coefficients(b, in_h, settings["height"], "h")], perm=[1, 0])  # [height, h]
    resized = _rounded(b, b.op("MatMul", [down, across]))  # [c, height, width]
    values = b.op("Cast", [resized], to=TensorProto.FLOAT)
    channels = settings["channels"]
    values = b.op("Mul", [values, b.constant("scale", np.array(settings["scale"], np.float32))])
    values = b.op("Sub", [values, b.constant("mean", np.array(settings["mean"], np.float32).reshape(channels, 1, 1))])
    values = b.op("Div", [values, b.constant("std", np.array(settings["std"], np.float32).reshape(channels, 1, 1))])
    if settings["layout"] == "NHWC":
        values = b.op("Transpose", [values], "hwc", perm=[1, 2, 0])
    dtype = helper.np_dtype_to_tensor_dtype(np.dtype(settings["dtype"]))
    if dtype != TensorProto.FLOAT:
        values = b.op("Cast", [values], to=dtype)
    b.op("Unsqueeze", [values, b.constant("batch_axis", np.array([0], np.int64))], output=settings["output"])
    return b.nodes, b.constants


def _coefficients(b: _Builder, size: str, out: int, axis: str) -> str:
    """Pillow's fixed-point BILINEAR coefficients from ``size`` (int64 scalar) input pixels to
    ``out``: a [size, out] double matrix of integers (libImaging/Resample.c, precompute_coeffs and
    normalize_coeffs_8bpc, each step in its order of operations)."""
    from onnx import TensorProto

    n = b.op("Cast", [size], f"{axis}_size", to=TensorProto.DOUBLE)
    one = b.constant(f"{axis}_one", np.array(1.0))
    scale = b.op("Div", [n, b.constant(f"{axis}_out", np.array(float(out)))], f"{axis}_scale")
    ss = b.op("Div", [one, b.op("Max", [scale, one], f"{axis}_filterscale")], f"{axis}_ss")
    centres = b.op("Mul", [b.constant(f"{axis}_centre_steps", (np.arange(out) + 0.5).reshape(1, out)), scale])  # [1, out]
    pixels = b.op("Range", [b.constant(f"{axis}_zero", np.array(0, np.int64)), size, b.constant(f"{axis}_step", np.array(1, np.int64))])
    pixels = b.op("Unsqueeze", [b.op("Cast", [pixels], to=TensorProto.DOUBLE), b.constant(f"{axis}_last", np.array([1], np.int64))])
    x = b.op("Mul", [b.op("Add", [b.op("Sub", [pixels, centres]), b.constant(f"{axis}_half", np.array(0.5))]), ss])
    weights = b.op("Max", [b.op("Sub", [one, b.op("Abs", [x])]), b.constant(f"{axis}_nothing", np.array(0.0))], f"{axis}_weights")
    total = b.op("ReduceSum", [weights, b.constant(f"{axis}_rows", np.array([0], np.int64))], keepdims=1)
    normalised = b.op("Div", [weights, total])
    fixed = b.op("Mul", [normalised, b.constant(f"{axis}_unit", np.array(float(1 << PRECISION_BITS)))])
    return b.op("Floor", [b.op("Add", [fixed, b.constant(f"{axis}_round", np.array(0.5))])], f"{axis}_coefficients")


def _rounded(b: _Builder, sums: str) -> str:
    """Pillow's clip8: (sum + 2^21) >> 22, clipped to 0..255 (exact: every value is an integer below 2^53)."""
    shifted = b.op("Add", [sums, b.constant(f"round_{b.count}", np.array(float(1 << (PRECISION_BITS - 1))))])
    scaled = b.op("Floor", [b.op("Div", [shifted, b.constant(f"unit_{b.count}", np.array(float(1 << PRECISION_BITS)))])])
    return b.op("Min", [b.op("Max", [scaled, b.constant(f"low_{b.count}", np.array(0.0))]), b.constant(f"high_{b.count}", np.array(255.0))])
