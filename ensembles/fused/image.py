"""``image``: the image classifier's ensemble (image step -> model -> Triton's classification) as one
ONNX graph that takes the encoded file's bytes.

Input ``RAW``: ``UINT8 [-1]``, the bytes of one PNG file, one image a request
(``max_batch_size: 0``). Not the ensemble's ``BYTES``: Triton hands BYTES to ONNX Runtime as a
string tensor, and no standard or onnxruntime-extensions op turns a string into the ``uint8``
buffer that ``DecodeImage`` decodes; so clients send the file as UINT8. Requests of different
lengths cannot be batched together, hence one image a request and no dynamic batching. Outputs:
the ensemble's, with a batch of one (``[1, classes]``).

The graph does what ``ensembles/steps/image.py`` does, op for op, so its answers are the Python
step's (exactly for a PNG at the model's size, as the verification images are):

- decode: onnxruntime-extensions' ``DecodeImage`` (domain ``com.microsoft.extensions``), which
  answers BGR ``[h, w, 3]`` uint8 (grey and palette images expanded, alpha dropped, as OpenCV's
  ``imdecode``), PNG pixels exactly OpenCV's and Pillow's. **PNG only**: DecodeImage 0.15.2 ends
  the process on a malformed JPEG or any other non-PNG bytes (libjpeg's ``exit``), so the graph
  hands it only files with PNG's signature and refuses others with an error naming the node
  (:data:`NOT_PNG`); JPEG clients use the Python-step ensemble (or send PNG);
- grey models: Pillow's ``convert("L")`` in integers, ``(R*19595 + G*38470 + B*7471 + 32768) >> 16``
  (a grey image expanded to BGR comes back unchanged); RGB models: the channels reversed;
- resize when the image is not the model's size: Pillow's BILINEAR resample (libImaging/Resample.c:
  triangle filter widened by the downscale factor, the window cut at the edges and renormalised,
  22-bit fixed-point coefficients, each pass rounded to 8 bits), horizontal pass then vertical,
  built in the graph as two coefficient matrices from the image's size. Pillow 13 orders its two
  passes by a rule its earlier sources do not show, so a resized image's pixels are within one
  level of the step's (measured: 6.7% of them one level off on smooth grey images; equal when no
  resize is needed). ONNX ``Resize`` (linear, ``antialias=1``, ``exclude_outside=1``) is also within
  one level, but off on more pixels;
- ``(pixel * scale - mean) / std`` in float32, in the model's layout and dtype.

Cost (``benchmarks/fused.py --pipeline "image (digits_cnn)" --rounds 2 --seconds 2``, 2 cores, wrk/h2load,
32 connections, 2026-12-05): the fused entry answered 2,828 (HTTP) / 2,464 (gRPC) req/s on
serve-repo against the bare model's 10,710 / 8,648 (0.25x / 0.28x; the Python-step ensemble 0.53x /
0.55x), and 5,874 / 4,046 on Triton's C++ backend against 13,868 / 8,758 (0.55x / 0.51x; the
ensemble 0.58x / 0.71x): issue 30's goals (0.7x, 0.8x) are missed. One image a request means no
dynamic batching, where the bare model and the ensemble's model batch 32 connections' requests;
in-process the graph takes 113 us a call (DecodeImage about 40, the bare model 26).

Not in the graph: the step's bounds (32 MB, 4096x4096 pixels) and its 400 for an undecodable image:
the graph's refusal is ONNX Runtime's error (500 on Triton's C++ backend, and on serve-repo).
"""
from __future__ import annotations

import numpy as np

from .base import Fused, Fuser, Pipeline

RAW = "RAW"
DECODE_DOMAIN = "com.microsoft.extensions"  # DecodeImage in onnxruntime-extensions 0.15
LIBRARY = "ortextensions"  # tritonforge.repository.op_libraries
PREFIX = "tritonforge_image/"
MIN_OPSET = 13  # ReduceSum and Unsqueeze take their axes as an input from 13
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The name of the node that refuses a file that is not a PNG: ONNX Runtime's error names it.
NOT_PNG = "not a PNG file: the fused entry decodes PNG only"
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
    bgr = _decode_png_only(b)  # [h, w, 3] uint8
    if settings["channels"] == 1:
        weighted = b.op("Mul", [b.op("Cast", [bgr], to=TensorProto.INT32), b.constant("grey_weights", np.array(GREY_WEIGHTS_BGR, np.int32))])
        summed = b.op("ReduceSum", [weighted, b.constant("channel_axis", np.array([2], np.int64))], keepdims=1)
        pixels = b.op("Div", [b.op("Add", [summed, b.constant("half", np.array(1 << 15, np.int32))]),
                              b.constant("unit", np.array(1 << 16, np.int32))], "grey")  # [h, w, 1]
    else:
        pixels = b.op("Gather", [bgr, b.constant("rgb", np.array([2, 1, 0], np.int64))], "rgb", axis=2)
    planes = b.op("Transpose", [b.op("Cast", [pixels], to=TensorProto.DOUBLE)], "chw", perm=[2, 0, 1])  # [c, h, w]
    resized = _resize_unless_at_size(b, planes, settings["height"], settings["width"])  # [c, height, width]
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


def _resize_unless_at_size(b: _Builder, planes: str, height: int, width: int) -> str:
    """``planes`` [c, h, w] as they are when h, w is the model's size (the step does not resize
    then, and the resample's ~40 small ops were most of the graph's time), else resampled."""
    from onnx import TensorProto, helper

    shape = b.op("Shape", [planes])
    size = b.op("Slice", [shape, b.constant("hw_start", np.array([1], np.int64)), b.constant("hw_end", np.array([3], np.int64))])
    equal = b.op("Equal", [size, b.constant("model_size", np.array([height, width], np.int64))])
    at_size = b.op("Cast", [b.op("ReduceMin", [b.op("Cast", [equal], to=TensorProto.INT32)], keepdims=0)], "at_size",
                   to=TensorProto.BOOL)
    inner = _Builder()
    inner.count = b.count  # names stay unique across both graphs
    in_h = inner.op("Gather", [shape, inner.constant("h_index", np.array(1, np.int64))], "in_h")
    in_w = inner.op("Gather", [shape, inner.constant("w_index", np.array(2, np.int64))], "in_w")
    # No Transpose next to these double MatMuls: ONNX Runtime 1.19 (Triton 24.10) fuses one into a
    # FusedMatMul that has no double kernel and refuses the model at load.
    across = _rounded(inner, inner.op("MatMul", [planes, _coefficients(inner, in_w, width, "w", pixels_last=False)]))
    down = _coefficients(inner, in_h, height, "h", pixels_last=True)  # [height, h]
    resampled = _rounded(inner, inner.op("MatMul", [down, across]))  # [c, height, width]
    b.count = inner.count
    b.constants.extend(inner.constants)  # initializers of the main graph are seen inside the branch
    out = PREFIX + "at_model_size"
    result = helper.make_tensor_value_info(out, TensorProto.DOUBLE, None)
    keep = helper.make_graph([helper.make_node("Identity", [planes], [out], name=out)], "keep", [], [result])
    resample = helper.make_graph(inner.nodes + [helper.make_node("Identity", [resampled], [out], name=out)], "resample",
                                 [], [result])
    return b.op("If", [at_size], "resized", then_branch=keep, else_branch=resample)


def _decode_png_only(b: _Builder) -> str:
    """DecodeImage of ``RAW`` when it starts with PNG's signature; anything else goes to a
    DecodeImage of one zero byte, which fails cleanly with the node's name in the error.

    onnxruntime-extensions 0.15.2 hands every file that is not a PNG to libjpeg, whose default
    error handler calls exit(): a malformed JPEG, a GIF or a line of text ends serve-repo's model
    process, and leaves Triton's C++ backend hanging in exit() with every later request timing out
    (seen here on r24.10). So the fused entry decodes PNG only; its libpng errors are returned."""
    from onnx import TensorProto, helper

    padded = b.op("Concat", [RAW, b.constant("eight_zeros", np.zeros(8, np.uint8))], axis=0)
    head = b.op("Slice", [padded, b.constant("head_start", np.array([0], np.int64)), b.constant("head_end", np.array([8], np.int64))])
    same = b.op("Equal", [b.op("Cast", [head], to=TensorProto.INT32), b.constant("png_signature", np.frombuffer(PNG_SIGNATURE, np.uint8).astype(np.int32))])
    # every byte equal: the minimum over all of them (no axes: the same in every opset)
    matches = b.op("ReduceMin", [b.op("Cast", [same], to=TensorProto.INT32)], keepdims=0)
    is_png = b.op("Cast", [matches], "is_png", to=TensorProto.BOOL)
    pixels = helper.make_tensor_value_info(PREFIX + "decoded", TensorProto.UINT8, None)
    png = helper.make_graph([helper.make_node("DecodeImage", [RAW], [PREFIX + "decoded"], name=PREFIX + "decode",
                                              domain=DECODE_DOMAIN)], "png", [], [pixels])
    nothing = helper.make_tensor(PREFIX + "no_image", TensorProto.UINT8, [1], [0])
    refused = helper.make_graph([helper.make_node("Constant", [], [PREFIX + "no_image"], value=nothing),
                                 helper.make_node("DecodeImage", [PREFIX + "no_image"], [PREFIX + "decoded"],
                                                  name=NOT_PNG, domain=DECODE_DOMAIN)], "not_png", [], [pixels])
    return b.op("If", [is_png], "bgr", then_branch=png, else_branch=refused)


def _coefficients(b: _Builder, size: str, out: int, axis: str, pixels_last: bool) -> str:
    """Pillow's fixed-point BILINEAR coefficients from ``size`` (int64 scalar) input pixels to
    ``out``: a double matrix of integers, [size, out] or, ``pixels_last``, [out, size]
    (libImaging/Resample.c, precompute_coeffs and normalize_coeffs_8bpc, each step in its order of
    operations)."""
    pixel_axis, out_shape = (1, (out, 1)) if pixels_last else (0, (1, out))
    from onnx import TensorProto

    n = b.op("Cast", [size], f"{axis}_size", to=TensorProto.DOUBLE)
    one = b.constant(f"{axis}_one", np.array(1.0))
    scale = b.op("Div", [n, b.constant(f"{axis}_out", np.array(float(out)))], f"{axis}_scale")
    ss = b.op("Div", [one, b.op("Max", [scale, one], f"{axis}_filterscale")], f"{axis}_ss")
    centres = b.op("Mul", [b.constant(f"{axis}_centre_steps", (np.arange(out) + 0.5).reshape(out_shape)), scale])
    pixels = b.op("Range", [b.constant(f"{axis}_zero", np.array(0, np.int64)), size, b.constant(f"{axis}_step", np.array(1, np.int64))])
    pixels = b.op("Unsqueeze", [b.op("Cast", [pixels], to=TensorProto.DOUBLE),
                                b.constant(f"{axis}_other", np.array([1 - pixel_axis], np.int64))])
    x = b.op("Mul", [b.op("Add", [b.op("Sub", [pixels, centres]), b.constant(f"{axis}_half", np.array(0.5))]), ss])
    weights = b.op("Max", [b.op("Sub", [one, b.op("Abs", [x])]), b.constant(f"{axis}_nothing", np.array(0.0))], f"{axis}_weights")
    total = b.op("ReduceSum", [weights, b.constant(f"{axis}_pixels", np.array([pixel_axis], np.int64))], keepdims=1)
    normalised = b.op("Div", [weights, total])
    fixed = b.op("Mul", [normalised, b.constant(f"{axis}_unit", np.array(float(1 << PRECISION_BITS)))])
    return b.op("Floor", [b.op("Add", [fixed, b.constant(f"{axis}_round", np.array(0.5))])], f"{axis}_coefficients")


def _rounded(b: _Builder, sums: str) -> str:
    """Pillow's clip8: (sum + 2^21) >> 22, clipped to 0..255 (exact: every value is an integer below 2^53)."""
    shifted = b.op("Add", [sums, b.constant(f"round_{b.count}", np.array(float(1 << (PRECISION_BITS - 1))))])
    scaled = b.op("Floor", [b.op("Div", [shifted, b.constant(f"unit_{b.count}", np.array(float(1 << PRECISION_BITS)))])])
    return b.op("Min", [b.op("Max", [scaled, b.constant(f"low_{b.count}", np.array(0.0))]), b.constant(f"high_{b.count}", np.array(255.0))])
