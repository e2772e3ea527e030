"""The fused image classifier (ensembles/fused/image.py): ``digits_cnn_ensemble_fused`` takes a PNG's
bytes as UINT8 and answers what the Python-step ``digits_cnn_ensemble`` answers (image step ->
model -> Triton's classification), on serve-repo over HTTP and gRPC and on Triton's C++ ONNX
Runtime backend where ../shared/reference-backends has it."""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures_serving import load_copy
from tritonforge.ensembles.fused.image import fused_graph
from tritonforge.ensembles.library import load_template
from tritonforge.repository import op_libraries, read_samples

ROOT = Path(__file__).resolve().parents[1]
INPUTS = ROOT / "examples" / "inputs"
GREY = {"output": "input", "dtype": "float32", "layout": "NHWC", "height": 28, "width": 28, "channels": 1,
        "scale": 1 / 255, "mean": [0.0], "std": [1.0]}
RGB = {"output": "input", "dtype": "float32", "layout": "NCHW", "height": 32, "width": 32, "channels": 3,
       "scale": 1 / 255, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}


def encode(pixels: np.ndarray, mode: str | None = None, fmt: str = "PNG") -> bytes:
    image = Image.fromarray(pixels)
    if mode:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def smooth(rng, shape) -> np.ndarray:
    """Photo-like pixels (neighbours close), where a resize's rounding shows."""
    return np.clip(np.cumsum(rng.integers(-9, 10, shape), axis=1) + 128, 0, 255).astype(np.uint8)


def kinds(rng, height: int, width: int) -> dict[str, bytes]:
    """One PNG of each kind the image step reads differently."""
    return {"grey": encode(smooth(rng, (height, width))), "rgb": encode(smooth(rng, (height, width, 3))),
            "palette": encode(smooth(rng, (height, width, 3)), "P"), "rgba": encode(smooth(rng, (height, width, 4))),
            "grey+alpha": encode(smooth(rng, (height, width)), "LA")}


def preprocess_session(settings: dict):
    """The fused graph in front of an Identity model: what it feeds the model."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    shape = [settings["height"], settings["width"], settings["channels"]]
    if settings["layout"] == "NCHW":
        shape = shape[2:] + shape[:2]
    name = settings["output"]
    graph = helper.make_graph([helper.make_node("Identity", [name], ["pixels"])], "identity",
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *shape])],
                              [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", *shape])])
    model = fused_graph(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), settings, ("pixels",))
    options = op_libraries.session_options_for({"model_operations": {"op_library_filename": ["libortextensions.so"]}})
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("settings", [GREY, RGB], ids=["grey-NHWC", "rgb-NCHW-mean-std"])
def test_the_graph_feeds_the_model_what_the_image_step_feeds_it(settings):
    """At the model's size the pixels are the step's exactly, for every PNG kind; resized (down
    and up, other aspect ratios) within one level of Pillow's BILINEAR (Pillow 13 orders its two
    passes itself; the graph resamples horizontally first)."""
    step, session, rng = load_template("image"), preprocess_session(settings), np.random.default_rng(0)
    run = lambda data: session.run(None, {"RAW": np.frombuffer(data, np.uint8)})[0]  # noqa: E731
    for kind, data in kinds(rng, settings["height"], settings["width"]).items():
        np.testing.assert_array_equal(run(data), step.images_to_input([data], settings), err_msg=kind)
    level = 1 / 255 / min(settings["std"])
    off = total = 0
    for height, width in ((200, 87), (64, 64), (45, 130), (9, 20), (31, 29)):
        for kind, data in kinds(rng, height, width).items():
            got, want = run(data), step.images_to_input([data], settings)
            assert np.abs(got - want).max() <= level * 1.0001, (kind, height, width)
            off, total = off + int(np.count_nonzero(np.abs(got - want) > 1e-6)), total + got.size
    assert off < total * 0.15  # measured 6.7% (grey) of the pixels one level off: the filter is Pillow's


def not_images() -> dict[str, bytes]:
    """Bytes that DecodeImage 0.15.2 would hand to libjpeg, whose exit() ends the process, and broken PNGs."""
    png = encode(np.zeros((20, 20, 3), np.uint8))
    jpeg = encode(np.zeros((20, 20, 3), np.uint8), fmt="JPEG")
    return {"text": b"not an image at all", "jpeg": jpeg, "truncated jpeg": jpeg[:100], "gif": encode(np.zeros((4, 4), np.uint8), fmt="GIF"),
            "truncated png": png[:40], "corrupt png": png[:50] + b"x" * 20 + png[70:]}


def test_anything_but_a_png_is_refused_by_the_graph_and_the_process_lives_on():
    """Only files with PNG's signature reach DecodeImage; the rest fail on the node named for it."""
    session = preprocess_session(GREY)
    for kind, data in not_images().items():
        with pytest.raises(Exception) as info:
            session.run(None, {"RAW": np.frombuffer(data, np.uint8)})
        reason = "not a PNG file: the fused entry decodes PNG only" if "png" not in kind else "Error during png creation"
        assert reason in str(info.value), kind
    good = encode(np.zeros((28, 28), np.uint8))
    assert session.run(None, {"RAW": np.frombuffer(good, np.uint8)})[0].shape == (1, 28, 28, 1)


# ---- the examples' digits_cnn built with fuse -------------------------------------------------
@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """digits_cnn (examples/train_models.py) built with fusion: the repository and the results."""
    sys.path.insert(0, str(ROOT / "examples"))
    from train_models import keras_sequential_cnn
    from tritonforge.builder import BuildOptions, build_repository

    models = tmp_path_factory.mktemp("digits_models")
    keras_sequential_cnn(models)
    repo = tmp_path_factory.mktemp("digits_built") / "repo"
    results = {r.name: r for r in build_repository(models, repo, BuildOptions(fuse=True))}
    return repo, results


def verification_images(repo: Path) -> list[bytes]:
    """The ensemble's verification images (its samples) and the README's example digits."""
    stored = read_samples(repo / "digits_cnn_ensemble" / "1" / "samples.npz")
    return [bytes(r) for r in stored.inputs["RAW"].reshape(-1)] + [p.read_bytes() for p in sorted(INPUTS.glob("digit_*.png"))]


def python_steps(repo: Path, images: list[bytes]) -> np.ndarray:
    """What the Python-step ensemble computes: the image step's template, then the model's ONNX."""
    import onnxruntime as ort
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    config = text_format.Parse((repo / "digits_cnn_preprocess" / "config.pbtxt").read_text(), mc.ModelConfig())
    settings = json.loads(config.parameters["tritonforge_step"].string_value)
    pixels = load_template("image").images_to_input(images, settings)
    session = ort.InferenceSession(str(repo / "digits_cnn" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(["digit"], {settings["output"]: pixels})[0]


def tolerance(repo: Path) -> dict:
    stored = read_samples(repo / "digits_cnn_ensemble_fused" / "1" / "samples.npz")
    return {"atol": stored.atol, "rtol": stored.rtol}


@pytest.mark.slow
def test_the_fused_entry_is_built_verified_and_configured(digits):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    repo, results = digits
    assert results["digits_cnn_ensemble_fused"].status == "OK", results["digits_cnn_ensemble_fused"].reason
    config = text_format.Parse((repo / "digits_cnn_ensemble_fused" / "config.pbtxt").read_text(), mc.ModelConfig())
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 0
    assert [(i.name, mc.DataType.Name(i.data_type), list(i.dims)) for i in config.input] == [("RAW", "TYPE_UINT8", [-1])]
    assert [(o.name, list(o.dims), o.label_filename) for o in config.output] == [("digit", [1, 10], "labels.txt")]
    assert list(config.model_operations.op_library_filename) == ["libortextensions.so"]
    assert config.parameters["tritonforge_top_k"].string_value == "3"
    labels = (repo / "digits_cnn_ensemble_fused" / "labels.txt").read_text()
    assert labels == (repo / "digits_cnn_ensemble" / "labels.txt").read_text()


def ask(client, module, model: str, data: bytes, class_count: int = 0):
    raw = np.frombuffer(data, np.uint8)
    request = module.InferInput("RAW", [raw.size], "UINT8")
    request.set_data_from_numpy(raw)
    output = module.InferRequestedOutput("digit", class_count=class_count)
    return client.infer(model, [request], outputs=[output]).as_numpy("digit")


def assert_answers_like_the_python_steps(server, name: str, repo: Path) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    images = verification_images(repo)
    expected = python_steps(repo, images)
    labels = (repo / "digits_cnn_ensemble" / "labels.txt").read_text().split()
    for module, client in ((httpclient, server.http_client()), (grpcclient, server.grpc_client())):
        for index, data in enumerate(images):
            got = ask(client, module, name, data)
            np.testing.assert_allclose(got, expected[index:index + 1], **tolerance(repo), err_msg=f"image {index}")
            top = [t.decode().split(":")[2] for t in ask(client, module, name, data, class_count=3).reshape(-1)]
            assert top == [labels[i] for i in np.argsort(-expected[index])[:3]]


@pytest.mark.slow
def test_serve_repo_answers_as_the_python_step_ensemble_over_http_and_grpc(digits, tiny_server, tiny_repo):
    repo, _ = digits
    name = load_copy(tiny_server, tiny_repo, repo / "digits_cnn_ensemble_fused", "fused_digits")
    assert_answers_like_the_python_steps(tiny_server, name, repo)


@pytest.mark.slow
def test_images_of_other_sizes_and_colours_classify_alike(digits, tiny_server, tiny_repo):
    """The README's digits enlarged, shrunk and in colour: the resize is within a level of the
    step's, so the classes and scores agree."""
    import tritonclient.http as httpclient

    repo, _ = digits
    name = load_copy(tiny_server, tiny_repo, repo / "digits_cnn_ensemble_fused", "fused_digits")
    client = tiny_server.http_client()
    for path in sorted(INPUTS.glob("digit_*.png")):
        image = Image.open(path)
        for variant in (image.resize((56, 56)), image.resize((20, 23)), image.convert("RGB").resize((90, 70))):
            data = encode(np.asarray(variant))
            got, want = ask(client, httpclient, name, data), python_steps(repo, [data])
            assert got.argmax() == want.argmax()
            assert np.abs(got - want).max() < 0.01


def assert_refuses_what_is_not_a_png(server, name: str, repo: Path) -> None:
    """Each bad file fails its own request; the model answers the next one (no process died)."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = server.http_client(network_timeout=30)
    for kind, data in not_images().items():
        with pytest.raises(InferenceServerException, match="not a PNG file|Error during png creation"):
            ask(client, httpclient, name, data)
    good = (INPUTS / "digit_7.png").read_bytes()
    np.testing.assert_allclose(ask(client, httpclient, name, good), python_steps(repo, [good]), **tolerance(repo))


@pytest.mark.slow
def test_bytes_that_are_no_png_fail_that_request_only(digits, tiny_server, tiny_repo):
    repo, _ = digits
    name = load_copy(tiny_server, tiny_repo, repo / "digits_cnn_ensemble_fused", "fused_digits")
    assert_refuses_what_is_not_a_png(tiny_server, name, repo)  # a dead process would answer otherwise


@pytest.mark.slow
def test_triton_cpp_backend_serves_the_fused_entry(digits, reference_server):
    """Triton's own ONNX Runtime backend (r24.10, ONNX Runtime 1.19.2) loads the entry with
    libortextensions.so from LD_LIBRARY_PATH and answers as the Python steps, HTTP and gRPC."""
    repo, _ = digits
    name = load_copy(reference_server, reference_server.repo, repo / "digits_cnn_ensemble_fused", "ref_fused_digits")
    assert_answers_like_the_python_steps(reference_server, name, repo)
    # A JPEG or a line of text here would leave tritonserver hanging in libjpeg's exit().
    assert_refuses_what_is_not_a_png(reference_server, name, repo)
