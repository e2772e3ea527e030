"""The fused detection entry (ensembles/fused/detect.py): ``<name>_detect_fused``, letterbox,
detector and NMS in one ONNX graph of standard operators, taking an image's RGB pixels, answers
what the Python-step ``<name>_detect`` answers: on every fixture image and on non-square images
of many sizes, in-process and served (serve-repo over HTTP and gRPC; Triton's C++ ONNX Runtime
backend where ../shared/reference-backends has it)."""
from __future__ import annotations

import io
import shutil

import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from fixtures_detect import DETECTOR, STATIC_DETECTOR, YOLO_FIXTURE, ultralytics_detections
from fixtures_serving import load_copy
from tritonforge.ensembles.fused import detect as fused_detect
from tritonforge.ensembles.library import load_template

PROTOCOLS = ("http", "grpc")
IMAGES = sorted(ultralytics_detections())
OUTPUTS = ("BOXES", "SCORES", "CLASSES", "NAMES", "COUNT")
STRICT = "shapes_strict"  # the dynamic export again, with the sidecar's own thresholds
STRICT_SETTINGS = {"conf": 0.5, "max_det": 2}
BOX_PX, SCORE_TOL = fused_detect.BOX_PIXELS, fused_detect.SCORE_ATOL
# (width, height) of generated images: tall, wide, tiny, larger than the model, exactly its size
SIZES = ((37, 301), (640, 90), (1000, 700), (7, 5), (160, 160), (161, 159), (1, 1), (333, 517), (96, 72), (320, 320))


@pytest.fixture(scope="module")
def fused_repo(tmp_path_factory):
    """Both fixture exports and a strict copy, fused by the folder sidecar's ``fuse: true``,
    built once (with Triton's validation): the repository and the results by name."""
    from tritonforge.builder import BuildOptions, build_repository

    models = tmp_path_factory.mktemp("fused_detect_models")
    shutil.copyfile(YOLO_FIXTURE / "shapes_dynamic.onnx", models / f"{DETECTOR}.onnx")
    shutil.copyfile(YOLO_FIXTURE / "shapes_dynamic.onnx", models / f"{STRICT}.onnx")
    shutil.copyfile(YOLO_FIXTURE / "shapes.onnx", models / f"{STATIC_DETECTOR}.onnx")
    (models / "tritonforge.yaml").write_text("defaults: {fuse: true}\n")
    (models / f"{STRICT}.yaml").write_text("detect: {conf: 0.5, max_det: 2}\n")
    repo = tmp_path_factory.mktemp("fused_detect_built") / "model_repository"
    results = {r.name: r for r in build_repository(models, repo, BuildOptions(max_batch_size=8, validate=True))}
    failed = {n: r.reason for n, r in results.items() if r.status != "OK"}
    assert not failed, failed
    return repo, results


def fused_session(repo, model=DETECTOR, extra_outputs=()):
    import onnxruntime as ort

    graph = onnx.load(str(repo / f"{model}_detect_fused" / "1" / "model.onnx"))
    for name in extra_outputs:
        graph.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])


def run_fused(session, pixels) -> dict[str, np.ndarray]:
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"IMAGE": pixels})))


def python_steps(data: bytes, **settings) -> dict[str, np.ndarray]:
    """What ``shapes_detect`` computes for one image: the letterbox and detect_post templates
    around the detector, in-process."""
    import onnxruntime as ort

    letterbox, post = load_template("letterbox"), load_template("detect_post")
    size = {"height": 160, "width": 160}
    features = letterbox.images_to_input([data], {"output": "images", "dtype": "float32", "pad": 114, "size_output": "SIZE",
                                                  "max_bytes": 1 << 25, "max_pixels": 1 << 24, **size})
    detector = ort.InferenceSession(str(YOLO_FIXTURE / "shapes_dynamic.onnx"), providers=["CPUExecutionProvider"])
    head = detector.run(None, {"images": features["images"]})[0]
    spec = {"layout": "v8", "names": ["square", "circle", "triangle"], "conf": 0.25, "iou": 0.7, "max_det": 300,
            **size, **settings}
    return fused_detect.one_image(post.detections(head, features["SIZE"], spec), 0)


def assert_equal_detections(fused: dict, steps: dict) -> None:
    """Same count, classes and names; boxes within 1.5 px and scores within 2e-3 (the build's rule)."""
    count = int(steps["COUNT"].reshape(-1)[0])
    assert int(fused["COUNT"].reshape(-1)[0]) == count, (fused["COUNT"], steps["COUNT"])
    assert fused["CLASSES"][0, :count].tolist() == steps["CLASSES"][0, :count].tolist()
    names = [n.decode() if isinstance(n, bytes) else n for n in fused["NAMES"][0, :count]]
    assert names == [n.decode() if isinstance(n, bytes) else n for n in steps["NAMES"][0, :count]]
    assert np.abs(fused["BOXES"][0, :count] - steps["BOXES"][0, :count]).max(initial=0) <= BOX_PX
    assert np.abs(fused["SCORES"][0, :count] - steps["SCORES"][0, :count]).max(initial=0) <= SCORE_TOL


def image_bytes(name: str) -> bytes:
    return (YOLO_FIXTURE / "images" / name).read_bytes()


def drawn_png(width: int, height: int, seed: int) -> bytes:
    """A noisy non-square image with a few filled shapes of the fixture's kinds."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 120, (height, width, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    side = max(min(width, height) // 3, 1)
    for shape in range(3):
        x, y = int(rng.integers(0, max(width - side, 1))), int(rng.integers(0, max(height - side, 1)))
        box = (x, y, x + side, y + side)
        colour = tuple(int(c) for c in rng.integers(150, 256, 3))
        [draw.rectangle, draw.ellipse, lambda b, fill: draw.polygon([(b[0], b[3]), (b[2], b[3]), ((b[0] + b[2]) // 2, b[1])],
                                                                    fill=fill)][shape](box, fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_build_writes_an_unbatched_onnx_entry_taking_pixels(fused_repo):
    repo, results = fused_repo
    for model in (DETECTOR, STATIC_DETECTOR, STRICT):
        entry = results[f"{model}_detect_fused"]
        assert (entry.framework, entry.format, entry.version) == ("fused", "onnx", 1)
        assert entry.max_error == 0  # equal to the Python steps on the build's sample images, to the last bit
    config = (repo / f"{DETECTOR}_detect_fused" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config and "max_batch_size" not in config
    assert "model_operations" not in config  # standard operators only
    graph = onnx.load(str(repo / f"{DETECTOR}_detect_fused" / "1" / "model.onnx"))
    assert {n.domain for n in graph.graph.node} <= {"", "ai.onnx"}
    assert [(i.name, i.type.tensor_type.elem_type) for i in graph.graph.input] == [("IMAGE", onnx.TensorProto.UINT8)]
    assert [o.name for o in graph.graph.output] == list(OUTPUTS)


def test_the_letterbox_in_the_graph_is_the_python_steps_to_the_last_bit(fused_repo):
    """OpenCV's INTER_LINEAR fixed-point resize, the rounding and the padding, on many sizes."""
    repo, _ = fused_repo
    session = fused_session(repo, extra_outputs=("detector/images",))
    letterbox = load_template("letterbox")
    spec = {"output": "images", "dtype": "float32", "height": 160, "width": 160, "pad": 114, "size_output": "SIZE",
            "max_bytes": 1 << 25, "max_pixels": 1 << 24}
    rng = np.random.default_rng(7)
    sizes = list(SIZES) + [tuple(int(v) for v in rng.integers(1, 900, 2)) for _ in range(30)]
    for width, height in sizes:
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        import cv2

        ok, png = cv2.imencode(".png", pixels[..., ::-1])
        expected = letterbox.images_to_input([png.tobytes()], spec)["images"]
        [got] = session.run(["detector/images"], {"IMAGE": pixels})
        assert got.shape == expected.shape and np.array_equal(got, expected), (width, height, np.abs(got - expected).max())


@pytest.mark.parametrize("image", IMAGES)
def test_the_fused_graph_answers_the_python_steps_and_ultralytics_on_every_fixture_image(fused_repo, image):
    repo, _ = fused_repo
    data = image_bytes(image)
    answer = run_fused(fused_session(repo), fused_detect.decode_rgb(data))
    assert_equal_detections(answer, python_steps(data))
    expected = ultralytics_detections()[image]
    assert int(answer["COUNT"][0, 0]) == len(expected["boxes"])
    assert np.abs(answer["BOXES"][0] - np.array(expected["boxes"], np.float32).reshape(-1, 4)).max(initial=0) <= BOX_PX


def test_non_square_images_of_many_sizes_and_the_sidecars_thresholds(fused_repo):
    repo, _ = fused_repo
    default, strict = fused_session(repo), fused_session(repo, STRICT)
    for seed, (width, height) in enumerate(SIZES):
        data = drawn_png(width, height, seed)
        pixels = fused_detect.decode_rgb(data)
        assert_equal_detections(run_fused(default, pixels), python_steps(data))
        strict_answer = run_fused(strict, pixels)
        assert_equal_detections(strict_answer, python_steps(data, **STRICT_SETTINGS))
        assert strict_answer["COUNT"][0, 0] <= 2 and (strict_answer["SCORES"] > 0.5).all()


def test_an_image_with_nothing_in_it_answers_no_boxes(fused_repo):
    repo, _ = fused_repo
    answer = run_fused(fused_session(repo), np.full((50, 80, 3), 114, np.uint8))
    assert answer["COUNT"].tolist() == [[0]] and answer["BOXES"].shape == (1, 0, 4) and answer["NAMES"].shape == (1, 0)


def infer_pixels(server, protocol: str, model: str, pixels: np.ndarray) -> dict[str, np.ndarray]:
    module = httpclient if protocol == "http" else grpcclient
    client = server.http_client() if protocol == "http" else server.grpc_client()
    tensor = module.InferInput("IMAGE", list(pixels.shape), "UINT8")
    tensor.set_data_from_numpy(pixels)
    answer = client.infer(model, [tensor], outputs=[module.InferRequestedOutput(n) for n in OUTPUTS])
    return {n: answer.as_numpy(n) for n in OUTPUTS}


def infer_bytes(server, protocol: str, model: str, data: bytes) -> dict[str, np.ndarray]:
    module = httpclient if protocol == "http" else grpcclient
    client = server.http_client() if protocol == "http" else server.grpc_client()
    raw = np.array([[data]], dtype=object)
    tensor = module.InferInput("RAW", [1, 1], "BYTES")
    tensor.set_data_from_numpy(raw)
    answer = client.infer(model, [tensor], outputs=[module.InferRequestedOutput(n) for n in OUTPUTS])
    return fused_detect.one_image({n: answer.as_numpy(n) for n in OUTPUTS}, 0)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_served_the_fused_entry_answers_as_the_served_detect_ensemble(fused_repo, tiny_server, tiny_repo, detect_server,
                                                                      protocol):
    """serve-repo: ``shapes_detect_fused`` fed pixels answers what ``shapes_detect`` fed the encoded
    image answers, on every fixture image and on non-square generated ones."""
    repo, _ = fused_repo
    served = load_copy(tiny_server, tiny_repo, repo / f"{DETECTOR}_detect_fused", "fz_shapes_detect_fused")
    images = [image_bytes(i) for i in IMAGES] + [drawn_png(w, h, s) for s, (w, h) in enumerate(SIZES[:5])]
    for data in images:
        fused = infer_pixels(tiny_server, protocol, served, fused_detect.decode_rgb(data))
        assert_equal_detections(fused, infer_bytes(detect_server, protocol, f"{DETECTOR}_detect", data))


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_request_that_is_no_rgb_image_is_a_bad_request(fused_repo, tiny_server, tiny_repo, protocol):
    repo, _ = fused_repo
    served = load_copy(tiny_server, tiny_repo, repo / f"{DETECTOR}_detect_fused", "fz_shapes_detect_fused")
    with pytest.raises(Exception) as info:
        infer_pixels(tiny_server, protocol, served, np.zeros((20, 30, 4), np.uint8))
    text = str(info.value)
    assert ("400" in text or "INVALID_ARGUMENT" in text or "nvalid" in text) and "IMAGE" in text, text


@pytest.mark.slow
def test_check_repo_passes_the_fused_entries_on_their_recorded_samples(fused_repo, tiny_server, tiny_repo):
    from tritonforge.serving.check import check_repository

    repo, _ = fused_repo
    served = load_copy(tiny_server, tiny_repo, repo / f"{STATIC_DETECTOR}_detect_fused", "fz_static_detect_fused")
    rows = check_repository(tiny_repo, http_url=tiny_server.http_url, grpc_url=tiny_server.grpc_url, models=[served])
    assert len(rows) == 2 and all(r.ok for r in rows), rows


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_cpp_onnxruntime_backend_loads_the_fused_entry_and_answers_the_same(fused_repo, reference_server, protocol):
    """Triton's own C++ ONNX Runtime backend (r24.10, ORT 1.19.2) runs the fused graph: standard
    operators at the detector's opset, no custom-op library."""
    repo, _ = fused_repo
    served = load_copy(reference_server, reference_server.repo, repo / f"{DETECTOR}_detect_fused", "ref_shapes_detect_fused")
    for seed, data in enumerate([image_bytes(i) for i in IMAGES] + [drawn_png(333, 517, 3)]):
        answer = infer_pixels(reference_server, protocol, served, fused_detect.decode_rgb(data))
        assert_equal_detections(answer, python_steps(data))
