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
import zlib

import numpy as np

STEP_PARAMETER = "tritonforge_step"
RAW_INPUT = "RAW"
# Bounds checked before anything is decoded: a few KB of PNG can claim gigapixels.
MAX_IMAGE_BYTES = 32 << 20
MAX_PIXELS = 4096 * 4096
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The 8-bit PNG colour type whose pixels OpenCV and Pillow read alike, by channel count: grey, RGB.
PNG_FAST_COLOUR = {1: 0, 3: 2}
# Ancillary chunks a PNG may carry and still go to OpenCV, with the one length each must have (None:
# any). Pillow either has no reader for them or reads them without refusing at that length, and
# libpng only ever warns about them; any other chunk (iCCP, zTXt, iTXt, APNG's...) is left to Pillow,
# which reads some of them strictly, so OpenCV never takes a PNG that Pillow would refuse.
PNG_PLAIN_CHUNKS = {b"tEXt": None, b"gAMA": 4, b"cHRM": 32, b"sRGB": 1, b"pHYs": 9, b"eXIf": None,
                    b"bKGD": None, b"sBIT": None, b"tIME": None}
# By colour type; a grey PNG's transparent shade (tRNS) leaves OpenCV reading one channel (an RGB
# one gives it four, which Pillow reads).
PNG_PLAIN_CHUNKS_BY_COLOUR = {0: {**PNG_PLAIN_CHUNKS, b"tRNS": 2}, 2: PNG_PLAIN_CHUNKS}

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
    for anything else (other formats, sizes, bit depths, palettes, alpha, unusual chunks), which
    Pillow decodes.

    Only the header's size is trusted before decoding, and only when it is the model's own (and
    within MAX_PIXELS), so OpenCV never inflates more than one model-sized image; a PNG it cannot
    read goes to Pillow, which words the refusal.
    """
    if cv2 is None or len(data) < 33 or not data.startswith(PNG_SIGNATURE) or data[8:16] != b"\0\0\0\x0dIHDR":
        return None
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if ((width, height) != (spec["width"], spec["height"]) or width * height > MAX_PIXELS or depth != 8
            or colour != PNG_FAST_COLOUR.get(spec["channels"]) or compression or filtering or interlace > 1
            or not plain_png_chunks(data, colour)):
        return None
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    wanted = (height, width) if spec["channels"] == 1 else (height, width, 3)
    if pixels is None or pixels.dtype != np.uint8 or pixels.shape != wanted:
        return None
    if spec["channels"] == 3:
        pixels = pixels[:, :, ::-1]  # OpenCV's BGR -> RGB
    return pixels.reshape(height, width, spec["channels"])


def plain_png_chunks(data, colour):
    """Whether the PNG is IHDR, plain ancillary chunks, one run of IDAT, plain chunks, IEND, with
    every chunk whole (libpng allocates the length a chunk claims before reading it: 81 bytes could
    cost it 2 GB) and, up to the first IDAT, its checksum right (Pillow refuses a wrong one there,
    libpng only warns)."""
    plain = PNG_PLAIN_CHUNKS_BY_COLOUR[colour]
    position, end, stage = 8, len(data), 0  # stage 0: before IDAT, 1: in the IDAT run, 2: after it
    while position + 12 <= end:
        length, kind = struct.unpack_from(">I4s", data, position)
        following = position + 12 + length
        if following > end:
            return False
        if kind == b"IEND":
            return stage > 0
        if kind == b"IDAT":
            if stage == 2:
                return False
            stage = 1
        elif position > 8:  # IHDR is the first chunk, and only there
            if kind not in plain or plain[kind] not in (None, length):
                return False
            stage = 2 if stage else 0
        if stage == 0 and zlib.crc32(data[position + 4:following - 4]) != int.from_bytes(data[following - 4:following], "big"):
            return False
        position = following
    return False


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
