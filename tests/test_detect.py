"""Detection (issue 26): a real ultralytics export recognised and built, and ``shapes_detect``
answering what ultralytics' own ``predict`` answers on the committed images, over HTTP and gRPC."""
from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from fixtures_detect import DETECTOR, STATIC_DETECTOR, YOLO_FIXTURE, ultralytics_detections

PROTOCOLS = ("http", "grpc")
IMAGES = sorted(ultralytics_detections())
OUTPUTS = ("BOXES", "SCORES", "CLASSES", "NAMES", "COUNT")
NAMES = ["square", "circle", "triangle"]
BOX_PX, SCORE_TOL = 1.5, 2e-3


def detect(server, protocol, images: list[bytes], model=f"{DETECTOR}_detect") -> dict[str, np.ndarray]:
    module = httpclient if protocol == "http" else grpcclient
    client = server.http_client() if protocol == "http" else server.grpc_client()
    raw = np.array(images, dtype=object).reshape(-1, 1)
    tensor = module.InferInput("RAW", list(raw.shape), "BYTES")
    tensor.set_data_from_numpy(raw)
    answer = client.infer(model, [tensor], outputs=[module.InferRequestedOutput(n) for n in OUTPUTS])
    return {n: answer.as_numpy(n) for n in OUTPUTS}


def image_bytes(name: str) -> bytes:
    return (YOLO_FIXTURE / "images" / name).read_bytes()


def test_the_fixture_detects_something_on_every_image():
    """The reference itself is worth comparing against: the trained model finds objects."""
    found = {name: len(d["boxes"]) for name, d in ultralytics_detections().items()}
    assert len(found) >= 4 and all(found.values()), found


def test_the_dynamic_ultralytics_export_is_recognised_and_built_as_a_batched_detector(built_detect):
    repo, results = built_detect
    result = results[DETECTOR]
    assert result.status.name == "OK", result.reason
    assert result.framework == "yolo"
    # height and width fixed at the export's imgsz, the class axis at 4 + 3 classes; the batch stays dynamic
    assert result.signature.describe() == "images:float32[?x3x160x160] -> output0:float32[?x7x?]"


def test_the_static_export_is_built_unbatched(built_detect):
    repo, results = built_detect
    assert results[STATIC_DETECTOR].status.name == "OK", results[STATIC_DETECTOR].reason
    assert results[STATIC_DETECTOR].signature.describe() == "images:float32[1x3x160x160] -> output0:float32[1x7x525]"


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("image", IMAGES)
def test_the_static_exports_ensemble_answers_ultralytics_detections_one_image_a_request(detect_server, protocol, image):
    answer = detect(detect_server, protocol, [image_bytes(image)], model=f"{STATIC_DETECTOR}_detect")
    assert_same_detections(answer, ultralytics_detections("shapes.onnx")[image])


@pytest.mark.slow
def test_the_static_exports_ensemble_refuses_two_images_in_one_request(detect_server):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match=r"expected \[1,1\]|unexpected shape") as error:
        detect(detect_server, "http", [image_bytes(IMAGES[0])] * 2, model=f"{STATIC_DETECTOR}_detect")
    assert error.value.status() == "400"


@pytest.mark.skipif(importlib.util.find_spec("ultralytics") is not None, reason="ultralytics is installed: see test_detect_checkpoint.py")
def test_an_ultralytics_checkpoint_is_refused_with_the_export_command(tmp_path):
    from tritonforge.builder import BuildOptions, build_repository

    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(YOLO_FIXTURE / "shapes.pt", models / "shapes.pt")
    [result] = build_repository(models, tmp_path / "repo", BuildOptions())
    assert result.status.name == "FAILED"
    assert result.reason == ("shapes.pt: an ultralytics checkpoint, which needs ultralytics to load; export it to ONNX "
                             "and build that: yolo export model=shapes.pt format=onnx dynamic=True")


def test_the_detect_ensemble_is_wired_letterbox_detector_postprocess(built_detect):
    from tritonforge.repository import config as config_file

    repo, _ = built_detect
    config = config_file.read(repo / f"{DETECTOR}_detect")
    assert [s.model_name for s in config.ensemble_scheduling.step] == [f"{DETECTOR}_letterbox", DETECTOR,
                                                                        f"{DETECTOR}_detect_post"]
    assert [t.name for t in config.output] == list(OUTPUTS)
    assert (repo / f"{DETECTOR}_detect" / "labels.txt").read_text().split() == NAMES


def assert_same_detections(answer: dict[str, np.ndarray], expected: dict, row: int = 0) -> None:
    count = int(answer["COUNT"][row, 0])
    assert count == len(expected["boxes"]), (count, expected)
    boxes, scores = answer["BOXES"][row, :count], answer["SCORES"][row, :count]
    classes, names = answer["CLASSES"][row, :count], answer["NAMES"][row, :count]
    assert classes.tolist() == expected["classes"]
    assert [n.decode() for n in names] == expected["names"]
    assert np.abs(boxes - np.array(expected["boxes"], np.float32).reshape(-1, 4)).max(initial=0) <= BOX_PX
    assert np.abs(scores - np.array(expected["scores"], np.float32)).max(initial=0) <= SCORE_TOL


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("image", IMAGES)
def test_the_detect_ensemble_answers_ultralytics_detections(detect_server, protocol, image):
    assert_same_detections(detect(detect_server, protocol, [image_bytes(image)]), ultralytics_detections()[image])


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_images_of_different_sizes_in_one_request_each_get_their_own_boxes(detect_server, protocol):
    answer = detect(detect_server, protocol, [image_bytes(i) for i in IMAGES])
    for row, image in enumerate(IMAGES):
        assert_same_detections(answer, ultralytics_detections()[image], row)
    # rows with fewer boxes than the most are padded, and the padding says so
    for row, count in enumerate(answer["COUNT"][:, 0]):
        assert (answer["CLASSES"][row, count:] == -1).all() and (answer["NAMES"][row, count:] == b"").all()


@pytest.mark.slow
def test_concurrent_requests_are_batched_and_each_answered_right(detect_server):
    """One image a request, many at once: the detector batches them, each request gets its own answer."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [IMAGES[i % len(IMAGES)] for i in range(20)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda name: detect(detect_server, "http", [image_bytes(name)]), jobs))
    for name, answer in zip(jobs, answers):
        assert_same_detections(answer, ultralytics_detections()[name])


@pytest.mark.slow
def test_the_detections_find_the_drawn_objects(detect_server):
    """By eye, by number: every box the ensemble answers overlaps an object drawn there, of its class."""
    drawn = json.loads((YOLO_FIXTURE / "images.json").read_text())
    for image in IMAGES:
        answer = detect(detect_server, "grpc", [image_bytes(image)])
        count = int(answer["COUNT"][0, 0])
        for box, name in zip(answer["BOXES"][0, :count], answer["NAMES"][0, :count]):
            best = max(drawn[image], key=lambda o: iou(box, o["box"]))
            assert iou(box, best["box"]) > 0.5 and best["class"] == name.decode(), (image, box, name, drawn[image])


def iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.slow
def test_check_repo_passes_the_detectors_and_their_detect_ensembles_on_their_recorded_samples(detect_server, built_detect):
    from tritonforge.serving.check import check_repository

    repo, _ = built_detect
    rows = check_repository(repo, http_url=detect_server.http_url, grpc_url=detect_server.grpc_url,
                            models=[DETECTOR, f"{DETECTOR}_detect", STATIC_DETECTOR, f"{STATIC_DETECTOR}_detect"])
    assert len(rows) == 8 and all(r.ok for r in rows), rows


def test_build_repo_writes_and_records_the_detect_ensemble(detect_models, tmp_path):
    """build-repo's plan_detection stage: the detector, its letterbox and postprocess steps and
    ``<name>_detect``, each written, verified and recorded in the manifest."""
    import json as json_module

    from tritonforge.builder import BuildOptions, build_repository

    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(detect_models / f"{DETECTOR}.onnx", models / f"{DETECTOR}.onnx")
    results = {r.name: r for r in build_repository(models, tmp_path / "repo", BuildOptions(max_batch_size=8))}
    assert {n: r.status.name for n, r in results.items()} == {
        DETECTOR: "OK", f"{DETECTOR}_letterbox": "OK", f"{DETECTOR}_detect_post": "OK", f"{DETECTOR}_detect": "OK"}
    manifest = json_module.loads((tmp_path / "repo" / "manifest.json").read_text())["models"]
    assert manifest[DETECTOR]["versions"]["1"]["ensemble"] == [f"{DETECTOR}_letterbox", f"{DETECTOR}_detect_post",
                                                               f"{DETECTOR}_detect"]
    assert manifest[f"{DETECTOR}_detect"]["latest_version"] == 1


def test_a_sidecar_detect_group_sets_the_thresholds_and_a_bad_key_is_refused(detect_models, tmp_path):
    from tritonforge.builder import build_repository

    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(detect_models / f"{DETECTOR}.onnx", models / f"{DETECTOR}.onnx")
    (models / f"{DETECTOR}.yaml").write_text("detect: {threshold: 0.5}\n")
    results = {r.name: r for r in build_repository(models, tmp_path / "repo")}
    assert results[DETECTOR].status.name == "FAILED"
    assert "detect: unknown key 'threshold'" in results[DETECTOR].reason


def _with_metadata(source, target, **props):
    import onnx

    model = onnx.load(str(source))
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(target))
    return target


# (case, how the file is made from the fixture's dynamic export, the adapter that takes it)
DETECTION_CASES = [
    ("an ultralytics detect export", lambda src, dst: shutil.copyfile(src, dst), "yolo"),
    ("the same graph without metadata", lambda src, dst: _with_metadata(src, dst), "onnx"),
    ("an ultralytics classify export", lambda src, dst: _with_metadata(src, dst, task="classify"), "onnx"),
    ("a corrupt .onnx", lambda src, dst: dst.write_bytes(src.read_bytes()[:1000]), "onnx"),
]


@pytest.mark.parametrize("case, make, framework", DETECTION_CASES, ids=[c[0] for c in DETECTION_CASES])
def test_only_ultralytics_detect_exports_go_to_the_yolo_adapter(tmp_path, case, make, framework):
    from tritonforge.converters import REGISTRY
    from tritonforge.converters.probe import FileProbe

    path = tmp_path / "model.onnx"
    make(YOLO_FIXTURE / "shapes_dynamic.onnx", path)
    assert REGISTRY.detect(FileProbe(path)).framework == framework


# (metadata props, the one-line refusal)
BAD_METADATA = [
    ({"task": "detect", "stride": "32", "imgsz": "[160, 160]"}, "ultralytics metadata 'names' is missing or unreadable (None)"),
    ({"task": "detect", "names": "{0: 'a', 1: 'b', 2: 'c'}", "stride": "32", "imgsz": "[100, 160]"},
     "imgsz 100x160 is not a multiple of the stride 32"),
    ({"task": "detect", "names": "{0: 'a', 1: 'b'}", "stride": "32", "imgsz": "[160, 160]"},
     "output shape [?, 7, ?] is neither [batch, 4 + 2, anchors] (v8/v11) nor [batch, anchors, 5 + 2] (v5)"),
    ({"task": "detect", "names": "{1: 'a'}", "stride": "32", "imgsz": "[160, 160]"},
     "ultralytics metadata 'names' is not a dict of class indices 0..n-1"),
]


@pytest.mark.parametrize("props, message", BAD_METADATA, ids=[m for _, m in BAD_METADATA])
def test_unreadable_detector_metadata_is_refused_in_one_line(tmp_path, props, message):
    from tritonforge.builder import BuildOptions, build_repository

    models = tmp_path / "models"
    models.mkdir()
    _with_metadata(YOLO_FIXTURE / "shapes_dynamic.onnx", models / "odd.onnx", **props)
    [result] = build_repository(models, tmp_path / "repo", BuildOptions())
    assert result.status.name == "FAILED" and result.reason == f"odd.onnx: {message}"
