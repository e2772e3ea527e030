"""The step templates' batch functions: what the served steps compute, row by row and field by field."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tritonforge.ensembles.library import load_template

tabular = load_template("tabular")
image = load_template("image")

CHURN = {"format": "auto", "allow_missing": False, "outputs": [
    {"name": "city", "dtype": "string", "fields": ["city"]},
    {"name": "age", "dtype": "float32", "fields": ["age"]},
    {"name": "income", "dtype": "float32", "fields": ["income"]},
]}
IRIS = {"format": "auto", "allow_missing": True, "outputs": [
    {"name": "input", "dtype": "float32", "fields": ["sepal_length", "sepal_width", "petal_length", "petal_width"]},
]}
COUNTS = {"format": "auto", "allow_missing": True, "outputs": [
    {"name": "count", "dtype": "int64", "fields": ["count"]},
    {"name": "score", "dtype": "float32", "fields": ["score"]},
]}


def test_json_and_csv_rows_give_the_same_tensors():
    rows = [b'{"city": "nice", "age": 30, "income": 2500.5}', b"nice,30,2500.5"]
    arrays = tabular.rows_to_inputs(rows, CHURN)
    assert arrays["city"].tolist() == [[b"nice"], [b"nice"]] and arrays["city"].dtype == object
    assert arrays["age"].tolist() == [[30.0], [30.0]] and arrays["income"].dtype == np.float32


def test_missing_numbers_become_nan_where_the_model_accepts_them():
    arrays = tabular.rows_to_inputs([b'{"sepal_length": 1, "petal_width": 2}', b"1,,,2"], IRIS)
    assert np.isnan(arrays["input"][:, 1:3]).all() and arrays["input"][:, [0, 3]].tolist() == [[1, 2], [1, 2]]


def test_a_float_beside_an_integer_input_still_takes_nan():
    arrays = tabular.rows_to_inputs([b'{"count": 2, "score": NaN}', b"3,"], COUNTS)
    assert arrays["count"].tolist() == [[2], [3]] and arrays["count"].dtype == np.int64
    assert np.isnan(arrays["score"]).all()


def _row_by_row(rows, spec):
    return tabular.to_arrays(tabular.read_rows(rows, spec), spec)


@pytest.mark.parametrize("rows, spec", [
    ([b'{"city": "nice", "age": 30, "income": 2500.5}', b'{"income": 1e3, "age": 61, "city": "paris"}'], CHURN),
    ([b"nice,30,2500.5", b" lyon,44,3000 ", b"paris,1e2,-0.25"], CHURN),
    ([b'{"sepal_length": 5.1, "sepal_width": NaN, "petal_length": 1, "petal_width": 0.2}'] * 3, IRIS),
    ([b"5.1,3.5,1.4,0.2", b"6,nan,4,1.3"], IRIS),
], ids=["JSON rows", "CSV lines", "JSON NaN where allowed", "CSV nan where allowed"])
def test_a_batch_read_in_one_pass_gives_the_row_by_row_tensors(rows, spec):
    fast = tabular.read_batch(rows, spec)
    assert fast is not None  # nothing unusual: the one-pass reader took it
    slow = _row_by_row(rows, spec)
    for name, array in slow.items():
        assert fast[name].dtype == array.dtype and fast[name].shape == array.shape
        assert np.array_equal(fast[name], array, equal_nan=array.dtype != object)


@pytest.mark.parametrize("rows", [
    # Rows that would read as two good rows only when joined: each alone is refused.
    [b'{"city": "a", "age": 1, "income": 2}, {"city": "b"', b'"age": 3, "income": 4}'],
    [b'{"city": "x", "age": 1, "income": 2}, {"city": "}', b'{", "age": 3, "income": 4}'],
    [b'{"city": "x", "age": [{}', b'{}], "income": 4}', b'{"city": "y", "age": 1, "income": 2}, {"city": "z", "age": 1, "income": 2}'],
    [b'"nice', b'lyon",30,2500'],  # a CSV quote left open
])
def test_no_row_borrows_another_rows_text(rows):
    assert tabular.read_batch(rows, CHURN) is None
    with pytest.raises(tabular.RowError, match="^row 0: "):
        tabular.rows_to_inputs(rows, CHURN)


BAD_ROWS = [
    ("broken JSON", [b'{"city": "nice", "age": 3'], CHURN, "row 0: not valid JSON"),
    ("missing field", [b'{"city": "nice", "age": 30}'], CHURN, "row 0: missing field 'income'"),
    ("number given as text", [b'{"city": "nice", "age": "old", "income": 1}'], CHURN, "row 0: field 'age' must be a number, got \"old\""),
    ("string given as number", [b'{"city": 7, "age": 1, "income": 1}'], CHURN, "row 0: field 'city' must be a string, got 7"),
    ("boolean for a number", [b'{"city": "x", "age": true, "income": 1}'], CHURN, "row 0: field 'age' must be a number, got true"),
    ("unknown field", [b'{"city": "x", "age": 1, "income": 1, "zip": 9}'], CHURN, "row 0: unknown field 'zip'"),
    ("CSV with too few values", [b'{"city": "x", "age": 1, "income": 1}', b"nice,30"], CHURN, "row 1: CSV row has 2 values, expected 3"),
    ("JSON array, not object", [b"[1, 2]"], CHURN, "row 0: a JSON row must be an object"),
    ("invalid UTF-8", [b'{"city": "\xff\xfe", "age": 1, "income": 1}'], CHURN, "row 0: not UTF-8 text (byte 10)"),
    ("JSON nested thousands deep", [b"[" * 5000 + b"]" * 5000], CHURN, "row 0: JSON nested too deeply"),
    ("a number of 5000 digits", [b'{"city": "x", "age": ' + b"9" * 5000 + b', "income": 1}'], CHURN, "row 0: not valid JSON"),
    ("a float beyond float64", [b"x,1e999999,1"], CHURN, "row 0: field 'age' must be a finite number"),
    ("NaN where the model takes none", [b'{"city": "x", "age": NaN, "income": 1}'], CHURN,
     "row 0: field 'age' is NaN, and this model takes no missing values"),
    ("nan in CSV where the model takes none", [b"x,nan,1"], CHURN, "row 0: field 'age' is NaN"),
    ("Infinity even where NaN is allowed", [b'{"sepal_length": Infinity}'], IRIS, "row 0: field 'sepal_length' must be a finite number"),
    ("a lone surrogate in a string", [b'{"city": "\\ud800", "age": 1, "income": 1}'], CHURN,
     "row 0: field 'city' is not valid Unicode text (a lone surrogate)"),
    ("NaN in an integer field where floats may miss", [b'{"count": 2, "score": 1}', b'{"count": NaN, "score": 1}'], COUNTS,
     "row 1: field 'count' is NaN, and input 'count' takes integers, which have no missing value"),
    ("an empty integer field where floats may miss", [b",1"], COUNTS, "row 0: missing field 'count'"),
    ("a row over the length bound", [b"x," + b"1" * (70 << 10) + b",1"], CHURN, "row 0: 71684 bytes is longer than 65536"),
]


@pytest.mark.parametrize("case, rows, spec, message", BAD_ROWS, ids=[r[0] for r in BAD_ROWS])
def test_bad_rows_are_named_by_row_and_field(case, rows, spec, message):
    assert tabular.read_batch(rows, spec) is None  # the one-pass reader leaves every bad row to read_rows
    with pytest.raises(tabular.RowError) as error:
        tabular.rows_to_inputs(rows, spec)
    assert str(error.value).startswith(message)


def png(height: int, width: int, mode: str = "L", noise: bool = False) -> bytes:
    buffer = io.BytesIO()
    if noise:
        pixels = np.random.default_rng(0).integers(0, 256, (height, width), dtype=np.uint8)
        Image.fromarray(pixels).save(buffer, format="PNG")
    else:
        Image.new(mode, (width, height), (128,) * len(mode)).save(buffer, format="PNG")
    return buffer.getvalue()


def claims(width: int, height: int) -> bytes:
    """A 60-byte PNG whose header claims width x height pixels (a decompression bomb's opening)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


DIGITS = {"output": "input_layer", "dtype": "float32", "layout": "NHWC", "height": 28, "width": 28, "channels": 1,
          "scale": 1 / 255, "mean": [0.0], "std": [1.0]}


def test_image_is_resized_scaled_and_laid_out_like_the_model():
    batch = image.images_to_input([png(56, 40, "RGB"), png(28, 28)], DIGITS)
    assert batch.shape == (2, 28, 28, 1) and batch.dtype == np.float32
    assert np.allclose(batch, 128 / 255)
    nchw = image.images_to_input([png(10, 10, "RGB")], {**DIGITS, "layout": "NCHW", "channels": 3, "height": 8, "width": 8,
                                                       "mean": [0.5] * 3, "std": [0.5] * 3})
    assert nchw.shape == (1, 3, 8, 8) and np.allclose(nchw, (128 / 255 - 0.5) / 0.5, atol=1e-6)


@pytest.mark.parametrize("data, message", [
    (png(28, 28, noise=True)[:400], "row 0: cannot decode image"),
    (b"GIF89a not really", "row 0: cannot decode image"),
    (b"", "row 0: empty image"),
    (claims(4097, 4097), "row 0: image of 4097x4097 pixels is larger than 16777216 pixels"),
    (claims(100_000, 100_000), "row 0: cannot decode image (Image size (10000000000 pixels) exceeds limit"),
])
def test_unreadable_images_are_named_by_row(data, message):
    with pytest.raises(image.RowError) as error:
        image.images_to_input([data], DIGITS)
    assert str(error.value).startswith(message)


def encoded(pixels: np.ndarray, mode: str | None = None, fmt: str = "PNG", **save) -> bytes:
    buffer = io.BytesIO()
    picture = Image.fromarray(pixels) if mode is None else Image.fromarray(pixels).convert(mode)
    picture.save(buffer, format=fmt, **save)
    return buffer.getvalue()


NOISE = np.random.default_rng(1).integers(0, 256, (28, 28, 3), dtype=np.uint8)
RGB = {**DIGITS, "channels": 3}


@pytest.mark.parametrize("data, spec", [
    (encoded(NOISE[:, :, 0]), DIGITS),                                   # grey, the model's size: OpenCV
    (encoded(NOISE), RGB),                                               # RGB, the model's size: OpenCV
    (encoded(NOISE[:, :, 0], optimize=True), DIGITS),
    (encoded(NOISE[:, :, 0])[:-12], DIGITS),                             # no IEND: OpenCV refuses, Pillow reads it
    (encoded(NOISE), DIGITS),                                            # RGB for a grey model: Pillow converts
    (encoded(NOISE[:, :, 0]), RGB),                                      # grey for an RGB model
    (encoded(NOISE, "RGBA"), RGB),                                       # alpha
    (encoded(NOISE, "P"), RGB),                                          # palette
    (encoded(NOISE[:, :, 0], "LA"), DIGITS),                             # grey with alpha
    (encoded((NOISE[:, :, 0].astype(np.uint16) * 257), "I;16"), DIGITS),  # 16-bit
    (encoded(NOISE[:20, :20, 0]), DIGITS),                               # another size: resized
    (encoded(NOISE[:, :, 0], fmt="JPEG"), DIGITS),                       # JPEG
], ids=["grey", "rgb", "grey-optimized", "no-end", "rgb-to-grey", "grey-to-rgb", "rgba", "palette", "grey-alpha", "16-bit",
        "resize", "jpeg"])
def test_every_image_decodes_to_what_pillow_gives(data, spec):
    assert np.array_equal(image.decode(0, data, spec), image.decode_with_pillow(0, data, spec))


def test_a_png_at_the_models_size_is_decoded_without_pillow():
    # The fast path is taken (OpenCV is installed with the project), not silently skipped.
    assert image.png_at_size(encoded(NOISE[:, :, 0]), DIGITS) is not None
    assert image.png_at_size(encoded(NOISE), RGB) is not None
    assert image.png_at_size(encoded(NOISE[:20, :20, 0]), DIGITS) is None


@pytest.mark.parametrize("data, message", [
    (encoded(NOISE[:, :, 0])[:300], "row 0: cannot decode image"),       # cut inside the pixels
    (claims(28, 28), "row 0: cannot decode image"),                      # a model-sized header, no pixels
], ids=["truncated", "empty-pixels"])
def test_a_broken_png_at_the_models_size_is_refused_as_pillow_words_it(data, message):
    with pytest.raises(image.RowError) as error:
        image.images_to_input([data], DIGITS)
    assert str(error.value).startswith(message)
