"""``detect``: the detection ensemble (``<name>_letterbox`` -> detector -> ``<name>_detect_post``)
as one ONNX graph, ``<name>_detect_fused``, in standard ONNX operators only (no custom-op library).

Input: ``IMAGE``, the raw RGB pixels of one image, UINT8 ``[height, width, 3]``, one image a
request (``max_batch_size: 0``: images of different sizes cannot share a batch). Standard ONNX has
no image decoder; encoded bytes would need onnxruntime-extensions' ``DecodeImage`` (a custom-op
library; it decodes to BGR, and JPEG not exactly as OpenCV's libjpeg does). A client that holds an
image file decodes it (``np.asarray(PIL.Image.open(f).convert("RGB"))``) and sends the pixels.

Outputs: those of ``<name>_detect`` for one image: ``BOXES [1, n, 4]`` FP32 xyxy in the original
image's pixels, ``SCORES [1, n]`` FP32, ``CLASSES [1, n]`` INT32, ``NAMES [1, n]`` BYTES (a Gather
over the class names as a string constant), ``COUNT [1, 1]`` INT32; best first.

The graph reproduces the Python steps operation for operation:
- letterbox (ultralytics' ``LetterBox(auto=False)``, as ``ensembles/steps/letterbox.py``): the ratio,
  the rounded size and the padding in float64 with round-half-even (Python's ``round``); the resize
  as OpenCV's ``INTER_LINEAR`` on 8-bit images computes it: source positions in float32, 11-bit
  fixed-point weights (each rounded on its own, so a pair may sum to 2049), the horizontal pass in
  int32, the vertical pass as OpenCV's SIMD path (``((b0*(S0>>4))>>16) + ((b1*(S1>>4))>>16) + 2) >> 2``),
  columns clamped with their weight zeroed at the edges, rows clamped with their weights kept: equal
  to ``cv2.resize`` on every size tried (tests/test_fused_detect.py); pad 114, /255 in float32, CHW;
- the detector, its nodes and weights as exported (names prefixed ``detector/``);
- ``detect_post``: the best class per anchor (v8 heads; v5: class score x objectness), candidates
  above ``conf``, boxes to xyxy in float32, per-class NMS as ultralytics does it (each class's boxes
  offset by class x 7680, one ``NonMaxSuppression`` at ``iou`` with at most ``max_det`` boxes), boxes
  mapped back (padding, gain, clip) as ``scale_boxes``.
Where ultralytics keeps only the 30,000 best candidates before NMS, the graph refuses a head with
more anchors than that (an input of more than about 1,900 pixels a side) rather than differ.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from tritonforge import verify
from tritonforge.verify import OutputError

from .base import MAX_OPSET, Arrays, Fused, Fuser, Pipeline

IMAGE = "IMAGE"
OUTPUTS = ("BOXES", "SCORES", "CLASSES", "NAMES", "COUNT")
PREFIX = "detector/"
MAX_WH = 7680  # ultralytics' per-class offset (as detect_post.py)
MAX_NMS = 30000  # ultralytics' candidate cap (as detect_post.py)
COEF_SCALE = 2048  # OpenCV's INTER_RESIZE_COEF_SCALE (11 bits)
BOX_PIXELS, SCORE_ATOL = 1.5, 2e-3  # how close "equal" is for boxes and scores
STRIDES = (8, 16, 32)


class Graph:
    """Nodes and constants of the graph being written; every name made unique by a counter."""

    def __init__(self) -> None:
        self.nodes, self.initializers, self.count = [], [], 0

    def const(self, value, dtype=None) -> str:
        self.count += 1
        name = f"fused/c{self.count}"
        array = np.array(value, dtype=dtype) if dtype is not None or not isinstance(value, np.ndarray) else value
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, kind: str, *inputs: str, outputs: int = 1, name: str | None = None, **attributes):
        self.count += 1
        names = [name] if name else [f"fused/{kind.lower()}{self.count}_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(kind, list(inputs), names, **attributes))
        return names[0] if outputs == 1 else names


def _letterbox(g: Graph, settings: dict, output: str) -> tuple[str, str, str]:
    """IMAGE uint8 [H, W, 3] -> the detector's input [1, 3, h, w] float32; and H, W as float64 scalars."""
    new_h, new_w = float(settings["height"]), float(settings["width"])
    shape = g.op("Shape", IMAGE)
    # [1]-shaped sizes, not scalars: ORT 1.19 fuses scalar Gathers and Slices of one tensor into a Split
    # named "GatherSliceToSplitFusion" each time, and refuses the graph where two such names clash.
    height_i, width_i = (g.op("Gather", shape, g.const([i], np.int64), axis=0) for i in (0, 1))
    height, width = (g.op("Cast", v, to=TensorProto.DOUBLE) for v in (height_i, width_i))
    ratio = g.op("Min", g.op("Div", g.const(new_h), height), g.op("Div", g.const(new_w), width))
    one = g.const(1.0)
    unpad_h = g.op("Max", g.op("Round", g.op("Mul", height, ratio)), one)
    unpad_w = g.op("Max", g.op("Round", g.op("Mul", width, ratio)), one)
    # OpenCV INTER_LINEAR's fixed-point arithmetic, bit for bit. ONNX Resize (linear, half_pixel) on float
    # was tried: 3.8e-3 off the Python steps' scores on the 7x5 test image, for ~0.5 ms an image saved.
    resized = _exact_resize(g, height, width, height_i, width_i, unpad_h, unpad_w)
    pads = _pads(g, new_h, new_w, unpad_h, unpad_w)
    padded = g.op("Pad", resized, pads, g.const(float(settings["pad"]), np.float32), mode="constant")
    scaled = g.op("Div", padded, g.const(255.0, np.float32))
    chw = g.op("Transpose", scaled, perm=[2, 0, 1])
    g.op("Unsqueeze", chw, g.const([0], np.int64), name=output)
    return output, height, width


def _exact_resize(g: Graph, height: str, width: str, height_i: str, width_i: str, unpad_h: str, unpad_w: str) -> str:
    pixels = g.op("Cast", IMAGE, to=TensorProto.INT32)
    x0, x1, a0, a1 = _taps(g, width, width_i, unpad_w, clamp_weights=True)
    y0, y1, b0, b1 = _taps(g, height, height_i, unpad_h, clamp_weights=False)
    # Weights along the width, repeated over the 3 channels: ORT runs a Mul broadcast over a last axis of 3
    # three values at a time and one over the first axis in contiguous rows (the horizontal pass: 1.6 -> 0.1 ms).
    row = lambda taps: g.op("Expand", g.op("Reshape", taps, g.const([1, -1, 1], np.int64)),  # noqa: E731
                            g.const([1, 1, 3], np.int64))
    column = lambda taps: g.op("Reshape", taps, g.const([-1, 1, 1], np.int64))  # noqa: E731
    across = g.op("Add", g.op("Mul", g.op("Gather", pixels, x0, axis=1), row(a0)),
                  g.op("Mul", g.op("Gather", pixels, x1, axis=1), row(a1)))
    sixteen, wide = g.const(16, np.int32), g.const(65536, np.int32)
    top_part = g.op("Div", g.op("Mul", g.op("Div", g.op("Gather", across, y0, axis=0), sixteen), column(b0)), wide)
    bottom_part = g.op("Div", g.op("Mul", g.op("Div", g.op("Gather", across, y1, axis=0), sixteen), column(b1)), wide)
    resized = g.op("Div", g.op("Add", g.op("Add", top_part, bottom_part), g.const(2, np.int32)), g.const(4, np.int32))
    return g.op("Cast", g.op("Clip", resized, g.const(0, np.int32), g.const(255, np.int32)), to=TensorProto.FLOAT)


def _taps(g: Graph, size: str, size_i: str, out: str, clamp_weights: bool):
    """OpenCV's INTER_LINEAR source taps and 11-bit weights along one axis: (first, second, w0, w1).
    Columns (``clamp_weights``) take the edge pixel with weight 0 outside the image; rows keep
    their weights and clamp the row index (resizeGeneric clamps rows in its row loop)."""
    steps = g.op("Range", g.const(0.0), g.op("Reshape", out, g.const([], np.int64)), g.const(1.0))
    scale = g.op("Div", g.const(1.0), g.op("Div", out, size))  # 1 / inv_scale, as cv::resize
    position = g.op("Cast", g.op("Sub", g.op("Mul", g.op("Add", steps, g.const(0.5)), scale), g.const(0.5)),
                    to=TensorProto.FLOAT)
    first = g.op("Floor", position)
    fraction = g.op("Sub", position, first)
    last = g.op("Sub", g.op("Cast", size_i, to=TensorProto.FLOAT), g.const(1.0, np.float32))
    zero = g.const(0.0, np.float32)
    if clamp_weights:
        outside = g.op("Or", g.op("Less", first, zero), g.op("GreaterOrEqual", first, last))
        fraction = g.op("Where", outside, zero, fraction)
    second = g.op("Min", g.op("Max", g.op("Add", first, g.const(1.0, np.float32)), zero), last)
    first = g.op("Min", g.op("Max", first, zero), last)
    weight = lambda f: g.op("Cast", g.op("Round", g.op("Mul", f, g.const(float(COEF_SCALE), np.float32))),  # noqa: E731
                            to=TensorProto.INT32)
    w1, w0 = weight(fraction), weight(g.op("Sub", g.const(1.0, np.float32), fraction))
    index = lambda v: g.op("Cast", v, to=TensorProto.INT64)  # noqa: E731
    return index(first), index(second), w0, w1


def _pads(g: Graph, new_h: float, new_w: float, unpad_h: str, unpad_w: str) -> str:
    """[top, left, 0, bottom, right, 0]: round(d - 0.1) before, round(d + 0.1) after (LetterBox)."""
    dh = g.op("Div", g.op("Sub", g.const(new_h), unpad_h), g.const(2.0))
    dw = g.op("Div", g.op("Sub", g.const(new_w), unpad_w), g.const(2.0))
    sides = [g.op("Round", g.op(kind, d, g.const(0.1))) for kind in ("Sub", "Add") for d in (dh, dw)]
    top, left, bottom, right = (g.op("Reshape", g.op("Cast", s, to=TensorProto.INT64), g.const([1], np.int64))
                                for s in sides)
    zero = g.const([0], np.int64)
    return g.op("Concat", top, left, zero, bottom, right, zero, axis=0)


def _candidates(g: Graph, head: str, settings: dict):
    """(xyxy boxes [N, 4], score [N], class [N] int64) of the anchors whose best score passes ``conf``."""
    classes, conf = len(settings["names"]), g.const(float(settings["conf"]), np.float32)
    rows = g.op("Squeeze", head, g.const([0], np.int64))
    if settings["layout"] == "v8":  # [4 + classes, anchors] -> [anchors, 4 + classes]
        rows = g.op("Transpose", rows, perm=[1, 0])
        scores = _columns(g, rows, 4, 4 + classes)
        passing = None
    else:  # v5 [anchors, 5 + classes]: class score x objectness, objectness above conf first
        objectness = _columns(g, rows, 4, 5)
        scores = g.op("Mul", _columns(g, rows, 5, 5 + classes), objectness)
        passing = g.op("Greater", g.op("Squeeze", objectness, g.const([1], np.int64)), conf)
    best = g.op("ArgMax", scores, axis=1, keepdims=1)
    score = g.op("Squeeze", g.op("GatherElements", scores, best, axis=1), g.const([1], np.int64))
    keep = g.op("Greater", score, conf)
    if passing is not None:
        keep = g.op("And", keep, passing)
    kept = g.op("Squeeze", g.op("NonZero", keep), g.const([0], np.int64))
    box = g.op("Gather", _columns(g, rows, 0, 4), kept, axis=0)
    centre, size = _columns(g, box, 0, 2), _columns(g, box, 2, 4)
    half = g.op("Div", size, g.const(2.0, np.float32))
    corners = g.op("Concat", g.op("Sub", centre, half), g.op("Add", centre, half), axis=1)
    return corners, g.op("Gather", score, kept, axis=0), g.op("Gather", g.op("Squeeze", best, g.const([1], np.int64)), kept, axis=0)


def _columns(g: Graph, rows: str, start: int, end: int) -> str:
    """Columns start..end-1, by a Gather of their indices (no Slice: see the note in _letterbox)."""
    return g.op("Gather", rows, g.const(np.arange(start, end, dtype=np.int64)), axis=1)


def _nms(g: Graph, boxes: str, scores: str, classes: str, settings: dict) -> str:
    """Indices kept by per-class NMS, best first: one class of boxes offset by class x 7680."""
    offset = g.op("Mul", g.op("Cast", g.op("Unsqueeze", classes, g.const([1], np.int64)), to=TensorProto.FLOAT),
                  g.const(float(MAX_WH), np.float32))
    shifted = g.op("Unsqueeze", g.op("Add", boxes, offset), g.const([0], np.int64))
    ranked = g.op("Unsqueeze", scores, g.const([0, 1], np.int64))
    selected = g.op("NonMaxSuppression", shifted, ranked, g.const([int(settings["max_det"])], np.int64),
                    g.const([float(settings["iou"])], np.float32))
    return g.op("Squeeze", _columns(g, selected, 2, 3), g.const([1], np.int64))


def _scale_boxes(g: Graph, boxes: str, height: str, width: str, settings: dict) -> str:
    """ultralytics' scale_boxes: letterboxed pixels back to the original image's, clipped to it."""
    new_h, new_w = float(settings["height"]), float(settings["width"])
    gain = g.op("Min", g.op("Div", g.const(new_h), height), g.op("Div", g.const(new_w), width))
    one = g.const(1.0)
    unpad_h = g.op("Max", g.op("Round", g.op("Mul", height, gain)), one)
    unpad_w = g.op("Max", g.op("Round", g.op("Mul", width, gain)), one)
    gain_x, gain_y = g.op("Div", unpad_w, width), g.op("Div", unpad_h, height)
    pad_x = g.op("Round", g.op("Sub", g.op("Div", g.op("Sub", g.const(new_w), unpad_w), g.const(2.0)), g.const(0.1)))
    pad_y = g.op("Round", g.op("Sub", g.op("Div", g.op("Sub", g.const(new_h), unpad_h), g.const(2.0)), g.const(0.1)))
    as_row = lambda x, y: g.op("Cast", g.op("Concat", *(g.op("Reshape", v, g.const([1], np.int64)) for v in (x, y, x, y)),  # noqa: E731
                                            axis=0), to=TensorProto.FLOAT)
    mapped = g.op("Div", g.op("Sub", boxes, as_row(pad_x, pad_y)), as_row(gain_x, gain_y))
    return g.op("Min", g.op("Max", mapped, g.const(0.0, np.float32)), as_row(width, height))


def _answers(g: Graph, boxes: str, scores: str, classes: str, names: list[str]) -> None:
    """The outputs of ``<name>_detect`` for one image."""
    first = g.const([0], np.int64)
    g.op("Unsqueeze", boxes, first, name="BOXES")
    g.op("Unsqueeze", scores, first, name="SCORES")
    g.op("Unsqueeze", g.op("Cast", classes, to=TensorProto.INT32), first, name="CLASSES")
    g.op("Unsqueeze", g.op("Gather", g.const(np.array([n.encode() for n in names], dtype=object)), classes, axis=0),
         first, name="NAMES")
    g.op("Reshape", g.op("Cast", g.op("Size", scores), to=TensorProto.INT32), g.const([1, 1], np.int64), name="COUNT")


def fused_graph(detector, letterbox: dict, post: dict):
    """The whole pipeline around ``detector`` (an ``onnx.ModelProto``) as one ``onnx.ModelProto``."""
    from onnx import compose

    detector = compose.add_prefix(detector, PREFIX)
    g = Graph()
    _, height, width = _letterbox(g, letterbox, PREFIX + letterbox["output"])
    boxes, scores, classes = _candidates(g, PREFIX + post["input"], post)
    kept = _nms(g, boxes, scores, classes, post)
    picked = [g.op("Gather", v, kept, axis=0) for v in (boxes, scores, classes)]
    _answers(g, _scale_boxes(g, picked[0], height, width, post), picked[1], picked[2], post["names"])
    split = next(i for i, n in enumerate(g.nodes) if PREFIX + post["input"] in n.input)  # the detector runs here
    nodes = g.nodes[:split] + list(detector.graph.node) + g.nodes[split:]
    image = helper.make_tensor_value_info(IMAGE, TensorProto.UINT8, ["height", "width", 3])
    outputs = [helper.make_tensor_value_info("BOXES", TensorProto.FLOAT, [1, "boxes", 4]),
               helper.make_tensor_value_info("SCORES", TensorProto.FLOAT, [1, "boxes"]),
               helper.make_tensor_value_info("CLASSES", TensorProto.INT32, [1, "boxes"]),
               helper.make_tensor_value_info("NAMES", TensorProto.STRING, [1, "boxes"]),
               helper.make_tensor_value_info("COUNT", TensorProto.INT32, [1, 1])]
    graph = helper.make_graph(nodes, "detect_fused", [image], outputs, list(detector.graph.initializer) + g.initializers,
                              value_info=list(detector.graph.value_info))
    model = helper.make_model(graph, opset_imports=list(detector.opset_import), producer_name="tritonforge")
    model.ir_version = detector.ir_version
    return model


def _refusal(detector, letterbox: dict, post: dict) -> str | None:
    opset = next((o.version for o in detector.opset_import if o.domain in ("", "ai.onnx")), 0)
    if not 13 <= opset <= MAX_OPSET:
        return f"the detector's opset {opset} is outside 13..{MAX_OPSET} (Triton 24.10's ONNX Runtime 1.19 runs up to {MAX_OPSET})"
    anchors = sum((letterbox["height"] // s) * (letterbox["width"] // s) for s in STRIDES)
    if anchors > MAX_NMS:
        return f"{anchors} anchors: ultralytics keeps the {MAX_NMS} best before NMS, which the graph does not"
    if post.get("layout") not in ("v8", "v5"):
        return f"head layout {post.get('layout')!r} is neither v8 nor v5"
    return None


def decode_rgb(data: bytes) -> np.ndarray:
    """An encoded image's RGB pixels, decoded as the letterbox step decodes it (OpenCV, EXIF applied)."""
    import cv2

    return np.ascontiguousarray(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1])


def one_image(answers: Arrays, row: int) -> Arrays:
    """Row ``row`` of a detection ensemble's answer, cut to its COUNT boxes, as the fused graph answers one image."""
    count = int(answers["COUNT"][row, 0])
    return {"BOXES": answers["BOXES"][row:row + 1, :count], "SCORES": answers["SCORES"][row:row + 1, :count],
            "CLASSES": answers["CLASSES"][row:row + 1, :count], "NAMES": answers["NAMES"][row:row + 1, :count],
            "COUNT": answers["COUNT"][row:row + 1]}


class DetectFuser(Fuser):
    kind = "detect"

    def fuse(self, pipeline: Pipeline) -> Fused | str:
        import onnx

        letterbox, post = pipeline.step("letterbox"), pipeline.step("detect_post")
        if letterbox is None or post is None:
            return "a detection ensemble needs its letterbox and detect_post steps"
        detector = onnx.load(str(pipeline.artifact))
        refusal = _refusal(detector, letterbox.settings, post.settings)
        if refusal:
            return refusal
        raw, expected = pipeline.ensemble.samples
        images = [decode_rgb(data) for data in raw["RAW"].reshape(-1)]
        return Fused(fused_graph(detector, letterbox.settings, post.settings),
                     requests=tuple({IMAGE: image} for image in images),
                     expected=tuple(one_image(expected, row) for row in range(len(images))), batched=False)

    def compare(self, pipeline: Pipeline, expected: Arrays, actual: Arrays) -> tuple[OutputError, ...]:
        """Same count, classes and names; boxes within 1.5 px; scores within 2e-3."""
        count = verify.compare_one("COUNT", expected["COUNT"], actual["COUNT"], 0, 0)
        if not count.ok:
            return (count,)
        return (count, verify.compare_one("BOXES", expected["BOXES"], actual["BOXES"], BOX_PIXELS, 0.0),
                verify.compare_one("SCORES", expected["SCORES"], actual["SCORES"], SCORE_ATOL, 0.0),
                verify.compare_one("CLASSES", expected["CLASSES"], actual["CLASSES"], 0, 0),
                verify.compare_one("NAMES", expected["NAMES"], actual["NAMES"], 0, 0))
