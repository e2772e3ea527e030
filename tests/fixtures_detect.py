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
# The dynamic export without ultralytics' metadata, its head declared by a sidecar: as v8, and re-laid as v5.
DECLARED_DETECTOR, V5_DETECTOR = "shapes_plain", "shapes_v5"
NAMES = ["square", "circle", "triangle"]
DECLARATIONS = {DECLARED_DETECTOR: "detect: {layout: v8, imgsz: 160, stride: 32, names: [square, circle, triangle]}\n",
                V5_DETECTOR: "detect:\n  layout: v5\n  imgsz: [160, 160]\n  names: [square, circle, triangle]\n"}


def without_metadata(source: Path, target: Path) -> Path:
    """An ultralytics export with its metadata props stripped: a YOLO-style ONNX nothing names."""
    import onnx

    model = onnx.load(str(source))
    del model.metadata_props[:]
    onnx.save(model, str(target))
    return target


def as_v5(source: Path, target: Path) -> Path:
    """The export's v8 head ``[batch, 4 + classes, anchors]`` re-laid as YOLOv5's ``[batch, anchors,
    5 + classes]``: boxes, objectness = the best class score, class scores / objectness (so
    objectness x class is the v8 score again), no metadata. Same weights, so the same boxes."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(without_metadata(source, target)))
    graph, head = model.graph, model.graph.output[0].name
    v8 = f"{head}_v8"
    for node in graph.node:
        node.output[:] = [v8 if o == head else o for o in node.output]
    const = lambda name, values, kind=TensorProto.INT64: helper.make_tensor(name, kind, [len(values)], values)
    graph.initializer.extend([const("v5_0", [0]), const("v5_4", [4]), const("v5_end", [2**62]), const("v5_axis", [2]),
                              const("v5_eps", [1e-12], TensorProto.FLOAT)])
    graph.node.extend([
        helper.make_node("Transpose", [v8], ["v5_rows"], perm=[0, 2, 1]),
        helper.make_node("Slice", ["v5_rows", "v5_0", "v5_4", "v5_axis"], ["v5_box"]),
        helper.make_node("Slice", ["v5_rows", "v5_4", "v5_end", "v5_axis"], ["v5_scores"]),
        helper.make_node("ReduceMax", ["v5_scores", "v5_axis"], ["v5_obj"], keepdims=1),
        helper.make_node("Max", ["v5_obj", "v5_eps"], ["v5_obj_safe"]),
        helper.make_node("Div", ["v5_scores", "v5_obj_safe"], ["v5_cls"]),
        helper.make_node("Concat", ["v5_box", "v5_obj", "v5_cls"], [head], axis=2),
    ])
    dims = graph.output[0].type.tensor_type.shape.dim
    dims[1].Clear()
    dims[1].dim_param = "anchors"
    dims[2].Clear()
    dims[2].dim_value = 5 + len(NAMES)
    onnx.checker.check_model(model)
    onnx.save(model, str(target))
    return target


def ultralytics_detections(export: str = "shapes_dynamic.onnx") -> dict:
    """ultralytics' own predictions on an export (the dynamic one by default), by image name (detections.json)."""
    return json.loads((YOLO_FIXTURE / "detections.json").read_text())["detections"][export]


@pytest.fixture(scope="session")
def detect_models(tmp_path_factory) -> Path:
    """A models folder with both ultralytics exports, and the dynamic one without metadata declared
by sidecars (as v8, and re-laid as v5). Read-only for tests: copy before changing."""
    root = tmp_path_factory.mktemp("detect_models")
    shutil.copyfile(YOLO_FIXTURE / "shapes_dynamic.onnx", root / f"{DETECTOR}.onnx")
    shutil.copyfile(YOLO_FIXTURE / "shapes.onnx", root / f"{STATIC_DETECTOR}.onnx")
    without_metadata(YOLO_FIXTURE / "shapes_dynamic.onnx", root / f"{DECLARED_DETECTOR}.onnx")
    as_v5(YOLO_FIXTURE / "shapes_dynamic.onnx", root / f"{V5_DETECTOR}.onnx")
    for name, sidecar in DECLARATIONS.items():
        (root / f"{name}.yaml").write_text(sidecar)
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
