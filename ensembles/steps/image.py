"""Image preprocessing: encoded PNG/JPEG bytes -> the model's image tensor.

Config parameter ``tritonforge_step`` (JSON)::

    {"output": "input_layer", "dtype": "float32", "layout": "NHWC",   # or NCHW
     "height": 28, "width": 28, "channels": 1,                         # 1 = grayscale, 3 = RGB
     "scale": 0.00392156862745098, "mean": [0.0], "std": [1.0]}       # (pixel * scale - mean) / std
"""
import io
import json
import os
import struct

import numpy as np

STEP_PARAMETER = "tritonforge_step"
RAW_INPUT = "RAW"
# Bounds checked before anything is decoded: a few KB of PNG can claim gigapixels.
MAX_IMAGE_BYTES = 32 << 20
MAX_PIXELS = 4096 * 4096
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The 8-bit PNG colour type whose pixels OpenCV and Pillow read alike, by channel count: grey, RGB.
PNG_FAST_COLOUR = {1: 0, 3: 2}

try:  # OpenCV decodes a small PNG in ~7 us where Pillow takes ~55; without it Pillow does it all
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))
    import cv2

    cv2.setNumThreads(0)  # no thread pool in the step's process: Triton runs one execute at a time
except ImportError:
    cv2 = None


class RowError(ValueError):
    """An image that cannot be read; the message names the row."""


def png_at_size(data, spec):
    """The pixels of an 8-bit grey or RGB PNG already at the model's size, decoded by OpenCV; None
    for anything else (other formats, sizes, bit depths, palettes, alpha), which Pillow decodes.

    Only the header's size is trusted before decoding, and only when it is the model's own, so
    OpenCV never inflates more than one model-sized image; a PNG it cannot read goes to Pillow,
    which words the refusal.
    """
    if cv2 is None or len(data) < 26 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    if (width, height) != (spec["width"], spec["height"]) or depth != 8 or colour != PNG_FAST_COLOUR.get(spec["channels"]):
        return None
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    wanted = (height, width) if spec["channels"] == 1 else (height, width, 3)
    if pixels is None or pixels.dtype != np.uint8 or pixels.shape != wanted:
        return None
    if spec["channels"] == 3:
        pixels = pixels[:, :, ::-1]  # OpenCV's BGR -> RGB
    return pixels.reshape(height, width, spec["channels"])


def decode(index, data, spec):
    if not isinstance(data, bytes) or not data:
        raise RowError(f"row {index}: empty image")
    if len(data) > MAX_IMAGE_BYTES:
        raise RowError(f"row {index}: image of {len(data)} bytes is larger than {MAX_IMAGE_BYTES}")
    pixels = png_at_size(data, spec)
    if pixels is not None:
        return pixels
    return decode_with_pillow(index, data, spec)


def decode_with_pillow(index, data, spec):
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise RowError(f"row {index}: image of {width}x{height} pixels is larger than {MAX_PIXELS} pixels")
        mode = "L" if spec["channels"] == 1 else "RGB"
        if image.mode != mode:
            image = image.convert(mode)
        if image.size != (spec["width"], spec["height"]):
            image = image.resize((spec["width"], spec["height"]), Image.BILINEAR)
        pixels = np.asarray(image)  # uint8: the batch becomes float once, in normalise
    except RowError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise RowError(f"row {index}: cannot decode image ({_one_line(exc)})") from None
    return pixels.reshape(spec["height"], spec["width"], spec["channels"])


def _one_line(exc):
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def normalise(pixels, spec):
    """Scale and normalise a stack of HWC images, in the model's layout and dtype (one pass)."""
    mean = np.asarray(spec["mean"], np.float32)
    std = np.asarray(spec["std"], np.float32)
    batch = (pixels.astype(np.float32) * np.float32(spec["scale"]) - mean) / std
    if spec["layout"] == "NCHW":
        batch = batch.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(batch, dtype=spec["dtype"])


def images_to_input(raw_images, spec):
    """Decode, resize, scale and normalise a batch of encoded images."""
    return normalise(np.stack([decode(i, data, spec) for i, data in enumerate(raw_images)]), spec)


class TritonPythonModel:
    def initialize(self, args):
        global pb_utils
        import triton_python_backend_utils as pb_utils

        config = json.loads(args["model_config"])
        self.spec = json.loads(config["parameters"][STEP_PARAMETER]["string_value"])

    def execute(self, requests):
        images, counts, errors = [], [], []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, RAW_INPUT).as_numpy().reshape(-1)
            try:
                if raw.size == 0:
                    raise RowError("empty request: send at least one image")
                decoded = [decode(i, data, self.spec) for i, data in enumerate(raw.tolist())]
            except RowError as exc:
                counts.append(0)
                errors.append((str(exc), pb_utils.TritonError.INVALID_ARG))
                continue
            except Exception as exc:  # a fault of this step, not of the image: one line, no traceback
                counts.append(0)
                errors.append((f"image step failed: {type(exc).__name__}", pb_utils.TritonError.INTERNAL))
                continue
            images.extend(decoded)
            counts.append(len(decoded))
            errors.append(None)
        # scale, normalise and lay out every image of every request in one pass
        batch = normalise(np.stack(images), self.spec) if images else None
        if len(requests) == 1 and batch is not None:
            return [pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.spec["output"], batch)])]
        responses, offset = [], 0
        for count, error in zip(counts, errors):
            if error is not None:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(*error)))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.spec["output"], batch[offset:offset + count])]))
            offset += count
        return responses
