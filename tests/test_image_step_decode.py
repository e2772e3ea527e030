"""The image step's two decoders: OpenCV for plain 8-bit PNGs at the model's size, Pillow for the rest.

Whatever path an image takes, the step answers the same pixels and refuses with the same words as
Pillow alone (``decode_with_pillow``, the step before OpenCV), and OpenCV is never handed an image
whose header claims more than the model's size or a chunk longer than the data.
"""
from __future__ import annotations

import importlib.util
import io
import json
import re
import struct
import sys
import types
import zlib

import numpy as np
import pytest
from PIL import Image

from tritonforge.ensembles.library import load_template
from tritonforge.ensembles.library.base import STEPS_DIR

image = load_template("image")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

GREY = {"output": "input_layer", "dtype": "float32", "layout": "NHWC", "height": 28, "width": 28, "channels": 1,
        "scale": 1 / 255, "mean": [0.0], "std": [1.0]}
RGB = {**GREY, "channels": 3}
RNG = np.random.default_rng(7)
NOISE = RNG.integers(0, 256, (28, 28, 3), dtype=np.uint8)
DIGIT = np.zeros((28, 28), np.uint8)
DIGIT[6:22, 12:16] = 255
DIGIT[6:9, 9:16] = 200


def save(pixels: np.ndarray, mode: str | None = None, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    picture = Image.fromarray(pixels)
    (picture if mode is None else picture.convert(mode)).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) if crc is None else crc)


def png(pixels: np.ndarray, before: bytes = b"", after: bytes = b"", interlace: int = 0, width: int | None = None,
        height: int | None = None, idat: bytes | None = None) -> bytes:
    """An 8-bit grey (2-D pixels) or RGB PNG written chunk by chunk, with extra chunks around IDAT."""
    rows = pixels.reshape(pixels.shape[0], -1)
    if interlace:  # Adam7: seven passes, each its own scanlines
        scanlines = b""
        for x, y, dx, dy in [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]:
            part = pixels[y::dy, x::dx]
            scanlines += b"".join(b"\0" + row.tobytes() for row in part.reshape(part.shape[0], -1))
    else:
        scanlines = b"".join(b"\0" + row.tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", width or pixels.shape[1], height or pixels.shape[0], 8, 0 if pixels.ndim == 2 else 2,
                         0, 0, interlace)
    return (PNG_SIGNATURE + chunk(b"IHDR", header) + before + chunk(b"IDAT", zlib.compress(scanlines) if idat is None else idat)
            + after + chunk(b"IEND", b""))


def split_idat(pixels: np.ndarray, pieces: int) -> bytes:
    whole = png(pixels)
    stream = zlib.compress(b"".join(b"\0" + row.tobytes() for row in pixels.reshape(pixels.shape[0], -1)))
    step = -(-len(stream) // pieces)
    return whole[:33] + b"".join(chunk(b"IDAT", stream[i:i + step]) for i in range(0, len(stream), step)) + chunk(b"IEND", b"")


def outcome(decode, data: bytes, spec: dict):
    """The pixels (dtype, shape, bytes) or the refusal's type and words (object addresses left out)."""
    try:
        pixels = decode(0, data, spec)
    except Exception as exc:
        return type(exc).__name__, re.sub(r" at 0x[0-9a-f]+", "", str(exc))
    return pixels.dtype.str, pixels.shape, pixels.tobytes()


@pytest.fixture
def no_opencv_decode(monkeypatch):
    """OpenCV stays importable but fails the test if it is asked to decode anything."""
    def refuse(*args, **kwargs):
        raise AssertionError("cv2.imdecode was called")

    monkeypatch.setattr(image, "cv2", types.SimpleNamespace(imdecode=refuse, IMREAD_UNCHANGED=-1))


# (id, data, spec, whether OpenCV decodes it)
SAME_PIXELS = [
    ("grey at the model's size", save(DIGIT), GREY, True),
    ("noisy grey", save(NOISE[:, :, 0]), GREY, True),
    ("RGB at the model's size", save(NOISE), RGB, True),
    ("grey optimized", save(NOISE[:, :, 1], optimize=True), GREY, True),
    ("grey with dpi (pHYs)", save(DIGIT, dpi=(300, 300)), GREY, True),
    ("interlaced grey", png(NOISE[:, :, 0], interlace=1), GREY, True),
    ("interlaced RGB", png(NOISE, interlace=1), RGB, True),
    ("grey with a transparent shade", png(NOISE[:, :, 0], before=chunk(b"tRNS", b"\0\x07")), GREY, True),
    ("plain chunks around IDAT", png(DIGIT, before=chunk(b"sRGB", b"\0") + chunk(b"gAMA", struct.pack(">I", 45455))
                                     + chunk(b"tEXt", b"Software\0test"), after=chunk(b"tIME", bytes(7))), GREY, True),
    ("IDAT in five chunks", split_idat(NOISE[:, :, 2], 5), GREY, True),
    ("RGB for a grey model", save(NOISE), GREY, False),
    ("grey for an RGB model", save(NOISE[:, :, 0]), RGB, False),
    ("RGBA", save(NOISE, "RGBA"), RGB, False),
    ("RGBA for a grey model", save(NOISE, "RGBA"), GREY, False),
    ("palette", save(NOISE, "P"), RGB, False),
    ("palette for a grey model", save(NOISE, "P"), GREY, False),
    ("grey with alpha", save(NOISE[:, :, 0], "LA"), GREY, False),
    ("16-bit grey", save(NOISE[:, :, 0].astype(np.uint16) * 257, "I;16"), GREY, False),
    ("1-bit", save(NOISE[:, :, 0], "1"), GREY, False),
    ("RGB with a transparent colour", png(NOISE, before=chunk(b"tRNS", b"\0\1\0\2\0\3")), RGB, False),
    ("grey JPEG", save(DIGIT, fmt="JPEG"), GREY, False),
    ("RGB JPEG", save(NOISE, fmt="JPEG", quality=90), RGB, False),
    ("another size: resized", save(NOISE[:20, :17, 0]), GREY, False),
    ("larger RGB resized to grey", save(np.repeat(np.repeat(NOISE, 2, 0), 2, 1)), GREY, False),
    ("iCCP profile", save(NOISE, icc_profile=b"not a real profile"), RGB, False),
    ("APNG", (lambda b: (Image.fromarray(DIGIT).save(b, format="PNG", save_all=True,
                                                      append_images=[Image.fromarray(255 - DIGIT)]), b.getvalue())[1])(io.BytesIO()),
     GREY, False),
    ("no IEND: libpng refuses, Pillow reads", save(DIGIT)[:-12], GREY, False),
    ("bad IDAT checksum: libpng refuses, Pillow reads", png(DIGIT)[:-16] + b"\0\0\0\0" + png(DIGIT)[-12:], GREY, False),
]


@pytest.mark.parametrize("data, spec, fast", [case[1:] for case in SAME_PIXELS], ids=[case[0] for case in SAME_PIXELS])
def test_every_image_gives_the_pixels_pillow_gives(data, spec, fast):
    expected = outcome(image.decode_with_pillow, data, spec)
    assert expected[0] == "|u1" and expected[1] == (28, 28, spec["channels"])  # Pillow reads every one of them
    assert outcome(image.decode, data, spec) == expected
    assert (image.png_at_size(data, spec) is not None) is fast  # the path is the one meant, not skipped
    if fast:  # and what OpenCV gives is byte for byte Pillow's, through the whole step too
        assert image.png_at_size(data, spec).tobytes() == expected[2]
        assert np.array_equal(image.images_to_input([data] * 3, spec),
                              image.normalise(np.stack([image.decode_with_pillow(0, data, spec)] * 3), spec))


def test_a_digit_png_decodes_to_its_pixels():
    assert np.array_equal(image.decode(0, save(DIGIT), GREY)[:, :, 0], DIGIT)
    assert np.array_equal(image.decode(0, save(NOISE), RGB), NOISE)  # RGB stays RGB (OpenCV reads BGR)


GAMA = struct.pack(">I", 45455)
# PNGs that libpng reads (at most warning) but Pillow refuses: the step must refuse them as Pillow words it.
PILLOW_REFUSES = [
    ("bad checksum on an ancillary chunk before IDAT", png(DIGIT, before=chunk(b"tEXt", b"a\0b", crc=1)), GREY),
    ("bad checksum on gAMA", png(DIGIT, before=chunk(b"gAMA", GAMA, crc=7)), GREY),
    ("gAMA too short", png(DIGIT, before=chunk(b"gAMA", GAMA[:3])), GREY),
    ("gAMA too short after IDAT", png(DIGIT, after=chunk(b"gAMA", GAMA[:2])), GREY),
    ("pHYs too short", png(DIGIT, before=chunk(b"pHYs", bytes(5))), GREY),
    ("sRGB empty", png(DIGIT, before=chunk(b"sRGB", b"")), GREY),
    ("zTXt of an unknown compression", png(DIGIT, before=chunk(b"zTXt", b"k\0\x05data")), GREY),
    ("zTXt of an unknown compression after IDAT", png(DIGIT, after=chunk(b"zTXt", b"k\0\x05data")), GREY),
    ("an RGB tRNS too short", png(NOISE, before=chunk(b"tRNS", b"\0\1")), RGB),
    ("a grey tRNS too short", png(NOISE[:, :, 0], before=chunk(b"tRNS", b"\1")), GREY),
    ("IHDR checksum", png(DIGIT)[:29] + b"\0\0\0\0" + png(DIGIT)[33:], GREY),
    ("IHDR filter method", png(DIGIT)[:8] + chunk(b"IHDR", struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 1, 0)) + png(DIGIT)[33:], GREY),
]


@pytest.mark.parametrize("data, spec", [case[1:] for case in PILLOW_REFUSES], ids=[case[0] for case in PILLOW_REFUSES])
def test_what_pillow_refuses_is_refused_in_its_words(data, spec):
    expected = outcome(image.decode_with_pillow, data, spec)
    assert expected[0] == "RowError" and expected[1].startswith("row 0: cannot decode image (")
    assert image.png_at_size(data, spec) is None
    assert outcome(image.decode, data, spec) == expected


@pytest.mark.parametrize("data, spec, message", [
    (png(DIGIT, width=100_000, height=100_000), GREY, "row 0: cannot decode image (Image size (10000000000 pixels) exceeds limit"),
    (png(DIGIT, width=4097, height=4097), GREY, "row 0: image of 4097x4097 pixels is larger than 16777216 pixels"),
    # a model larger than the bound: its own size is refused too, and not by OpenCV
    (png(DIGIT, width=5000, height=5000), {**GREY, "width": 5000, "height": 5000},
     "row 0: image of 5000x5000 pixels is larger than 16777216 pixels"),
    (png(DIGIT, width=28, height=1_000_000), GREY, "row 0: image of 28x1000000 pixels is larger than 16777216 pixels"),
], ids=["100000x100000", "4097x4097", "a 5000x5000 model", "28x1000000"])
def test_a_header_claiming_too_many_pixels_is_refused_before_decoding(no_opencv_decode, data, spec, message):
    with pytest.raises(image.RowError) as error:
        image.images_to_input([data], spec)
    assert str(error.value).startswith(message)


@pytest.mark.parametrize("length", [1 << 20, 0x7FFFFFF0])
def test_a_chunk_longer_than_the_image_is_never_given_to_opencv(no_opencv_decode, length):
    # 81 bytes whose tEXt chunk claims 2 GB: libpng would allocate it all before failing (~2 s, 2 GB).
    data = save(DIGIT)[:33] + struct.pack(">I", length) + b"tEXt" + save(DIGIT)[33:]
    with pytest.raises(image.RowError, match=r"^row 0: cannot decode image \("):
        image.decode(0, data, GREY)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # a mutated header, refused by Pillow
def test_mutated_pngs_are_answered_or_refused_as_pillow_does():
    """Random bytes changed, inserted or cut, then (mostly) every chunk's checksum put right, so the
    damage reaches the decoders: the step answers exactly what Pillow alone answers."""
    rng = np.random.default_rng(13)
    bases = [(save(DIGIT), GREY), (save(NOISE[:, :, 0]), GREY), (save(NOISE), RGB),
             (png(DIGIT, before=chunk(b"gAMA", GAMA) + chunk(b"tEXt", b"k\0v"), after=chunk(b"tIME", bytes(7))), GREY)]
    fast = 0
    for trial in range(1000):
        base, spec = bases[trial % len(bases)]
        data = bytearray(base)
        for _ in range(rng.integers(1, 4)):
            at = int(rng.integers(8, len(data)))
            action = trial // len(bases) % 3
            if action == 0:
                data[at] = rng.integers(0, 256)
            elif action == 1:
                data[at:at] = bytes(rng.integers(0, 256, rng.integers(1, 6), dtype=np.uint8))
            else:
                data[at] ^= 1 << int(rng.integers(0, 8))
        if trial % 4:
            data = _with_checksums(bytes(data))
        data = bytes(data)
        fast += image.png_at_size(data, spec) is not None
        assert outcome(image.decode, data, spec) == outcome(image.decode_with_pillow, data, spec), f"trial {trial}"
    assert fast >= 10  # some damaged PNGs did reach OpenCV


def _with_checksums(data: bytes) -> bytes:
    out, position = bytearray(data[:8]), 8
    while position + 12 <= len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        if position + 12 + length > len(data):
            break
        out += data[position:position + 8 + length] + struct.pack(">I", zlib.crc32(data[position + 4:position + 8 + length]))
        position += 12 + length
    return bytes(out + data[position:])


def test_without_opencv_the_step_decodes_everything_with_pillow(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 raises ImportError
    spec = importlib.util.spec_from_file_location("image_step_without_cv2", STEPS_DIR / "image.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.cv2 is None and module.png_at_size(save(DIGIT), GREY) is None
    for _, data, spec, _ in SAME_PIXELS:
        assert outcome(module.decode, data, spec) == outcome(image.decode, data, spec)


class _Fake:
    """Just enough of triton_python_backend_utils for execute()."""

    class TritonError:
        INVALID_ARG, INTERNAL = "INVALID_ARG", "INTERNAL"

        def __init__(self, message, code=None):
            self.message, self.code = message, code

    class Tensor:
        def __init__(self, name, array):
            self.name, self.array = name, array

    class InferenceResponse:
        def __init__(self, output_tensors=(), error=None):
            self.output_tensors, self.error = list(output_tensors), error

    @staticmethod
    def get_input_tensor_by_name(request, name):
        assert name == "RAW"
        return types.SimpleNamespace(as_numpy=lambda: np.array(request, dtype=object).reshape(-1, 1))


def test_execute_answers_each_request_alone(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _Fake)
    model = image.TritonPythonModel()
    model.initialize({"model_config": json.dumps({"parameters": {"tritonforge_step": {"string_value": json.dumps(GREY)}}})})
    good, jpeg = save(DIGIT), save(DIGIT, fmt="JPEG")
    requests = [[good, good], [good, b"\x89PNG\r\n\x1a\n broken"], [jpeg], [png(DIGIT, width=9000, height=9000)], [good]]
    responses = model.execute(requests)
    assert len(responses) == 5
    errors = [r.error for r in responses]
    assert [e is None for e in errors] == [True, False, True, False, True]
    assert errors[1].code == "INVALID_ARG" and errors[1].message.startswith("row 1: cannot decode image (")
    assert "\n" not in errors[1].message
    assert errors[3].code == "INVALID_ARG" and errors[3].message == "row 0: image of 9000x9000 pixels is larger than 16777216 pixels"
    expected = image.images_to_input([good, good, jpeg, good], GREY)
    answered = np.concatenate([r.output_tensors[0].array for r in responses if r.error is None])
    assert [r.output_tensors[0].array.shape[0] for r in responses if r.error is None] == [2, 1, 1]
    assert answered.dtype == np.float32 and np.array_equal(answered, expected)
