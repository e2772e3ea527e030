"""The detection steps in-process: ultralytics' square letterbox on non-square images, and the
postprocess (confidence, per-class NMS, max_det, boxes back to the original pixels)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tritonforge.ensembles.library import load_template

LETTERBOX = load_template("letterbox")
POST = load_template("detect_post")
PAD = np.float32(114) / np.float32(255)
SPEC = {"output": "images", "dtype": "float32", "height": 160, "width": 160, "pad": 114, "size_output": "IMAGE_SIZE",
        "max_bytes": 1 << 20, "max_pixels": 1 << 20}
POST_SPEC = {"input": "output0", "size_input": "IMAGE_SIZE", "layout": "v8", "names": ["square", "circle", "triangle"],
             "height": 160, "width": 160, "conf": 0.25, "iou": 0.7, "max_det": 300}


def png(width: int, height: int, rgb=(255, 0, 0)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), rgb).save(buffer, format="PNG")
    return buffer.getvalue()


# (width, height) -> (top, bottom, left, right) padding of the 160x160 input, as ultralytics rounds it
PADDING = [
    ((320, 180), (35, 35, 0, 0)),  # wide: 160x90
    ((150, 260), (0, 0, 34, 34)),  # tall: 92x160
    ((100, 161), (0, 0, 30, 31)),  # odd padding: 99x160, the extra column on the right
    ((160, 160), (0, 0, 0, 0)),  # the model's own size: no resize, no padding
    ((40, 20), (40, 40, 0, 0)),  # small: scaled up to 160x80
]


@pytest.mark.parametrize("size, padding", PADDING, ids=[f"{w}x{h}" for (w, h), _ in PADDING])
def test_letterbox_keeps_the_ratio_and_pads_114_around_the_centred_image(size, padding):
    out = LETTERBOX.images_to_input([png(*size)], SPEC)
    image, original = out["images"], out["IMAGE_SIZE"]
    assert image.shape == (1, 3, 160, 160) and image.dtype == np.float32
    assert original.tolist() == [[size[1], size[0]]]
    top, bottom, left, right = padding
    inside = np.ones((160, 160), bool)
    inside[:top], inside[160 - bottom:], inside[:, :left], inside[:, 160 - right:] = False, False, False, False
    assert (image[0][:, ~inside] == PAD).all()
    # RGB order, / 255: the red picture is (1, 0, 0) inside
    assert (image[0, 0][inside] == 1.0).all() and (image[0, 1:][:, inside] == 0.0).all()


# (width, height, box in the 160x160 input) -> the box in the original image's pixels
MAPPING = [
    ((320, 180), [10, 45, 50, 85], [20, 20, 100, 100]),  # gain 0.5, 35 rows of padding above
    ((150, 260), [34, 0, 126, 160], [0, 0, 150, 260]),  # the whole tall image
    ((320, 180), [0, 0, 160, 160], [0, 0, 320, 180]),  # over the padding: clipped to the image
    ((160, 160), [1.5, 2.5, 3.5, 4.5], [1.5, 2.5, 3.5, 4.5]),
]


@pytest.mark.parametrize("size, box, expected", MAPPING)
def test_boxes_are_mapped_back_to_the_original_pixels(size, box, expected):
    mapped = POST.scale_boxes(np.array([box], np.float32), (size[1], size[0]), POST_SPEC)
    np.testing.assert_allclose(mapped[0], expected, atol=0.02)


def head(*anchors) -> np.ndarray:
    """A v8 head output for one image: anchors of (cx, cy, w, h, score of each class)."""
    return np.array(anchors, np.float32).T[None]


def run_post(pred, spec=POST_SPEC, size=(160, 160)):
    return POST.detections(pred, np.array([size], np.int32), spec)


def test_overlapping_boxes_of_one_class_keep_the_best_and_other_classes_keep_theirs():
    out = run_post(head([50, 50, 40, 40, 0.9, 0, 0],
                        [52, 50, 40, 40, 0.8, 0, 0],  # IoU ~0.9 with the first, same class: suppressed
                        [52, 50, 40, 40, 0, 0.6, 0],  # same place, another class: kept
                        [120, 120, 20, 20, 0, 0, 0.2],  # under the confidence threshold
                        [120, 120, 20, 20, 0, 0, 0.3]))
    count = int(out["COUNT"][0, 0])
    assert count == 3
    assert out["CLASSES"][0].tolist() == [0, 1, 2] and [n.decode() for n in out["NAMES"][0]] == ["square", "circle", "triangle"]
    np.testing.assert_allclose(out["SCORES"][0], [0.9, 0.6, 0.3], rtol=1e-6)
    np.testing.assert_allclose(out["BOXES"][0, 0], [30, 30, 70, 70])


def test_boxes_under_the_iou_threshold_are_both_kept():
    out = run_post(head([50, 50, 40, 40, 0.9, 0, 0], [75, 50, 40, 40, 0.8, 0, 0]))  # IoU 15/65 ~0.23
    assert int(out["COUNT"][0, 0]) == 2


def test_max_det_keeps_the_best_boxes():
    anchors = [[10 + 20 * i, 80, 10, 10, 0.3 + 0.05 * i, 0, 0] for i in range(7)]
    out = run_post(head(*anchors), {**POST_SPEC, "max_det": 3})
    np.testing.assert_allclose(out["SCORES"][0], [0.6, 0.55, 0.5], rtol=1e-6)


def test_no_detection_is_a_count_of_zero_with_empty_rows():
    out = run_post(head([50, 50, 40, 40, 0.1, 0.1, 0.1]))
    assert out["COUNT"].tolist() == [[0]] and out["BOXES"].shape == (1, 0, 4) and out["NAMES"].shape == (1, 0)


def test_v5_layout_scores_are_class_times_objectness():
    pred = np.array([[50, 50, 40, 40, 0.5, 0.9, 0.1, 0.0],  # 0.45: kept, class 0
                     [120, 120, 20, 20, 0.9, 0.1, 0.2, 0.25]], np.float32)[None]  # best 0.225: dropped
    out = run_post(pred, {**POST_SPEC, "layout": "v5"})
    assert int(out["COUNT"][0, 0]) == 1 and out["CLASSES"][0].tolist() == [0]
    np.testing.assert_allclose(out["SCORES"][0], [0.45], rtol=1e-6)


# (settings, the one-line refusal)
BAD_SETTINGS = [
    ({"confidence": 0.5}, "shapes.onnx: detect: unknown key 'confidence' (allowed: conf, iou, max_det, names, pad, max_bytes, max_pixels, layout, imgsz, stride)"),
    ({"conf": 1.5}, "shapes.onnx: detect: 'conf' must be a number in [0, 1], got 1.5"),
    ({"iou": "high"}, "shapes.onnx: detect: 'iou' must be a number in [0, 1], got 'high'"),
    ({"max_det": 0}, "shapes.onnx: detect: 'max_det' must be a positive integer, got 0"),
    ({"max_pixels": True}, "shapes.onnx: detect: 'max_pixels' must be a positive integer, got True"),
    ({"pad": 300}, "shapes.onnx: detect: 'pad' must be a grey level 0..255, got 300"),
    ({"names": ["a"]}, "shapes.onnx: detect: 'names' must list 3 class names, one per class of the model"),
]


@pytest.mark.parametrize("settings, message", BAD_SETTINGS, ids=[m.split(": ", 2)[2] for _, m in BAD_SETTINGS])
def test_bad_detect_settings_are_refused_in_one_line(settings, message):
    from tritonforge.ensembles.library.detect import detect_settings
    from tritonforge.errors import BuildError

    with pytest.raises(BuildError) as error:
        detect_settings("shapes.onnx", settings, tuple(POST_SPEC["names"]))
    assert str(error.value) == message


def test_settings_override_thresholds_and_names_on_the_real_export():
    """A higher confidence answers exactly ultralytics' boxes above it (NMS only ever suppresses a box
    by a better one), named by the settings' names."""
    from fixtures_detect import YOLO_FIXTURE, ultralytics_detections
    from tritonforge.converters import REGISTRY
    from tritonforge.converters.probe import FileProbe
    from tritonforge.ensembles.library.detect import detect_settings, steps
    from tritonclient.grpc import model_config_pb2 as mc

    source = YOLO_FIXTURE / "shapes_dynamic.onnx"
    probe = FileProbe(source)
    adapter = REGISTRY.detect(probe)
    model = adapter.load(probe, None)
    detector = adapter.detector(model)
    config = mc.ModelConfig(name="shapes", max_batch_size=8)
    config.input.add(name="images", dims=[3, 160, 160])
    config.output.add(name="output0", dims=[7, -1])
    renamed = ["box", "disc", "wedge"]
    letterbox, post = steps(detector, detect_settings("shapes.onnx", {"conf": 0.9, "names": renamed}, detector.names), config)
    for image, expected in ultralytics_detections().items():
        features = letterbox.run({"RAW": np.array([[(YOLO_FIXTURE / "images" / image).read_bytes()]], dtype=object)})
        head = adapter.reference(model, {"images": features["images"]}, None)
        out = post.run({**head, "IMAGE_SIZE": features["IMAGE_SIZE"]})
        above = [i for i, s in enumerate(expected["scores"]) if s > 0.9]
        count = int(out["COUNT"][0, 0])
        assert count == len(above), image
        assert [n.decode() for n in out["NAMES"][0, :count]] == [renamed[expected["classes"][i]] for i in above]
        np.testing.assert_allclose(out["BOXES"][0, :count], [expected["boxes"][i] for i in above], atol=1.5)
