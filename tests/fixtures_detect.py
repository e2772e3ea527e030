"""Detection fixtures: the committed ultralytics export (tests/fixtures/yolo, made by its
make_fixture.py in a separate environment), built once and served once per session."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

YOLO_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "yolo"
DETECTOR = "shapes"  # the dynamic=True export, under this name in the models folder
STATIC_DETECTOR = "shapes_static"  # the static export (batch 1)


def ultralytics_detections(export: str = "shapes_dynamic.onnx") -> dict:
    """ultralytics' own predictions on an export (the dynamic one by default), by image name (detections.json)."""
    return json.loads((YOLO_FIXTURE / "detections.json").read_text())["detections"][export]


@pytest.fixture(scope="session")
def detect_models(tmp_path_factory) -> Path:
    """A models folder with both ultralytics exports. Read-only for tests: copy before changing."""
    root = tmp_path_factory.mktemp("detect_models")
    shutil.copyfile(YOLO_FIXTURE / "shapes_dynamic.onnx", root / f"{DETECTOR}.onnx")
    shutil.copyfile(YOLO_FIXTURE / "shapes.onnx", root / f"{STATIC_DETECTOR}.onnx")
    return root


@pytest.fixture(scope="session")
def built_detect(detect_models, tmp_path_factory):
    """The detectors built once by build-repo, each with the detection ensemble its build plans:
    (repository, results by name)."""
    from tritonforge.builder import BuildOptions, build_repository

    repo = tmp_path_factory.mktemp("detect_built") / "model_repository"
    results = {r.name: r for r in build_repository(detect_models, repo, BuildOptions(max_batch_size=8))}
    return repo, results


@pytest.fixture(scope="session")
def detect_server(built_detect):
    """The built detectors and the detection ensemble served once per session."""
    from tritonforge.serving.server import serve

    repo, results = built_detect
    failed = {n: r.reason for n, r in results.items() if r.status.name != "OK"}
    if failed:
        pytest.fail(f"detectors did not build: {failed}")
    with serve(repo, control_mode="none", ready_timeout=600) as server:
        yield server
