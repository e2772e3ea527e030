"""The sidecar: what a model file cannot say about itself, read from ``<name>.yaml``.

Every key is optional::

    format: onnx                 # onnx (default) | torchscript (PyTorch) | savedmodel (TensorFlow) | fil (trees)
    device: auto                 # auto (GPU for neural networks, CPU for trees) | cpu | gpu
    instances: 1                 # model instances per device
    inputs:                      # names, shapes (-1 = dynamic batch) and dtypes where the file has none
      - {name: image, shape: [-1, 3, 32, 32], dtype: float32}
    labels: [cat, dog]           # class names, or a path to a file with one per line
    max_batch_size: 64           # 0 disables batching
    dynamic_batching: {max_queue_delay_microseconds: 100, preferred_batch_size: [8, 16]}
    tolerance: {atol: 1.0e-4, rtol: 1.0e-3}
    samples: rows.npz            # sample inputs, one array per input name; else generated
    sample_rows: 8
    opset: 17
    preprocess: {step: tabular}  # an ensemble: Python-backend steps around the model (see ensembles/)
    postprocess: {step: classify, top_k: 3}
    fuse: true                   # also <ensemble>_fused: the steps inside one ONNX graph where they can be (build-repo --fuse)

A folder may also hold ``tritonforge.yaml`` with ``defaults:`` for every model and ``models:``
keyed by model name; a model's own sidecar wins over both.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import reprlib

import numpy as np
import yaml

from .errors import BuildError

FOLDER_SIDECAR = "tritonforge.yaml"
SIDECAR_SUFFIXES = (".yaml", ".yml")
FORMATS = ("onnx", "torchscript", "savedmodel", "fil")
MAX_SIDECAR_BYTES = 1 << 20  # a sidecar is a few settings; anything larger is a mistake or an attack
MAX_NESTING = 16

_shown = reprlib.Repr()
_shown.maxstring, _shown.maxother, _shown.maxlist, _shown.maxdict, _shown.maxlevel = 60, 60, 6, 6, 2


def show(value: Any) -> str:
    """A value as an error message may print it: bounded, however large the value."""
    return _shown.repr(value)
DEVICES = ("auto", "cpu", "gpu")


@dataclass(frozen=True)
class InputOverride:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype


@dataclass(frozen=True)
class Tolerance:
    """How far the artifact may be from the source framework; None: verify's defaults."""

    atol: float | None = None
    rtol: float | None = None


@dataclass(frozen=True)
class Batching:
    """``max_batch_size``, ``dynamic_batching``, ``queue`` and the priority keys."""

    max_batch_size: int | None = None  # None: the command line's --max-batch-size
    dynamic: bool = True
    max_queue_delay_microseconds: int = 100
    preferred_batch_size: tuple[int, ...] | None = None
    queue: tuple[tuple[str, Any], ...] = ()  # default_queue_policy settings, checked
    priority_levels: int = 0
    default_priority_level: int = 0


@dataclass(frozen=True)
class OnnxRuntimeSettings:
    """``onnxruntime:``, the cpu variant of an ONNX entry; None: the portable default."""

    intra_op_threads: int | None = None
    inter_op_threads: int | None = None
    graph_level: str | None = None  # basic | extended | disabled
    openvino: bool = False  # OpenVINO as cpu_execution_accelerator


@dataclass(frozen=True)
class TensorRTSettings:
    """``tensorrt:``, the gpu variant of an ONNX entry: the TensorRT accelerator."""

    precision: str = "fp32"
    max_workspace_bytes: int = 1 << 30


@dataclass(frozen=True)
class PrecisionSettings:
    """``precision``, ``calibration``, ``precision_gate`` and ``replace``."""

    reduced: tuple[str, ...] = ()  # reduced-precision entries beside the FP32 one: int8, fp16
    calibration: Path | None = None  # INT8 calibration rows (npz), never the rows that judge the gate
    gate: tuple[tuple[str, float], ...] = ()  # min_agreement / max_error overrides
    replace_fp32: bool = False  # the one reduced precision becomes the FP32 entry's next version


@dataclass(frozen=True)
class Sidecar:
    """One model's settings, merged from the folder sidecar's defaults, its ``models:`` block and
    the model's own sidecar; the groups are the ones a user writes."""

    format: str | None = None
    device: str | None = None
    instances: int = 1
    inputs: tuple[InputOverride, ...] | None = None
    labels: tuple[str, ...] | None = None
    samples: Path | None = None
    sample_rows: int = 8
    opset: int = 17
    preprocess: dict | None = None
    postprocess: dict | None = None
    response_cache: bool = False
    allow_nan: bool | None = None  # None: refuse NaN in the inputs the source model cannot take it in
    fil: dict | None = None  # the FIL entry's group ({output: class_index}), read by the FIL format
    detect: dict | None = None  # a detector's ensemble settings (conf, iou, max_det, names...), read by ensembles/library/detect.py
    task: str | None = None  # a text model's task: classification | embedding (default: its config's architecture)
    normalize: bool | None = None  # a text embedding at unit length
    fuse: bool | None = None  # <ensemble>_fused beside the ensemble (ensembles/fused); None: build-repo's --fuse
    tolerance: Tolerance = Tolerance()
    batching: Batching = Batching()
    onnxruntime: OnnxRuntimeSettings = OnnxRuntimeSettings()
    tensorrt: TensorRTSettings = TensorRTSettings()
    precision: PrecisionSettings = PrecisionSettings()

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file this sidecar names (samples, calibration rows, user step code): part of the build's fingerprint."""
        steps = [Path(step["file"]) for step in (self.preprocess, self.postprocess) if isinstance(step, dict) and step.get("file")]
        return tuple(p for p in (self.samples, self.precision.calibration, *steps) if p)


GROUPS = {"tolerance": Tolerance, "batching": Batching, "onnxruntime": OnnxRuntimeSettings, "tensorrt": TensorRTSettings,
          "precision": PrecisionSettings}
INT_MAX = 2**31 - 1  # Triton's configs hold int32 counts and sizes; a larger number is a mistake


def _int(where: str, key: str, value: Any, minimum: int = 0, maximum: int = INT_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BuildError(f"{where}: '{key}' must be an integer >= {minimum}, got {show(value)}")
    if value > maximum:
        raise BuildError(f"{where}: '{key}' must be an integer <= {maximum}, got {show(value)}")
    return value


def _float(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != value or value == float("inf"):
        raise BuildError(f"{where}: '{key}' must be a finite number >= 0, got {show(value)}")
    return float(value)


def _choice(where: str, key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise BuildError(f"{where}: '{key}' must be one of {', '.join(choices)}, got {show(value)}")
    return value


def _dtype(where: str, value: Any) -> np.dtype:
    if value in ("string", "str", "bytes", "object"):
        return np.dtype(object)
    try:
        return np.dtype(value)
    except TypeError:
        raise BuildError(f"{where}: input dtype {show(value)} is not a numpy dtype name (float32, int64, string...)") from None


def tensor_list(where: str, value: Any) -> tuple[InputOverride, ...]:
    """A list of {name, shape, dtype} tensors, checked (sidecar inputs, user step tensors)."""
    if not isinstance(value, list) or not value:
        raise BuildError(f"{where}: 'inputs' must be a list of {{name, shape, dtype}}")
    parsed = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or "shape" not in item:
            raise BuildError(f"{where}: inputs[{i}] needs at least a 'shape' (a list of integers, -1 for the batch)")
        unknown = set(item) - {"name", "shape", "dtype"}
        if unknown:
            raise BuildError(f"{where}: inputs[{i}] has unknown key {show(sorted(unknown, key=str)[0])} (allowed: name, shape, dtype)")
        shape = item["shape"]
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and (0 < d <= INT_MAX or d == -1)
                                                  for d in shape):
            raise BuildError(f"{where}: inputs[{i}].shape must be a list of positive integers or -1, got {show(shape)}")
        parsed.append(InputOverride(str(item.get("name", f"input_{i}")), tuple(shape), _dtype(where, item.get("dtype", "float32"))))
    return tuple(parsed)


def inside(where: str, key: str, value: Any, base: Path, allowed: tuple[Path, ...] = ()) -> Path:
    """A path a sidecar names, resolved (symlinks followed) and refused unless it lies inside the
    models folder or a folder the user allowed with --allow-outside."""
    if not isinstance(value, str) or not value:
        raise BuildError(f"{where}: '{key}' must be a path relative to the models folder, got {show(value)}")
    path = (base / value).resolve()
    roots = [base.resolve(), *(Path(a).resolve() for a in allowed)]
    if not any(path == root or path.is_relative_to(root) for root in roots):
        raise BuildError(f"{where}: '{key}' path {show(value)} resolves outside the models folder "
                         f"({path}); move it in, or pass --allow-outside {path.parent}")
    return path


@dataclass(frozen=True)
class _Reader:
    """Where a sidecar block comes from: its name for errors, and the folder its paths are relative to."""

    where: str
    base: Path
    allowed: tuple[Path, ...]


def _labels(r: _Reader, value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        path = inside(r.where, "labels", value, r.base, r.allowed)
        if not path.is_file():
            raise BuildError(f"{r.where}: labels file '{value}' does not exist")
        return {"labels": tuple(line.strip() for line in path.read_text().splitlines() if line.strip())}
    if not isinstance(value, list) or not value:
        raise BuildError(f"{r.where}: 'labels' must be a list of class names or a file path")
    return {"labels": tuple(str(v) for v in value)}


def _bool(where: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise BuildError(f"{where}: '{key}' must be true or false, got {show(value)}")
    return value


def _keys(where: str, key: str, value: Any, allowed: tuple[str, ...]) -> dict:
    if not isinstance(value, dict):
        raise BuildError(f"{where}: '{key}' must be a mapping")
    unknown = [k for k in value if k not in allowed]
    if unknown:
        raise BuildError(f"{where}: unknown key '{key}.{str(unknown[0])[:40]}' (allowed: {', '.join(allowed)})")
    return value


def _mapping(where: str, key: str, value: Any) -> dict:
    """A group whose keys the module that reads it checks (it names this sidecar in its refusal)."""
    if not isinstance(value, dict):
        raise BuildError(f"{where}: '{key}' must be a mapping")
    return value


def _tensorrt(r: _Reader, value: Any) -> dict[str, Any]:
    value = _keys(r.where, "tensorrt", value, ("precision", "max_workspace_bytes"))
    out: dict[str, Any] = {}
    if "precision" in value:
        out["tensorrt.precision"] = _choice(r.where, "tensorrt.precision", value["precision"], ("fp32", "fp16"))
    if "max_workspace_bytes" in value:
        out["tensorrt.max_workspace_bytes"] = _int(r.where, "tensorrt.max_workspace_bytes", value["max_workspace_bytes"],
                                                   1 << 20, 1 << 40)
    return out


GRAPH_LEVELS = ("basic", "extended", "disabled")
TEXT_TASKS = ("classification", "embedding")  # what a HuggingFace folder is built as (converters/adapters/huggingface.py)


def _onnxruntime(r: _Reader, value: Any) -> dict[str, Any]:
    value = _keys(r.where, "onnxruntime", value, ("intra_op_threads", "inter_op_threads", "graph_level", "openvino"))
    out: dict[str, Any] = {}
    for key in ("intra_op_threads", "inter_op_threads"):
        if key in value:
            out[f"onnxruntime.{key}"] = _int(r.where, f"onnxruntime.{key}", value[key], 0, 1024)
    if "graph_level" in value:
        out["onnxruntime.graph_level"] = _choice(r.where, "onnxruntime.graph_level", value["graph_level"], GRAPH_LEVELS)
    if "openvino" in value:
        out["onnxruntime.openvino"] = _bool(r.where, "onnxruntime.openvino", value["openvino"])
    return out


# The names the registries define (converters.FORMATS, converters.precision.PRECISIONS) as this
# layer may know them: tests/test_structure.py proves that they agree.
PRECISIONS = ("fp32", "int8", "fp16")


def _precisions(r: _Reader, value: Any) -> dict[str, Any]:
    """``int8``, ``fp16`` or a list of them: entries built beside the FP32 one (fp32 adds nothing)."""
    items = value if isinstance(value, list) else [value]
    chosen = tuple(_choice(r.where, "precision", item, PRECISIONS) for item in items)
    return {"precision.reduced": tuple(dict.fromkeys(p for p in chosen if p != "fp32"))}


def _gate(r: _Reader, value: Any) -> dict[str, Any]:
    value = _keys(r.where, "precision_gate", value, ("min_agreement", "max_error"))
    return {"precision.gate": tuple((key, _float(r.where, f"precision_gate.{key}", item)) for key, item in value.items())}


def _queue(r: _Reader, value: Any) -> dict[str, Any]:
    """Triton's dynamic_batching.default_queue_policy: a full queue or a timed-out request is refused at once."""
    value = _keys(r.where, "queue", value, ("max_queue_size", "default_timeout_microseconds", "timeout_action",
                                            "allow_timeout_override"))
    out = []
    for key, item in value.items():
        if key == "timeout_action":
            out.append((key, _choice(r.where, "queue.timeout_action", item, ("reject", "delay"))))
        elif key == "allow_timeout_override":
            out.append((key, _bool(r.where, "queue.allow_timeout_override", item)))
        else:
            out.append((key, _int(r.where, f"queue.{key}", item, 0, 2**63 - 1 if "timeout" in key else INT_MAX)))
    return {"batching.queue": tuple(out)}


def _step(key: str):
    def parse_step(r: _Reader, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise BuildError(f"{r.where}: '{key}' must be a mapping")
        if "file" in value:  # a user step's code: imported at build time, copied into the repository
            value = {**value, "file": str(inside(r.where, f"{key}.file", value["file"], r.base, r.allowed))}
        return {key: value}
    return parse_step


def _file(key: str, field: str):
    def parse_file(r: _Reader, value: Any) -> dict[str, Any]:
        path = inside(r.where, key, value, r.base, r.allowed)
        if not path.is_file():
            raise BuildError(f"{r.where}: {key} file '{value}' does not exist")
        return {field: path}
    return parse_file


def _dynamic_batching(r: _Reader, value: Any) -> dict[str, Any]:
    if value is False:
        return {"batching.dynamic": False}
    if not isinstance(value, dict):
        raise BuildError(f"{r.where}: 'dynamic_batching' must be false or a mapping")
    out: dict[str, Any] = {"batching.dynamic": True}
    for key, item in value.items():
        if key == "max_queue_delay_microseconds":
            out[f"batching.{key}"] = _int(r.where, f"dynamic_batching.{key}", item)
        elif key == "preferred_batch_size":
            if not isinstance(item, list) or not item:
                raise BuildError(f"{r.where}: 'dynamic_batching.preferred_batch_size' must be a list of integers")
            out[f"batching.{key}"] = tuple(_int(r.where, f"dynamic_batching.{key}", size, 1) for size in item)
        else:
            raise BuildError(f"{r.where}: unknown key 'dynamic_batching.{str(key)[:40]}' (allowed: max_queue_delay_microseconds, preferred_batch_size)")
    return out


def _tolerance(r: _Reader, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not set(value) <= {"atol", "rtol"}:
        raise BuildError(f"{r.where}: 'tolerance' must be a mapping with atol and/or rtol")
    return {f"tolerance.{key}": _float(r.where, f"tolerance.{key}", item) for key, item in value.items()}


def _simple(field: str, check):
    return lambda r, value: {field: check(r, value)}


@dataclass(frozen=True)
class Key:
    """One sidecar key: how its value is checked (into Sidecar fields, ``group.field`` for the
    nested groups), and where its value names a file: ``"value"`` (the value itself, when it is a
    string) or a key inside its mapping (a step's ``file``). Discovery asks this table which files
    are not models."""

    parse: Callable[[_Reader, Any], dict[str, Any]]
    names_file: str | None = None


KEYS: dict[str, Key] = {
    "format": Key(_simple("format", lambda r, v: _choice(r.where, "format", v, FORMATS))),
    "device": Key(_simple("device", lambda r, v: _choice(r.where, "device", v, DEVICES))),
    "instances": Key(_simple("instances", lambda r, v: _int(r.where, "instances", v, 1, 1024))),
    "inputs": Key(_simple("inputs", lambda r, v: tensor_list(r.where, v))),
    "labels": Key(_labels, names_file="value"),
    "max_batch_size": Key(_simple("batching.max_batch_size", lambda r, v: _int(r.where, "max_batch_size", v))),
    "dynamic_batching": Key(_dynamic_batching),
    "tolerance": Key(_tolerance),
    "samples": Key(_file("samples", "samples"), names_file="value"),
    "sample_rows": Key(_simple("sample_rows", lambda r, v: _int(r.where, "sample_rows", v, 1, 100_000))),
    "opset": Key(_simple("opset", lambda r, v: _int(r.where, "opset", v, 7, 100))),
    "preprocess": Key(_step("preprocess"), names_file="file"),
    "postprocess": Key(_step("postprocess"), names_file="file"),
    "tensorrt": Key(_tensorrt),
    "onnxruntime": Key(_onnxruntime),
    "queue": Key(_queue),
    "priority_levels": Key(_simple("batching.priority_levels", lambda r, v: _int(r.where, "priority_levels", v, 1))),
    "default_priority_level": Key(_simple("batching.default_priority_level",
                                          lambda r, v: _int(r.where, "default_priority_level", v, 1))),
    "response_cache": Key(_simple("response_cache", lambda r, v: _bool(r.where, "response_cache", v))),
    "allow_nan": Key(_simple("allow_nan", lambda r, v: _bool(r.where, "allow_nan", v))),
    "fil": Key(_simple("fil", lambda r, v: _keys(r.where, "fil", v, ("output",)))),
    "task": Key(_simple("task", lambda r, v: _choice(r.where, "task", v, TEXT_TASKS))),
    "detect": Key(_simple("detect", lambda r, v: _mapping(r.where, "detect", v))),
    "normalize": Key(_simple("normalize", lambda r, v: _bool(r.where, "normalize", v))),
    "fuse": Key(_simple("fuse", lambda r, v: _bool(r.where, "fuse", v))),
    "precision": Key(_precisions),
    "calibration": Key(_file("calibration", "precision.calibration"), names_file="value"),
    "precision_gate": Key(_gate),
    "replace": Key(_simple("precision.replace_fp32", lambda r, v: _bool(r.where, "replace", v))),
}


def parse(raw: Any, where: str, base: Path, allowed: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Validate one sidecar mapping; returns the settings it sets, ``group.field`` for nested ones."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BuildError(f"{where}: must be a mapping of settings, got {type(raw).__name__}")
    reader = _Reader(where, base, tuple(allowed))
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in KEYS:
            raise BuildError(f"{where}: unknown key {show(key)} (allowed: {', '.join(KEYS)})")
        values.update(KEYS[key].parse(reader, value))
    if values.get("precision.replace_fp32") and len(values.get("precision.reduced", ())) != 1:
        raise BuildError(f"{where}: 'replace: true' needs exactly one reduced 'precision' (int8 or fp16) to replace FP32 with")
    return values


def named_files(raw: Any, base: Path) -> set[Path]:
    """The files a raw sidecar block names (samples, labels, calibration rows, step code): these
    are not models. Read from KEYS, so a new file key is excluded from discovery too."""
    found = set()
    if not isinstance(raw, dict):
        return found
    for key, value in raw.items():
        spec = KEYS.get(key)
        if spec is None or spec.names_file is None:
            continue
        named = value if spec.names_file == "value" else (value.get(spec.names_file) if isinstance(value, dict) else None)
        if isinstance(named, str):
            found.add((base / named).resolve())
    return found


def assemble(values: dict[str, Any]) -> Sidecar:
    """A Sidecar from parsed settings: ``group.field`` keys go into their group."""
    groups: dict[str, dict[str, Any]] = {name: {} for name in GROUPS}
    flat = {}
    for key, value in values.items():
        group, _, field = key.partition(".")
        if field:
            groups[group][field] = value
        else:
            flat[key] = value
    return Sidecar(**flat, **{name: GROUPS[name](**fields) for name, fields in groups.items()})


def read_yaml(path: Path) -> Any:
    """A sidecar's YAML, refused before it is built when it could grow without bound: larger than
    MAX_SIDECAR_BYTES, anchors or aliases (a few hundred bytes of them expand to gigabytes), or
    nested deeper than MAX_NESTING."""
    if path.stat().st_size > MAX_SIDECAR_BYTES:
        raise BuildError(f"{path.name}: a sidecar of {path.stat().st_size} bytes is larger than {MAX_SIDECAR_BYTES}")
    try:
        text = path.read_text()
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                line = event.start_mark.line + 1
                raise BuildError(f"{path.name}: YAML anchors and aliases are not allowed in a sidecar (line {line}); write the values out")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_NESTING:
                    raise BuildError(f"{path.name}: nested deeper than {MAX_NESTING} levels (line {event.start_mark.line + 1})")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        return yaml.safe_load(text)
    except UnicodeDecodeError:
        raise BuildError(f"{path.name}: is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise BuildError(f"{path.name}: is not valid YAML{at} ({getattr(exc, 'problem', None) or 'syntax error'})") from None


class FolderSidecars:
    """The sidecars of one input folder: the folder-wide file and each model's own."""

    def __init__(self, folder: Path, allowed: tuple[Path, ...] = ()) -> None:
        self.folder = folder
        self.allowed = tuple(allowed)
        self.defaults: dict[str, Any] = {}
        self.per_model: dict[str, dict[str, Any]] = {}
        path = folder / FOLDER_SIDECAR
        if path.is_file():
            raw = read_yaml(path) or {}
            if not isinstance(raw, dict) or not set(raw) <= {"defaults", "models"}:
                raise BuildError(f"{FOLDER_SIDECAR}: must be a mapping with 'defaults' and/or 'models'")
            self.defaults = parse(raw.get("defaults"), f"{FOLDER_SIDECAR} defaults", folder, self.allowed)
            models = raw.get("models") or {}
            if not isinstance(models, dict):
                raise BuildError(f"{FOLDER_SIDECAR}: 'models' must map model names to settings")
            self.per_model = {name: parse(v, f"{FOLDER_SIDECAR} models.{show(name)}", folder, self.allowed) for name, v in models.items()}

    def refuse_unknown_models(self, names: set[str]) -> None:
        """A ``models:`` key that names no model in the folder is a typo or a stale entry: its
        settings would silently apply to nothing."""
        unknown = sorted((str(k) for k in self.per_model if k not in names), key=str)
        if unknown:
            known = ", ".join(sorted(names)[:8]) or "none"
            raise BuildError(f"{FOLDER_SIDECAR}: 'models.{show(unknown[0])}' names no model in the folder (models: {known})")

    def for_model(self, name: str, own: Path | None) -> Sidecar:
        values = dict(self.defaults)
        values.update(self.per_model.get(name, {}))
        if own is not None:
            values.update(parse(read_yaml(own), own.name, own.parent, self.allowed))
        return assemble(values)


def referenced_files(folder: Path, sidecars: list[Path]) -> set[Path]:
    """Every file the folder's sidecars name (never a model); a sidecar that cannot be read names
    nothing here, and is refused with its reason when its model's sidecar is read."""
    found = set()
    for path in sidecars:
        try:
            raw = read_yaml(path) if path.is_file() else None
        except BuildError:
            continue
        blocks = [raw]
        if isinstance(raw, dict) and path.name == FOLDER_SIDECAR:
            models = raw.get("models")
            blocks = [raw.get("defaults"), *(models.values() if isinstance(models, dict) else ())]
        for block in blocks:
            found |= named_files(block, path.parent)
    return found
