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

A folder may also hold ``tritonforge.yaml`` with ``defaults:`` for every model and ``models:``
keyed by model name; a model's own sidecar wins over both.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

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
class Sidecar:
    format: str | None = None
    device: str | None = None
    instances: int = 1
    inputs: tuple[InputOverride, ...] | None = None
    labels: tuple[str, ...] | None = None
    max_batch_size: int | None = None
    max_queue_delay_microseconds: int = 100
    preferred_batch_size: tuple[int, ...] | None = None
    dynamic_batching: bool = True
    atol: float | None = None
    rtol: float | None = None
    samples: Path | None = None
    sample_rows: int = 8
    opset: int = 17
    preprocess: dict | None = None
    postprocess: dict | None = None
    tensorrt_precision: str = "fp32"  # gpu variant, ONNX: the TensorRT accelerator's precision
    tensorrt_workspace_bytes: int = 1 << 30
    intra_op_threads: int | None = None  # cpu variant, ONNX Runtime; None: the portable default
    inter_op_threads: int | None = None
    graph_level: str | None = None  # ONNX Runtime graph optimisation: basic | extended | disabled
    openvino: bool = False  # cpu variant, ONNX: OpenVINO as cpu_execution_accelerator
    queue: tuple[tuple[str, Any], ...] = ()  # default_queue_policy settings, checked
    priority_levels: int = 0
    default_priority_level: int = 0
    response_cache: bool = False
    precisions: tuple[str, ...] = ()  # reduced-precision entries beside the FP32 one: int8, fp16
    calibration: Path | None = None  # INT8 calibration rows (npz), never the rows that judge the gate
    precision_gate: tuple[tuple[str, float], ...] = ()  # min_agreement / max_error overrides
    replace_fp32: bool = False  # the one reduced precision becomes the FP32 entry's next version


def _int(where: str, key: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BuildError(f"{where}: '{key}' must be an integer >= {minimum}, got {show(value)}")
    return value


def _float(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise BuildError(f"{where}: '{key}' must be a number >= 0, got {show(value)}")
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
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and (d > 0 or d == -1) for d in shape):
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


def _labels(where: str, value: Any, base: Path, allowed: tuple[Path, ...]) -> tuple[str, ...]:
    if isinstance(value, str):
        path = inside(where, "labels", value, base, allowed)
        if not path.is_file():
            raise BuildError(f"{where}: labels file '{value}' does not exist")
        return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if not isinstance(value, list) or not value:
        raise BuildError(f"{where}: 'labels' must be a list of class names or a file path")
    return tuple(str(v) for v in value)


def parse(raw: Any, where: str, base: Path, allowed: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Validate one sidecar mapping; returns the Sidecar fields it sets."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BuildError(f"{where}: must be a mapping of settings, got {type(raw).__name__}")
    parsers = {
        "format": lambda v: {"format": _choice(where, "format", v, FORMATS)},
        "device": lambda v: {"device": _choice(where, "device", v, DEVICES)},
        "instances": lambda v: {"instances": _int(where, "instances", v, 1)},
        "inputs": lambda v: {"inputs": tensor_list(where, v)},
        "labels": lambda v: {"labels": _labels(where, v, base, allowed)},
        "max_batch_size": lambda v: {"max_batch_size": _int(where, "max_batch_size", v)},
        "dynamic_batching": lambda v: _dynamic_batching(where, v),
        "tolerance": lambda v: _tolerance(where, v),
        "samples": lambda v: {"samples": _samples(where, v, base, allowed)},
        "sample_rows": lambda v: {"sample_rows": _int(where, "sample_rows", v, 1)},
        "opset": lambda v: {"opset": _int(where, "opset", v, 7)},
        "preprocess": lambda v: {"preprocess": _step(where, "preprocess", v, base, allowed)},
        "postprocess": lambda v: {"postprocess": _step(where, "postprocess", v, base, allowed)},
        "tensorrt": lambda v: _tensorrt(where, v),
        "onnxruntime": lambda v: _onnxruntime(where, v),
        "queue": lambda v: {"queue": _queue(where, v)},
        "priority_levels": lambda v: {"priority_levels": _int(where, "priority_levels", v, 1)},
        "default_priority_level": lambda v: {"default_priority_level": _int(where, "default_priority_level", v, 1)},
        "response_cache": lambda v: {"response_cache": _bool(where, "response_cache", v)},
        "precision": lambda v: {"precisions": _precisions(where, v)},
        "calibration": lambda v: {"calibration": _samples(where, v, base, allowed, "calibration")},
        "precision_gate": lambda v: {"precision_gate": _gate(where, v)},
        "replace": lambda v: {"replace_fp32": _bool(where, "replace", v)},
    }
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in parsers:
            raise BuildError(f"{where}: unknown key {show(key)} (allowed: {', '.join(parsers)})")
        values.update(parsers[key](value))
    if values.get("replace_fp32") and len(values.get("precisions", ())) != 1:
        raise BuildError(f"{where}: 'replace: true' needs exactly one reduced 'precision' (int8 or fp16) to replace FP32 with")
    return values


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


def _tensorrt(where: str, value: Any) -> dict[str, Any]:
    value = _keys(where, "tensorrt", value, ("precision", "max_workspace_bytes"))
    out: dict[str, Any] = {}
    if "precision" in value:
        out["tensorrt_precision"] = _choice(where, "tensorrt.precision", value["precision"], ("fp32", "fp16"))
    if "max_workspace_bytes" in value:
        out["tensorrt_workspace_bytes"] = _int(where, "tensorrt.max_workspace_bytes", value["max_workspace_bytes"], 1 << 20)
    return out


GRAPH_LEVELS = ("basic", "extended", "disabled")


def _onnxruntime(where: str, value: Any) -> dict[str, Any]:
    value = _keys(where, "onnxruntime", value, ("intra_op_threads", "inter_op_threads", "graph_level", "openvino"))
    out: dict[str, Any] = {}
    for key in ("intra_op_threads", "inter_op_threads"):
        if key in value:
            out[key] = _int(where, f"onnxruntime.{key}", value[key])
    if "graph_level" in value:
        out["graph_level"] = _choice(where, "onnxruntime.graph_level", value["graph_level"], GRAPH_LEVELS)
    if "openvino" in value:
        out["openvino"] = _bool(where, "onnxruntime.openvino", value["openvino"])
    return out


PRECISIONS = ("fp32", "int8", "fp16")


def _precisions(where: str, value: Any) -> tuple[str, ...]:
    """``int8``, ``fp16`` or a list of them: entries built beside the FP32 one (fp32 adds nothing)."""
    items = value if isinstance(value, list) else [value]
    chosen = tuple(_choice(where, "precision", item, PRECISIONS) for item in items)
    return tuple(dict.fromkeys(p for p in chosen if p != "fp32"))


def _gate(where: str, value: Any) -> tuple[tuple[str, float], ...]:
    value = _keys(where, "precision_gate", value, ("min_agreement", "max_error"))
    return tuple((key, _float(where, f"precision_gate.{key}", item)) for key, item in value.items())


def _queue(where: str, value: Any) -> tuple[tuple[str, Any], ...]:
    """Triton's dynamic_batching.default_queue_policy: a full queue or a timed-out request is refused at once."""
    value = _keys(where, "queue", value, ("max_queue_size", "default_timeout_microseconds", "timeout_action",
                                          "allow_timeout_override"))
    out = []
    for key, item in value.items():
        if key == "timeout_action":
            out.append((key, _choice(where, "queue.timeout_action", item, ("reject", "delay"))))
        elif key == "allow_timeout_override":
            out.append((key, _bool(where, "queue.allow_timeout_override", item)))
        else:
            out.append((key, _int(where, f"queue.{key}", item)))
    return tuple(out)


def _step(where: str, key: str, value: Any, base: Path, allowed: tuple[Path, ...]) -> dict:
    if not isinstance(value, dict):
        raise BuildError(f"{where}: '{key}' must be a mapping")
    if "file" in value:  # a user step's code: imported at build time, copied into the repository
        value = {**value, "file": str(inside(where, f"{key}.file", value["file"], base, allowed))}
    return value


def _samples(where: str, value: Any, base: Path, allowed: tuple[Path, ...], key: str = "samples") -> Path:
    path = inside(where, key, value, base, allowed)
    if not path.is_file():
        raise BuildError(f"{where}: {key} file '{value}' does not exist")
    return path


def _dynamic_batching(where: str, value: Any) -> dict[str, Any]:
    if value is False:
        return {"dynamic_batching": False}
    if not isinstance(value, dict):
        raise BuildError(f"{where}: 'dynamic_batching' must be false or a mapping")
    out: dict[str, Any] = {"dynamic_batching": True}
    for key, item in value.items():
        if key == "max_queue_delay_microseconds":
            out[key] = _int(where, f"dynamic_batching.{key}", item)
        elif key == "preferred_batch_size":
            if not isinstance(item, list) or not item:
                raise BuildError(f"{where}: 'dynamic_batching.preferred_batch_size' must be a list of integers")
            out[key] = tuple(_int(where, f"dynamic_batching.{key}", size, 1) for size in item)
        else:
            raise BuildError(f"{where}: unknown key 'dynamic_batching.{key}' (allowed: max_queue_delay_microseconds, preferred_batch_size)")
    return out


def _tolerance(where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not set(value) <= {"atol", "rtol"}:
        raise BuildError(f"{where}: 'tolerance' must be a mapping with atol and/or rtol")
    return {key: _float(where, f"tolerance.{key}", item) for key, item in value.items()}


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

    def for_model(self, name: str, own: Path | None) -> Sidecar:
        values = dict(self.defaults)
        values.update(self.per_model.get(name, {}))
        if own is not None:
            values.update(parse(read_yaml(own), own.name, own.parent, self.allowed))
        return replace(Sidecar(), **values)

