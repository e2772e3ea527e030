"""YOLO-style ONNX files without ultralytics' metadata: a sidecar's ``detect:`` group declares the
head (layout v8 or v5, imgsz, stride, names), and the detection ensemble built around it answers
the boxes ultralytics gives for the same weights. Without a declaration such a file is a plain ONNX
model (its raw head, as the file answers it), and where generic rows cannot run it the refusal says
how to declare it."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from fixtures_detect import (DECLARATIONS, DECLARED_DETECTOR, NAMES, V5_DETECTOR, YOLO_FIXTURE, as_v5,
                             ultralytics_detections, without_metadata)
from test_detect import IMAGES, PROTOCOLS, assert_same_detections, detect, image_bytes

DECLARED = (DECLARED_DETECTOR, V5_DETECTOR)


def plain(tmp_path, static: bool = False):
    return without_metadata(YOLO_FIXTURE / ("shapes.onnx" if static else "shapes_dynamic.onnx"), tmp_path / "plain.onnx")


def load(path, **detect):
    from tritonforge.converters import REGISTRY
    from tritonforge.converters.probe import FileProbe
    from tritonforge.sidecar import Sidecar

    sidecar = Sidecar(detect=detect or None)
    probe = FileProbe(path, sidecar=sidecar)
    adapter = REGISTRY.detect(probe)
    return adapter, adapter.load(probe, sidecar)


@pytest.mark.parametrize("name", DECLARED)
def test_a_declared_head_is_built_as_a_detector_with_its_ensemble(built_detect, name):
    from tritonforge.repository import config as config_file

    repo, results = built_detect
    assert {n: results[n].status.name for n in (name, f"{name}_letterbox", f"{name}_detect_post", f"{name}_detect")} == {
        name: "OK", f"{name}_letterbox": "OK", f"{name}_detect_post": "OK", f"{name}_detect": "OK"}, results[name].reason
    assert results[name].framework == "yolo"
    head = "?x7x?" if name == DECLARED_DETECTOR else "?x?x8"
    assert results[name].signature.describe() == f"images:float32[?x3x160x160] -> output0:float32[{head}]"
    post = config_file.read(repo / f"{name}_detect_post").parameters["tritonforge_step"].string_value
    assert f'"layout": "{"v8" if name == DECLARED_DETECTOR else "v5"}"' in post
    assert (repo / f"{name}_detect" / "labels.txt").read_text().split() == NAMES


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("name", DECLARED)
def test_the_declared_detectors_ensembles_answer_ultralytics_detections(detect_server, name, protocol):
    """The same weights, declared as v8 or re-laid as v5 with objectness: the same boxes as
    ultralytics' predict on the export, every fixture image, one request with all of them."""
    answer = detect(detect_server, protocol, [image_bytes(i) for i in IMAGES], model=f"{name}_detect")
    for row, image in enumerate(IMAGES):
        assert_same_detections(answer, ultralytics_detections()[image], row)


def test_the_v5_graph_is_the_v8_head_relaid(tmp_path):
    """The fixture's v5 graph: boxes the same, objectness x class the v8 score (what the test above leans on)."""
    import onnxruntime as ort

    v5 = as_v5(YOLO_FIXTURE / "shapes_dynamic.onnx", tmp_path / "v5.onnx")
    image = np.random.default_rng(0).random((2, 3, 160, 160), np.float32)
    [v8_head] = ort.InferenceSession(str(YOLO_FIXTURE / "shapes_dynamic.onnx")).run(None, {"images": image})
    [v5_head] = ort.InferenceSession(str(v5)).run(None, {"images": image})
    rows = v8_head.transpose(0, 2, 1)
    assert v5_head.shape == (2, 525, 8)
    np.testing.assert_array_equal(v5_head[..., :4], rows[..., :4])
    np.testing.assert_allclose(v5_head[..., 5:] * v5_head[..., 4:5], rows[..., 4:], atol=1e-6)


def test_only_a_declaration_makes_a_plain_onnx_a_detector(tmp_path):
    path = plain(tmp_path)
    assert load(path)[0].framework == "onnx"
    assert load(path, conf=0.5)[0].framework == "onnx"  # thresholds alone declare nothing
    assert load(path, layout="v8", imgsz=160, names=NAMES)[0].framework == "yolo"


# (sidecar detect: group, the file (plain dynamic / plain static), (layout, imgsz, names) read)
GOOD_DECLARATIONS = [
    ({"layout": "v8", "imgsz": 160}, False, ("v8", (160, 160), ("class0", "class1", "class2"))),
    ({"layout": "v8"}, True, ("v8", (160, 160), ("class0", "class1", "class2"))),  # imgsz: the static input's own
    ({"layout": "v8", "imgsz": [192, 256], "names": NAMES}, False, ("v8", (192, 256), tuple(NAMES))),
]


@pytest.mark.parametrize("declared, static, expected", GOOD_DECLARATIONS, ids=[str(d[0]) for d in GOOD_DECLARATIONS])
def test_what_a_declaration_leaves_out_is_read_off_the_graph(tmp_path, declared, static, expected):
    adapter, model = load(plain(tmp_path, static), **declared)
    detector = adapter.detector(model)
    assert (detector.layout, (detector.height, detector.width), detector.names) == expected
    assert detector.batched is not static


# (sidecar detect: group, the file (plain dynamic / plain static), the one-line refusal)
BAD_DECLARATIONS = [
    ({"layout": "v7"}, False, "plain.onnx: sidecar detect: 'layout' must be v8 ([batch, 4 + classes, anchors]) or v5 "
                              "([batch, anchors, 5 + classes]), got 'v7'"),
    ({"layout": "v8", "names": NAMES}, False, "plain.onnx: input 'images' has no fixed height and width: declare the size "
                                              "it runs at in the sidecar (detect: {imgsz: [height, width]})"),
    ({"layout": "v8", "imgsz": 100}, False, "plain.onnx: imgsz 100x100 is not a multiple of the stride 32"),
    ({"layout": "v8", "imgsz": 160, "stride": 64}, False, "plain.onnx: imgsz 160x160 is not a multiple of the stride 64"),
    ({"layout": "v8", "imgsz": "big"}, False, "plain.onnx: sidecar detect: 'imgsz' must be a positive integer, got 'big'"),
    ({"layout": "v8", "imgsz": [160, 320]}, True, "plain.onnx: sidecar detect: 'imgsz' 160x320 is not the input's own size 160x160"),
    ({"layout": "v8", "imgsz": 160, "names": ["a", "b"]}, False,
     "plain.onnx: output shape [?, 7, ?] is not the v8 layout [batch, 4 + 2, anchors] of 2 classes"),
    ({"layout": "v5", "imgsz": 160, "names": NAMES}, False,
     "plain.onnx: output 'output0' is [1, 7, 525] on one image, not the declared v5 layout [1, anchors, 5 + 3]"),
    # names counted on the wrong axis (520 classes) would fit the shape: the anchors do not (7, under 5x5 cells)
    ({"layout": "v5"}, True, "plain.onnx: output 'output0' is [1, 7, 525] on one image, not the declared v5 layout "
                             "[1, anchors, 5 + 520]"),
]


@pytest.mark.parametrize("declared, static, message", BAD_DECLARATIONS, ids=[m.split(": ", 1)[1][:60] for *_, m in BAD_DECLARATIONS])
def test_a_declaration_the_graph_contradicts_is_refused_in_one_line(tmp_path, declared, static, message):
    from tritonforge.errors import BuildError

    with pytest.raises(BuildError) as error:
        load(plain(tmp_path, static), **declared)
    assert str(error.value) == message


def test_undeclared_a_metadata_less_detector_is_a_plain_model_or_refused_with_how_to_declare_it(tmp_path):
    """The static graph serves its raw head as the file answers it (nothing guessed from shapes);
    the dynamic one cannot run on generic rows, and the refusal says how to declare its head."""
    from tritonforge.builder import BuildOptions, build_repository

    models = tmp_path / "models"
    models.mkdir()
    without_metadata(YOLO_FIXTURE / "shapes.onnx", models / "static_head.onnx")
    without_metadata(YOLO_FIXTURE / "shapes_dynamic.onnx", models / "dynamic_head.onnx")
    results = {r.name: r for r in build_repository(models, tmp_path / "repo", BuildOptions(max_batch_size=8))}
    assert set(results) == {"static_head", "dynamic_head"}  # no _detect ensemble for either
    assert results["static_head"].status.name == "OK" and results["static_head"].framework == "onnx"
    reason = results["dynamic_head"].reason
    assert results["dynamic_head"].status.name == "FAILED" and "\n" not in reason
    assert reason.startswith("dynamic_head.onnx: ") and "/model.11/Concat" in reason
    assert reason.endswith("; if it is a YOLO detector exported without ultralytics' metadata, declare its head in the "
                           "sidecar: detect: {layout: v8, imgsz: [height, width], names: [...]}")


def test_a_sidecar_declaration_wins_over_the_metadata_and_is_checked(tmp_path):
    """On an ultralytics export, a declared layout must fit the graph too (v5 on a v8 head is refused)."""
    from tritonforge.errors import BuildError

    shutil.copyfile(YOLO_FIXTURE / "shapes_dynamic.onnx", tmp_path / "plain.onnx")
    adapter, model = load(tmp_path / "plain.onnx", layout="v8", imgsz=192)
    assert (adapter.detector(model).height, adapter.detector(model).names) == (192, tuple(NAMES))
    with pytest.raises(BuildError, match="not the declared v5 layout"):
        load(tmp_path / "plain.onnx", layout="v5")
