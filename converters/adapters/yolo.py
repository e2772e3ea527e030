"""YOLO detectors exported by ultralytics: ONNX files that carry ``task: detect`` in their metadata,
and ``.pt`` checkpoints (refused with the command that exports them: ultralytics is not installed here).

An ultralytics export records ``names`` (a dict literal), ``stride`` (the largest), ``imgsz``
([height, width]) and ``batch`` as ONNX metadata props. Its one output is laid out
``[batch, 4 + classes, anchors]`` (v8/v11: cx, cy, w, h, class scores) or ``[batch, anchors,
5 + classes]`` (v5: with objectness). A ``dynamic=True`` export leaves batch, height and width
symbolic (the class axis may be too: ``Concatoutput0_dim_1``), and only heights and widths that
are multiples of the stride run at all: the entry is written with its height and width fixed at the export's ``imgsz``
(and the class axis at its count), which is what the detection ensemble's letterbox feeds, so
verification rows are images of that size, not generic rows.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tritonforge.errors import BuildError
from tritonforge.repository import Signature
from tritonforge.sidecar import Sidecar
from ..formats import get as get_format
from ..formats.onnx import save_single_file
from ..probe import FileProbe, one_line
from .base import AdapterBase

# What an ultralytics checkpoint's pickle names: its model classes live in this module.
ULTRALYTICS_PICKLE_MARK = b"ultralytics.nn.tasks"


@dataclass(frozen=True)
class Detector:
    """What the detection ensemble needs to know of a YOLO export."""

    names: tuple[str, ...]
    stride: int
    height: int
    width: int
    layout: str  # "v8": [batch, 4 + classes, anchors]; "v5": [batch, anchors, 5 + classes]
    input: str
    output: str
    batched: bool  # the batch axis is symbolic (a dynamic=True export)


def metadata(model) -> dict[str, str]:
    return {prop.key: prop.value for prop in model.metadata_props}


def _literal(props: dict[str, str], key: str, source: str):
    try:
        return ast.literal_eval(props[key])
    except (KeyError, ValueError, SyntaxError):
        raise BuildError(f"{source}: ultralytics metadata '{key}' is missing or unreadable ({props.get(key)!r})") from None


def read_detector(model, source: str) -> Detector:
    """The detector facts of an ultralytics ONNX export, or a one-line refusal naming what is off."""
    props = metadata(model)
    names_map = _literal(props, "names", source)
    if not isinstance(names_map, dict) or sorted(names_map) != list(range(len(names_map))):
        raise BuildError(f"{source}: ultralytics metadata 'names' is not a dict of class indices 0..n-1")
    names = tuple(str(names_map[i]) for i in range(len(names_map)))
    stride = int(_literal(props, "stride", source))
    imgsz = _literal(props, "imgsz", source)
    height, width = (imgsz, imgsz) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[1]))
    if stride <= 0 or height % stride or width % stride:
        raise BuildError(f"{source}: imgsz {height}x{width} is not a multiple of the stride {stride}")
    initializers = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise BuildError(f"{source}: a YOLO detector has one input and one output, this export has "
                         f"{len(inputs)} and {len(model.graph.output)}")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in model.graph.output[0].type.tensor_type.shape.dim]
    if len(dims) != 3:
        raise BuildError(f"{source}: output '{model.graph.output[0].name}' has {len(dims)} axes, a YOLO head has 3")
    layout = _layout(dims, len(names), height, width, stride, source)
    batch = inputs[0].type.tensor_type.shape.dim[0]
    return Detector(names, stride, height, width, layout, inputs[0].name, model.graph.output[0].name,
                    batched=not batch.HasField("dim_value"))


def _layout(dims: list[int | None], classes: int, height: int, width: int, stride: int, source: str) -> str:
    """v8 when an axis of 4 + classes precedes the anchors, v5 when 5 + classes ends the shape;
    a symbolic class axis (dynamic exports) is read as v8, the layout ultralytics' exporter writes."""
    _, a, b = dims
    if a == 4 + classes or (a is None and b != 5 + classes):
        return "v8"
    if b == 5 + classes:
        return "v5"
    shown = ", ".join("?" if d is None else str(d) for d in dims)
    raise BuildError(f"{source}: output shape [{shown}] is neither [batch, 4 + {classes}, anchors] (v8/v11) "
                     f"nor [batch, anchors, 5 + {classes}] (v5)")


def fix_spatial_axes(model, detector: Detector) -> None:
    """Height, width and the class axis as the export's own numbers; the batch stays symbolic."""
    shape = model.graph.input[[v.name for v in model.graph.input].index(detector.input)].type.tensor_type.shape
    for axis, size in ((2, detector.height), (3, detector.width)):
        if not shape.dim[axis].HasField("dim_value"):
            shape.dim[axis].dim_value = size
    out = model.graph.output[0].type.tensor_type.shape
    classes_axis, classes = (1, 4 + len(detector.names)) if detector.layout == "v8" else (2, 5 + len(detector.names))
    if not out.dim[classes_axis].HasField("dim_value"):
        out.dim[classes_axis].dim_value = classes


def is_ultralytics_checkpoint(probe: FileProbe) -> bool:
    """A ``torch.save`` zip whose pickle names ultralytics' model classes (read as bytes, never unpickled)."""
    import zipfile

    members = [n for n in probe.zip_names if n.endswith("/data.pkl")]
    if not members or probe.path.is_dir():
        return False
    try:
        with zipfile.ZipFile(probe.path) as archive, archive.open(members[0]) as pickled:
            return ULTRALYTICS_PICKLE_MARK in pickled.read(1 << 20)
    except (zipfile.BadZipFile, OSError):
        return False


class YoloAdapter(AdapterBase):
    framework = "yolo"
    formats = ("onnx",)
    neural = True

    def detect(self, probe: FileProbe) -> bool:
        if probe.path.is_dir():
            return False
        if probe.suffix == ".onnx":
            return _onnx_task(probe.path) == "detect"
        return probe.suffix in (".pt", ".pth") and is_ultralytics_checkpoint(probe)

    def load(self, probe: FileProbe, sidecar: Sidecar) -> Any:
        import onnx

        name = probe.path.name
        if probe.suffix != ".onnx":
            raise BuildError(f"{name}: an ultralytics checkpoint, which needs ultralytics to load; export it to ONNX "
                             f"and build that: yolo export model={name} format=onnx dynamic=True")
        try:
            model = onnx.load(str(probe.path))
            onnx.checker.check_model(model, full_check=False)
        except Exception as exc:
            raise BuildError(f"{name}: not a valid ONNX model ({one_line(exc)})") from None
        return {"proto": model, "path": probe.path, "detector": read_detector(model, name)}

    def convert(self, model: Any, sidecar: Sidecar, fmt: str, dest: Path) -> Signature | None:
        import onnx

        proto = onnx.ModelProto()
        proto.CopyFrom(model["proto"])
        fix_spatial_axes(proto, model["detector"])
        save_single_file(proto, dest)
        return None

    def reference(self, model: Any, inputs: dict[str, np.ndarray], signature: Signature) -> dict[str, np.ndarray]:
        # The source of an exported detector is ONNX Runtime on the file as ultralytics wrote it.
        return get_format("onnx").runner(model["path"])(inputs)

    def sample_inputs(self, model: Any, signature: Signature, rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Images at the export's own size (a detector runs at multiples of its stride only)."""
        detector: Detector = model["detector"]
        batch = rows if detector.batched else 1
        return {detector.input: rng.random((batch, 3, detector.height, detector.width)).astype(np.float32)}

    def detector(self, model: Any) -> Detector:
        return model["detector"]


def _onnx_task(path: Path) -> str | None:
    """The ``task`` an ultralytics export records, read without its weights; None for other files."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        return None  # not readable as ONNX: the generic ONNX adapter words the refusal
    return metadata(model).get("task")
