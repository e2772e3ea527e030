"""Detector postprocessing: a YOLO head's raw output -> boxes in the original image's pixels.

Reproduces ultralytics' ``non_max_suppression`` (best class per anchor, confidence above the
threshold, per-class NMS by offsetting each class's boxes by 7680 pixels, at most ``max_det``
boxes, best first) and ``scale_boxes`` (undo the letterbox's padding and gain, clip to the image).

Inputs: the detector's output (v8 ``[4 + classes, anchors]`` or v5 ``[anchors, 5 + classes]`` per
image) and each image's original size (height, width) from the letterbox step. Outputs per image,
padded to the most boxes of any image in the request (``COUNT`` says how many are real): boxes
``xyxy`` FP32, scores FP32, class ids INT32, class names BYTES.

Config parameter ``tritonforge_step`` (JSON)::

    {"input": "output0", "size_input": "IMAGE_SIZE", "layout": "v8", "names": ["a", "b"],
     "height": 160, "width": 160, "conf": 0.25, "iou": 0.7, "max_det": 300}
"""
import json

import numpy as np

STEP_PARAMETER = "tritonforge_step"
BOXES, SCORES, CLASSES, NAMES, COUNT = "BOXES", "SCORES", "CLASSES", "NAMES", "COUNT"
MAX_WH = 7680  # ultralytics' per-class offset: boxes of different classes never overlap
MAX_NMS = 30000  # ultralytics keeps at most this many candidates, best first, before NMS


def candidates(pred, spec):
    """(xyxy boxes, best score, best class) of the anchors whose best score passes ``conf``."""
    classes = len(spec["names"])
    rows = pred.T if spec["layout"] == "v8" else pred  # -> [anchors, 4 + classes (+ extra)]
    if spec["layout"] == "v8":
        scores = rows[:, 4:4 + classes]
    else:  # v5: class scores times objectness, candidates by objectness first as YOLOv5 does
        rows = rows[rows[:, 4] > spec["conf"]]
        scores = rows[:, 5:5 + classes] * rows[:, 4:5]
    keep = scores.max(1) > spec["conf"]
    rows, scores = rows[keep], scores[keep]
    best = scores.argmax(1)
    conf = scores[np.arange(len(best)), best]
    cx, cy, w, h = (rows[:, i] for i in range(4))
    half_w, half_h = w / np.float32(2), h / np.float32(2)
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1).astype(np.float32)
    return boxes, conf.astype(np.float32), best.astype(np.int32)


def nms(boxes, scores, iou, limit):
    """Greedy NMS as torchvision's: best first, dropping boxes whose IoU with a kept one exceeds ``iou``."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept = []
    while order.size and len(kept) < limit:
        first, rest = order[0], order[1:]
        kept.append(first)
        x1 = np.maximum(boxes[first, 0], boxes[rest, 0])
        y1 = np.maximum(boxes[first, 1], boxes[rest, 1])
        x2 = np.minimum(boxes[first, 2], boxes[rest, 2])
        y2 = np.minimum(boxes[first, 3], boxes[rest, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        overlap = inter / (areas[first] + areas[rest] - inter)
        order = rest[overlap <= iou]
    return np.array(kept, dtype=np.int64)


def scale_boxes(boxes, size, spec):
    """ultralytics' scale_boxes: from the letterboxed input back to the original (height, width)."""
    height, width = int(size[0]), int(size[1])
    gain = min(spec["height"] / height, spec["width"] / width)
    new_h, new_w = max(round(height * gain), 1), max(round(width * gain), 1)
    gain_y, gain_x = new_h / height, new_w / width
    pad_x, pad_y = round((spec["width"] - new_w) / 2 - 0.1), round((spec["height"] - new_h) / 2 - 0.1)
    boxes = boxes - np.array([pad_x, pad_y, pad_x, pad_y], np.float32)
    boxes = boxes / np.array([gain_x, gain_y, gain_x, gain_y], np.float32)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    return boxes.astype(np.float32)


def detect_one(pred, size, spec):
    """(boxes, scores, classes) of one image, best first."""
    boxes, scores, classes = candidates(np.asarray(pred, np.float32), spec)
    if len(scores) > MAX_NMS:
        top = np.argsort(-scores, kind="stable")[:MAX_NMS]
        boxes, scores, classes = boxes[top], scores[top], classes[top]
    kept = nms(boxes + classes[:, None].astype(np.float32) * np.float32(MAX_WH), scores, spec["iou"], spec["max_det"])
    return scale_boxes(boxes[kept], size, spec), scores[kept], classes[kept]


def detections(preds, sizes, spec):
    """Every image of a batch, padded to the most boxes of any: the step's outputs by name."""
    found = [detect_one(pred, size, spec) for pred, size in zip(preds, np.asarray(sizes).reshape(-1, 2))]
    most = max([len(scores) for _, scores, _ in found], default=0)
    rows = len(found)
    boxes = np.zeros((rows, most, 4), np.float32)
    scores = np.zeros((rows, most), np.float32)
    classes = np.full((rows, most), -1, np.int32)
    names = np.full((rows, most), b"", dtype=object)
    count = np.zeros((rows, 1), np.int32)
    labels = [name.encode() for name in spec["names"]]
    for row, (b, s, c) in enumerate(found):
        n = len(s)
        boxes[row, :n], scores[row, :n], classes[row, :n], count[row, 0] = b, s, c, n
        names[row, :n] = [labels[i] for i in c]
    return {BOXES: boxes, SCORES: scores, CLASSES: classes, NAMES: names, COUNT: count}


class TritonPythonModel:
    def initialize(self, args):
        global pb_utils
        import triton_python_backend_utils as pb_utils

        config = json.loads(args["model_config"])
        self.spec = json.loads(config["parameters"][STEP_PARAMETER]["string_value"])

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                preds = pb_utils.get_input_tensor_by_name(request, self.spec["input"]).as_numpy()
                sizes = pb_utils.get_input_tensor_by_name(request, self.spec["size_input"]).as_numpy()
                outputs = detections(preds, sizes, self.spec)
            except Exception as exc:  # a fault of this step: one line, no traceback
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    f"detection postprocess failed: {type(exc).__name__}", pb_utils.TritonError.INTERNAL)))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(k, v) for k, v in outputs.items()]))
        return responses
