"""ultralytics ``.pt`` checkpoints: exported through ultralytics to ONNX and built as that export
where ultralytics imports and ``--allow-pickle`` is given; refused in one line otherwise.

ultralytics needs torchvision, which does not load beside the CPU torch this project installs, so
in the project's own environment only the refusal runs; the export tests run where ultralytics
imports (a separate environment, see docs/DETECTION.md) and skip elsewhere."""
from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest

from fixtures_detect import NAMES, YOLO_FIXTURE, ultralytics_detections

INSTALLED = importlib.util.find_spec("ultralytics") is not None
EXPORT = "yolo export model=shapes.pt format=onnx dynamic=True"


def build(tmp_path, **options):
    from tritonforge.builder import BuildOptions, build_repository

    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(YOLO_FIXTURE / "shapes.pt", models / "shapes.pt")
    results = {r.name: r for r in build_repository(models, tmp_path / "repo", BuildOptions(**options))}
    return models, results


@pytest.mark.skipif(INSTALLED, reason="ultralytics is installed here: the checkpoint is exported instead")
@pytest.mark.parametrize("allow_pickle", [False, True])
def test_without_ultralytics_a_checkpoint_is_refused_with_the_export_command(tmp_path, allow_pickle):
    _, results = build(tmp_path, allow_pickle=allow_pickle)
    assert {n: r.status.name for n, r in results.items()} == {"shapes": "FAILED"}
    assert results["shapes"].reason == ("shapes.pt: an ultralytics checkpoint, which needs ultralytics to load; export it "
                                        f"to ONNX and build that: {EXPORT}")


def ultralytics_or_skip():
    if not INSTALLED:
        pytest.skip("ultralytics is not installed (it needs torchvision, which the CPU torch here does not load)")
    try:
        import ultralytics  # noqa: F401
    except Exception as exc:  # installed but not importable here: nothing to export with
        pytest.skip(f"ultralytics does not import here: {type(exc).__name__}")


def test_with_ultralytics_a_checkpoint_is_not_unpickled_without_allow_pickle(tmp_path):
    ultralytics_or_skip()
    _, results = build(tmp_path)
    assert results["shapes"].status.name == "FAILED"
    assert results["shapes"].reason == ("shapes.pt: an ultralytics checkpoint is a pickle and loading it runs code from the "
                                        f"file; pass --allow-pickle if you trust it, or build its ONNX export: {EXPORT}")


def test_with_ultralytics_and_allow_pickle_a_checkpoint_is_built_as_its_export(tmp_path):
    """The checkpoint of the fixture's exports: exported by ultralytics (dynamic=True) outside the
    models folder, verified against the PyTorch model, built as a batched detector with its
    ensemble, whose detections are ultralytics'."""
    from tritonforge.ensembles.library import load_template

    ultralytics_or_skip()
    models, results = build(tmp_path, allow_pickle=True, max_batch_size=8)
    assert {n: r.status.name for n, r in results.items()} == {
        "shapes": "OK", "shapes_letterbox": "OK", "shapes_detect_post": "OK", "shapes_detect": "OK"}, results["shapes"].reason
    assert results["shapes"].framework == "yolo"
    # verified against the PyTorch model, not against the export itself: fused convolutions differ a little
    assert 0 < results["shapes"].max_error < 1e-2
    assert results["shapes"].signature.describe() == "images:float32[?x3x160x160] -> output0:float32[?x7x?]"
    assert sorted(p.name for p in models.iterdir()) == ["shapes.pt"]  # the export was not written beside it
    repo = tmp_path / "repo"
    assert (repo / "shapes_detect" / "labels.txt").read_text().split() == NAMES

    import onnxruntime as ort

    letterbox, post = load_template("letterbox"), load_template("detect_post")
    session = ort.InferenceSession(str(repo / "shapes" / "1" / "model.onnx"))
    box_spec = {"output": "images", "dtype": "float32", "height": 160, "width": 160, "pad": 114, "size_output": "IMAGE_SIZE",
                "max_bytes": 1 << 24, "max_pixels": 1 << 24}
    post_spec = {"input": "output0", "size_input": "IMAGE_SIZE", "layout": "v8", "names": NAMES, "height": 160, "width": 160,
                 "conf": 0.25, "iou": 0.7, "max_det": 300}
    for image, expected in ultralytics_detections().items():
        features = letterbox.images_to_input([(YOLO_FIXTURE / "images" / image).read_bytes()], box_spec)
        [head] = session.run(None, {"images": features["images"]})
        out = post.detections(head, features["IMAGE_SIZE"], post_spec)
        count = int(out["COUNT"][0, 0])
        assert count == len(expected["boxes"]) and out["CLASSES"][0, :count].tolist() == expected["classes"], image
        np.testing.assert_allclose(out["BOXES"][0, :count], np.reshape(expected["boxes"], (-1, 4)), atol=1.5)
        np.testing.assert_allclose(out["SCORES"][0, :count], expected["scores"], atol=2e-3)
