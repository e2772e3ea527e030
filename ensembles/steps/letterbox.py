"""Detector preprocessing: encoded JPEG/PNG bytes -> ultralytics' letterboxed image tensor.

Reproduces ultralytics' ``LetterBox`` with the full square (rect off, as ultralytics does for a
static export): decode with OpenCV (BGR, EXIF orientation applied, as ``cv2.imread``), keep the
ratio, resize with ``cv2.INTER_LINEAR`` to the rounded size, pad with 114 to the model's input
size, centred, then RGB, CHW, float / 255. A second output gives each original size, which the
postprocess step needs to map boxes back to the original pixels.

Config parameter ``tritonforge_step`` (JSON)::

    {"output": "images", "dtype": "float32", "height": 160, "width": 160, "pad": 114,
     "size_output": "IMAGE_SIZE", "max_bytes": 33554432, "max_pixels": 16777216}
"""
import json
import os
import struct

import numpy as np

STEP_PARAMETER = "tritonforge_step"
RAW_INPUT = "RAW"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_START = b"\xff\xd8\xff"
JPEG_END = b"\xff\xd9"
DEFAULT_MAX_PIXELS = 4096 * 4096

# OpenCV refuses an image over this many pixels itself too; set before cv2 is imported.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(DEFAULT_MAX_PIXELS))
import cv2  # noqa: E402  (ultralytics decodes and resizes with OpenCV: the same library gives the same pixels)

cv2.setNumThreads(0)  # no thread pool in the step's process: Triton runs one execute at a time


class RowError(ValueError):
    """An image that cannot be read; the message names the row."""


def header_size(index, data):
    """(width, height) read from the header alone, before anything is decoded; refuses what is
    neither a whole-looking JPEG nor a PNG whose chunks all fit in the bytes given."""
    if data.startswith(PNG_SIGNATURE):
        if len(data) < 33 or data[12:16] != b"IHDR":
            raise RowError(f"row {index}: cannot decode image (PNG without a header)")
        position = 8
        while position + 12 <= len(data):  # libpng allocates what a chunk claims: a few bytes could claim GBs
            length, kind = struct.unpack_from(">I4s", data, position)
            position += 12 + length
            if kind == b"IEND":
                break
        if position > len(data) or kind != b"IEND":
            raise RowError(f"row {index}: cannot decode image (truncated PNG)")
        return struct.unpack_from(">II", data, 16)
    if data.startswith(JPEG_START):
        # A truncated JPEG decodes to a grey-filled picture with a warning only: refuse it here.
        if not data.rstrip(b"\0").endswith(JPEG_END):
            raise RowError(f"row {index}: cannot decode image (truncated JPEG: no end-of-image marker)")
        from PIL import Image, UnidentifiedImageError
        import io

        try:
            return Image.open(io.BytesIO(data)).size  # reads the header only
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise RowError(f"row {index}: cannot decode image ({_one_line(exc)})") from None
    raise RowError(f"row {index}: cannot decode image (not a JPEG or PNG)")


def decode(index, data, spec):
    if not isinstance(data, bytes) or not data:
        raise RowError(f"row {index}: empty image")
    if len(data) > spec["max_bytes"]:
        raise RowError(f"row {index}: image of {len(data)} bytes is larger than {spec['max_bytes']}")
    width, height = header_size(index, data)
    if width * height > spec["max_pixels"]:
        raise RowError(f"row {index}: image of {width}x{height} pixels is larger than {spec['max_pixels']} pixels")
    if not width or not height:
        raise RowError(f"row {index}: image of {width}x{height} pixels is empty")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise RowError(f"row {index}: cannot decode image ({_one_line(exc)})") from None
    if image is None or image.ndim != 3 or image.shape[2] != 3 or not image.size:
        raise RowError(f"row {index}: cannot decode image (corrupt or unsupported)")
    return image


def _one_line(exc):
    return (" ".join(str(exc).split()) or type(exc).__name__)[:200]


def letterbox(image, spec):
    """ultralytics' LetterBox(auto=False, center=True) on one BGR image, with Python's rounding."""
    height, width = image.shape[:2]
    new_h, new_w = spec["height"], spec["width"]
    ratio = min(new_h / height, new_w / width)
    unpad_w, unpad_h = max(round(width * ratio), 1), max(round(height * ratio), 1)
    dw, dh = (new_w - unpad_w) / 2, (new_h - unpad_h) / 2
    if (width, height) != (unpad_w, unpad_h):
        image = cv2.resize(image, (unpad_w, unpad_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    pad = spec["pad"]
    return cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(pad, pad, pad))


def to_input(images, spec):
    """Letterboxed BGR images -> RGB NCHW float / 255, one pass over the batch."""
    batch = np.stack(images)[..., ::-1].transpose(0, 3, 1, 2)
    pixels = np.ascontiguousarray(batch, dtype=np.float32) / np.float32(255)  # as ultralytics: float32, then / 255
    return pixels.astype(spec["dtype"], copy=False)


def images_to_input(raw_images, spec):
    """Decode and letterbox a batch of encoded images: {images, original sizes (height, width)}."""
    decoded = [decode(i, data, spec) for i, data in enumerate(raw_images)]
    sizes = np.array([image.shape[:2] for image in decoded], dtype=np.int32).reshape(-1, 2)
    return {spec["output"]: to_input([letterbox(image, spec) for image in decoded], spec), spec["size_output"]: sizes}


class TritonPythonModel:
    def initialize(self, args):
        global pb_utils
        import triton_python_backend_utils as pb_utils

        config = json.loads(args["model_config"])
        self.spec = json.loads(config["parameters"][STEP_PARAMETER]["string_value"])

    def execute(self, requests):
        responses = []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, RAW_INPUT).as_numpy().reshape(-1)
            try:
                if raw.size == 0:
                    raise RowError("empty request: send at least one image")
                outputs = images_to_input(raw.tolist(), self.spec)
            except RowError as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)))
                continue
            except Exception as exc:  # a fault of this step, not of the image: one line, no traceback
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    f"letterbox step failed: {type(exc).__name__}", pb_utils.TritonError.INTERNAL)))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(k, v) for k, v in outputs.items()]))
        return responses
