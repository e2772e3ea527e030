"""YOLO detectors: ONNX files that carry ultralytics' ``task: detect`` in their metadata, YOLO-style
ONNX files whose sidecar declares the head (``detect: {layout: v8, imgsz: 640, names: [...]}``), and
ultralytics ``.pt`` checkpoints (exported to ONNX through ultralytics where it imports and
``--allow-pickle`` is given; refused otherwise, with the command that exports them).

An ultralytics export records ``names`` (a dict literal), ``stride`` (the largest), ``imgsz``
([height, width]) and ``batch`` as ONNX metadata props. Its one output is laid out
``[batch, 4 + classes, anchors]`` (v8/v11: cx, cy, w, h, class scores) or ``[batch, anchors,
5 + classes]`` (v5: with objectness). A ``dynamic=True`` export leaves batch, height and width
symbolic (the class axis may be too: ``Concatoutput0_dim_1``), and only heights and widths that
are multiples of the stride run at all: the entry is written with its height and width fixed at the export's ``imgsz``
(and the class axis at its count), which is what the detection ensemble's letterbox feeds, so
verification rows are images of that size, not generic rows.

A sidecar's ``detect:`` group may declare what the metadata would say (:data:`DECLARED`): ``layout``
(v8 or v5), ``imgsz`` (an int or [height, width]; default: the input's own fixed size), ``stride``
(default 32) and ``names`` (default ``class0``.. counted on the head's class axis). A declaration makes an ONNX
file without ultralytics' metadata a detector, and wins over the metadata where both say a thing;
either way the graph is checked against it (one-line refusals naming the key).
"""
from __future__ import annotations

import ast
import importlib.util
import logging
import shutil
import tempfile
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
LAYOUTS = ("v8", "v5")
# The sidecar detect: keys that declare the head (the others are the ensemble's settings).
DECLARED = ("layout", "imgsz", "stride")
DEFAULT_STRIDE = 32  # ultralytics' P5 detectors (v5, v8, v11 n..x); a P6 model declares 64


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


def declaration(sidecar) -> dict[str, Any]:
    """What a sidecar's ``detect:`` group declares of the head (layout, imgsz, stride, names), checked;
    empty when it declares none of :data:`DECLARED`."""
    raw = getattr(sidecar, "detect", None)
    if not isinstance(raw, dict) or not any(key in raw for key in DECLARED):
        return {}
    where = "detect"
    out: dict[str, Any] = {}
    if "layout" in raw:
        if raw["layout"] not in LAYOUTS:
            raise BuildError(f"{where}: 'layout' must be v8 ([batch, 4 + classes, anchors]) or v5 ([batch, anchors, "
                             f"5 + classes]), got {raw['layout']!r}")
        out["layout"] = raw["layout"]
    if "stride" in raw:
        out["stride"] = _positive(where, "stride", raw["stride"])
    if "imgsz" in raw:
        value = raw["imgsz"]
        sides = value if isinstance(value, list) and len(value) == 2 else [value] * 2 if not isinstance(value, list) else None
        if sides is None:
            raise BuildError(f"{where}: 'imgsz' must be a size or [height, width], got {value!r}")
        out["imgsz"] = tuple(_positive(where, "imgsz", side) for side in sides)
    names = raw.get("names")
    if names is not None:
        if not isinstance(names, list) or not names:
            raise BuildError(f"{where}: 'names' must be a list of class names")
        out["names"] = tuple(str(n) for n in names)
    return out


def _positive(where: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BuildError(f"{where}: '{key}' must be a positive integer, got {value!r}")
    return value


def declares_detector(sidecar) -> bool:
    """A sidecar that declares a head makes its ONNX file a detector, metadata or not."""
    try:
        return bool(declaration(sidecar))
    except BuildError:
        return True  # declared, badly: the YOLO adapter's load words the refusal


def read_detector(model, source: str, sidecar=None) -> Detector:
    """The detector facts of a YOLO ONNX graph from ultralytics' metadata and the sidecar's
    declaration (which wins), or a one-line refusal naming what is off."""
    props = metadata(model)
    try:
        declared = declaration(sidecar)
    except BuildError as exc:
        raise BuildError(f"{source}: sidecar {exc}") from None
    exported = props.get("task") == "detect"  # ultralytics' own metadata: every fact must be readable
    initializers = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise BuildError(f"{source}: a YOLO detector has one input and one output, this export has "
                         f"{len(inputs)} and {len(model.graph.output)}")
    names = _names(props, declared, exported, source)
    stride = declared.get("stride") or (int(_literal(props, "stride", source)) if exported or "stride" in props else DEFAULT_STRIDE)
    height, width = _imgsz(props, declared, inputs[0], exported, source)
    if stride <= 0 or height % stride or width % stride:
        raise BuildError(f"{source}: imgsz {height}x{width} is not a multiple of the stride {stride}")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in model.graph.output[0].type.tensor_type.shape.dim]
    if len(dims) != 3:
        raise BuildError(f"{source}: output '{model.graph.output[0].name}' has {len(dims)} axes, a YOLO head has 3")
    layout = declared.get("layout") or _layout(dims, names, height, width, stride, source)
    if names is None:
        names = _counted_names(dims, layout, source)
    _check_head(dims, layout, len(names), source)
    batch = inputs[0].type.tensor_type.shape.dim[0]
    return Detector(names, stride, height, width, layout, inputs[0].name, model.graph.output[0].name,
                    batched=not batch.HasField("dim_value"))


def _names(props, declared, exported: bool, source: str) -> tuple[str, ...] | None:
    """Class names: the declaration's, else ultralytics' metadata; None: count them on the head.
    (Not the sidecar's ``labels``: the build holds those to an output whose last axis is the class
    count, which a YOLO head is not.)"""
    if "names" in declared and not exported:
        return declared["names"]
    if exported or "names" in props:
        names_map = _literal(props, "names", source)
        if not isinstance(names_map, dict) or sorted(names_map) != list(range(len(names_map))):
            raise BuildError(f"{source}: ultralytics metadata 'names' is not a dict of class indices 0..n-1")
        return tuple(str(names_map[i]) for i in range(len(names_map)))
    return None


def _imgsz(props, declared, image, exported: bool, source: str) -> tuple[int, int]:
    """(height, width): declared, else the metadata's, else the input's own fixed sides."""
    shape = image.type.tensor_type.shape.dim
    if len(shape) != 4:
        raise BuildError(f"{source}: input '{image.name}' has {len(shape)} axes, a YOLO detector takes [batch, 3, height, width]")
    fixed = tuple(d.dim_value if d.HasField("dim_value") else None for d in shape[2:])
    if "imgsz" in declared:
        size = declared["imgsz"]
        if any(f is not None and f != s for f, s in zip(fixed, size)):
            raise BuildError(f"{source}: sidecar detect: 'imgsz' {size[0]}x{size[1]} is not the input's own size "
                             f"{'x'.join('?' if f is None else str(f) for f in fixed)}")
        return size
    if exported or "imgsz" in props:
        imgsz = _literal(props, "imgsz", source)
        return (imgsz, imgsz) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[1]))
    if None in fixed:
        raise BuildError(f"{source}: input '{image.name}' has no fixed height and width: declare the size it runs at "
                         f"in the sidecar (detect: {{imgsz: [height, width]}})")
    return fixed


def _counted_names(dims, layout: str, source: str) -> tuple[str, ...]:
    """``class0``.. from the head's class axis, where no names are given (as ultralytics names them)."""
    axis = dims[1] if layout == "v8" else dims[2]
    classes = None if axis is None else axis - (4 if layout == "v8" else 5)
    if not classes or classes < 1:
        raise BuildError(f"{source}: the head's class axis is {'symbolic' if axis is None else axis}: declare the class "
                         f"names in the sidecar (detect: {{names: [...]}})")
    return tuple(f"class{i}" for i in range(classes))


def _check_head(dims, layout: str, classes: int, source: str) -> None:
    axis, extra = (dims[1], 4) if layout == "v8" else (dims[2], 5)
    if axis is not None and axis != extra + classes:
        shown = ", ".join("?" if d is None else str(d) for d in dims)
        expected = f"[batch, 4 + {classes}, anchors]" if layout == "v8" else f"[batch, anchors, 5 + {classes}]"
        raise BuildError(f"{source}: output shape [{shown}] is not the {layout} layout {expected} of {classes} classes")


def _layout(dims: list[int | None], names, height: int, width: int, stride: int, source: str) -> str:
    """v8 when an axis of 4 + classes precedes the anchors, v5 when 5 + classes ends the shape;
    a symbolic class axis (dynamic exports) is read as v8, the layout ultralytics' exporter writes."""
    if names is None:
        raise BuildError(f"{source}: the sidecar's detect: group declares no 'layout': v8 ([batch, 4 + classes, anchors]) "
                         f"or v5 ([batch, anchors, 5 + classes])")
    classes = len(names)
    _, a, b = dims
    if a == 4 + classes or (a is None and b != 5 + classes):
        return "v8"
    if b == 5 + classes:
        return "v5"
    shown = ", ".join("?" if d is None else str(d) for d in dims)
    raise BuildError(f"{source}: output shape [{shown}] is neither [batch, 4 + {classes}, anchors] (v8/v11) "
                     f"nor [batch, anchors, 5 + {classes}] (v5)")


def check_declared_head(path: Path, detector: Detector, source: str) -> None:
    """A declared head, checked by running the graph once on a grey image at the declared size:
    a symbolic axis says nothing, and a v8 head declared v5 (or the other way) would otherwise
    build, verify against itself and answer nonsense boxes."""
    image = np.full((1, 3, detector.height, detector.width), 114 / 255, np.float32)
    try:
        head = get_format("onnx").runner(path)({detector.input: image})[detector.output]
    except Exception as exc:
        raise BuildError(f"{source}: does not run at the declared imgsz {detector.height}x{detector.width} "
                         f"({one_line(exc)})") from None
    classes = len(detector.names)
    axis, extra = (1, 4) if detector.layout == "v8" else (2, 5)
    # At least one anchor a cell of the coarsest grid: a head read the wrong way round has a few.
    cells = (detector.height // detector.stride) * (detector.width // detector.stride)
    if head.ndim != 3 or head.shape[axis] != extra + classes or head.shape[3 - axis] < cells:
        expected = f"[1, 4 + {classes}, anchors]" if detector.layout == "v8" else f"[1, anchors, 5 + {classes}]"
        raise BuildError(f"{source}: output '{detector.output}' is {list(head.shape)} on one image, not the declared "
                         f"{detector.layout} layout {expected}")


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
            return declares_detector(getattr(probe, "sidecar", None)) or _onnx_task(probe.path) == "detect"
        return probe.suffix in (".pt", ".pth") and is_ultralytics_checkpoint(probe)

    def load(self, probe: FileProbe, sidecar: Sidecar) -> Any:
        import onnx

        name = probe.path.name
        if probe.suffix != ".onnx":
            return export_checkpoint(probe, sidecar)
        try:
            model = onnx.load(str(probe.path))
            onnx.checker.check_model(model, full_check=False)
        except Exception as exc:
            raise BuildError(f"{name}: not a valid ONNX model ({one_line(exc)})") from None
        detector = read_detector(model, name, sidecar)
        if declaration(sidecar):
            check_declared_head(probe.path, detector, name)
        return {"proto": model, "path": probe.path, "detector": detector}

    def convert(self, model: Any, sidecar: Sidecar, fmt: str, dest: Path) -> Signature | None:
        import onnx

        proto = onnx.ModelProto()
        proto.CopyFrom(model["proto"])
        fix_spatial_axes(proto, model["detector"])
        save_single_file(proto, dest)
        return None

    def reference(self, model: Any, inputs: dict[str, np.ndarray], signature: Signature) -> dict[str, np.ndarray]:
        # The source of an exported detector is ONNX Runtime on the file as ultralytics wrote it;
        # of a checkpoint, the PyTorch model as ultralytics loads it, so its export is verified too.
        if "torch" in model:
            return _run_torch(model["torch"], model["detector"], inputs)
        return get_format("onnx").runner(model["path"])(inputs)

    def sample_inputs(self, model: Any, signature: Signature, rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Images at the export's own size (a detector runs at multiples of its stride only)."""
        detector: Detector = model["detector"]
        batch = rows if detector.batched else 1
        return {detector.input: rng.random((batch, 3, detector.height, detector.width)).astype(np.float32)}

    def detector(self, model: Any) -> Detector:
        return model["detector"]


def export_command(name: str) -> str:
    return f"yolo export model={name} format=onnx dynamic=True"


def export_checkpoint(probe: FileProbe, sidecar: Sidecar) -> dict[str, Any]:
    """An ultralytics checkpoint exported by ultralytics itself (``dynamic=True``, its other
    defaults: the checkpoint's imgsz, simplified) in a temporary folder, and loaded as that export,
    with the PyTorch model as the reference it is verified against. Needs ultralytics importable
    and ``--allow-pickle`` (unpickling a checkpoint runs its code)."""
    import onnx

    name = probe.path.name
    refusal = f"{name}: an ultralytics checkpoint, which needs ultralytics to load; export it to ONNX and build that: {export_command(name)}"
    if importlib.util.find_spec("ultralytics") is None:
        raise BuildError(refusal)
    if not probe.allow_pickle:
        raise BuildError(f"{name}: an ultralytics checkpoint is a pickle and loading it runs code from the file; pass "
                         f"--allow-pickle if you trust it, or build its ONNX export: {export_command(name)}")
    try:
        from ultralytics import YOLO
    except Exception as exc:  # ultralytics installed but broken here (torchvision beside a CPU torch, say)
        raise BuildError(f"{refusal} (ultralytics does not import here: {one_line(exc)})") from None
    # ultralytics writes the export beside the checkpoint: a copy in a folder of our own, never the models folder.
    workdir = tempfile.TemporaryDirectory(prefix="tritonforge-yolo-")
    copy = Path(workdir.name) / name
    shutil.copyfile(probe.path, copy)
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)  # its export prints a dozen lines into the build's progress otherwise
    try:
        exported = Path(YOLO(str(copy)).export(format="onnx", dynamic=True, verbose=False))  # the checkpoint says its task
        model = onnx.load(str(exported))
    except Exception as exc:
        raise BuildError(f"{name}: ultralytics could not export it to ONNX ({type(exc).__name__}: {one_line(exc)})") from None
    finally:
        LOGGER.setLevel(level)
    if metadata(model).get("task") != "detect":
        raise BuildError(f"{name}: an ultralytics {metadata(model).get('task', '?')} model, not a detector (task: detect)")
    network = YOLO(str(copy)).model.float().eval()  # a fresh load: the exporter fused its own copy
    # The folder lives as long as the loaded model (the export is read from it).
    return {"proto": model, "path": exported, "detector": read_detector(model, name, sidecar), "workdir": workdir,
            "torch": network}


def _run_torch(network, detector: Detector, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """An ultralytics detection model in eval mode: its first answer is the decoded head."""
    import torch

    with torch.no_grad():
        answer = network(torch.from_numpy(np.ascontiguousarray(inputs[detector.input], np.float32)))
    head = answer[0] if isinstance(answer, (list, tuple)) else answer
    return {detector.output: head.numpy()}


def undeclared_head_hint(model) -> str:
    """For a plain ONNX graph that fails to run on generic rows: when it is shaped like a YOLO
    detector (one [batch, 3, h, w] input, one 3-axis output), how to declare it; '' otherwise."""
    initializers = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        return ""
    image = inputs[0].type.tensor_type.shape.dim
    if len(image) != 4 or image[1].dim_value != 3 or len(model.graph.output[0].type.tensor_type.shape.dim) != 3:
        return ""
    return ("; if it is a YOLO detector exported without ultralytics' metadata, declare its head in the sidecar: "
            "detect: {layout: v8, imgsz: [height, width], names: [...]}")


def _onnx_task(path: Path) -> str | None:
    """The ``task`` an ultralytics export records, read without its weights; None for other files."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        return None  # not readable as ONNX: the generic ONNX adapter words the refusal
    return metadata(model).get("task")
