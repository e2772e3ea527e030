"""PyTorch: ``torch.export`` programs (``.pt2``), TorchScript archives and whole pickled ``nn.Module``s.

A ``.pt2`` carries its input shapes and which dimensions are dynamic; TorchScript archives and
pickled modules do not, so their sidecar must give ``inputs``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tritonforge.errors import BuildError
from ..formats.onnx import rename_tensors, save_single_file
from ..formats.torchscript import input_name, output_name
from ..probe import FileProbe, one_line
from tritonforge.sidecar import Sidecar
from tritonforge.repository import DYNAMIC, Signature, TensorSpec, tensor_name
from .base import AdapterBase, by_position

# torch.export specialises a dimension whose example size is 1: trace with 2 rows, and a dynamic
# axis that is not the batch (a sequence) at another size, so the two are not taken for one.
EXAMPLE_ROWS = 2
EXAMPLE_LENGTH = 3


@dataclass
class TorchSource:
    kind: str  # "exported", "scripted" or "module"
    module: Any  # callable taking tensors in order
    inputs: tuple[TensorSpec, ...]  # source names, -1 where dynamic
    program: Any = None  # the ExportedProgram, for .pt2
    keywords: bool = False  # a .pt2 exported with keyword arguments only (as transformers models often are)


class TorchAdapter(AdapterBase):
    framework = "pytorch"
    formats = ("onnx", "torchscript")
    neural = True

    def detect(self, probe: FileProbe) -> bool:
        if probe.path.is_dir():
            return False
        if probe.has_member("/archive_format") or probe.has_member("/constants.pkl"):
            return True
        return probe.is_torch_pickle

    def load(self, probe: FileProbe, sidecar: Sidecar) -> TorchSource:
        import torch

        name = probe.path.name
        if probe.has_member("/archive_format"):
            program = _load_program(probe)
            specs = _exported_inputs(program)
            if sidecar.inputs:
                specs = _with_overrides(name, specs, sidecar)
            if _keyword_only(program):
                return TorchSource("exported", _by_keyword(program.module(), [s.name for s in specs]), specs, program, True)
            return TorchSource("exported", program.module(), specs, program)
        if probe.has_member("/constants.pkl"):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    module = torch.jit.load(str(probe.path), map_location="cpu").eval()
            except Exception as exc:
                raise BuildError(f"{name}: torch.jit cannot load it ({one_line(exc)})") from None
            return TorchSource("scripted", module, _declared_inputs(name, sidecar, "TorchScript archive"))
        module = probe.unpickle()
        if not isinstance(module, torch.nn.Module):
            raise BuildError(f"{name}: holds a {type(module).__name__}, not a torch.nn.Module (a state_dict alone has no architecture)")
        return TorchSource("module", module.eval(), _declared_inputs(name, sidecar, "pickled nn.Module"))

    def convert(self, model: TorchSource, sidecar: Sidecar, fmt: str, dest: Path) -> Signature | None:
        import torch

        example = tuple(torch.from_numpy(_example(spec)) for spec in model.inputs)
        if fmt == "torchscript":
            return self._to_torchscript(model, example, dest)
        proto = self._to_onnx(model, example, sidecar.opset)
        # The exporters name outputs after graph nodes (linear, output_0): use forward's own names.
        rename_tensors(proto, [spec.name for spec in model.inputs], _output_names(model.module, example))
        save_single_file(proto, dest)
        return None

    def _to_onnx(self, model: TorchSource, example: tuple, opset: int):
        import torch

        names = [spec.name for spec in model.inputs]
        batch = torch.export.Dim("batch", min=1, max=65536)
        # Every axis the sidecar (or the program) leaves dynamic stays dynamic in the artifact.
        dynamic = {n: {d: batch if d == 0 else torch.export.Dim(f"{tensor_name(n)}_{d}", min=1, max=65536)
                       for d, size in enumerate(spec.shape) if size == DYNAMIC}
                   for n, spec in zip(names, model.inputs)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if model.kind == "exported":
                    program = model.program
                elif model.kind == "module":
                    program = _export_or_none(model, example, dynamic)
                else:
                    program = None
                if program is not None:
                    # One file: the dynamo exporter otherwise writes weights beside it and records that path.
                    args, kwargs = ((), dict(zip(names, example))) if model.keywords else (example, None)
                    onnx_program = torch.onnx.export(program, args, kwargs=kwargs, dynamo=True, external_data=False,
                                                     opset_version=max(opset, 18), verbose=False)
                    return onnx_program.model_proto
                return _legacy_export(model, example, names, opset)
            except BuildError:
                raise
            except Exception as exc:
                raise BuildError(f"torch.onnx.export failed ({one_line(exc)})") from None

    def _to_torchscript(self, model: TorchSource, example: tuple, dest: Path) -> Signature:
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if model.kind == "scripted":
                scripted = model.module
            else:
                scripted = torch.jit.trace(model.module, example, check_trace=False)
            scripted.save(str(dest))
            with torch.no_grad():
                result = scripted(*example)
        results = _flat_outputs(result)
        varying = _varying_output_axes(model, example)
        inputs = tuple(TensorSpec(input_name(i), s.dtype, s.shape) for i, s in enumerate(model.inputs))
        outputs = tuple(
            TensorSpec(output_name(i), np.dtype(str(r.dtype).removeprefix("torch.")),
                       tuple(DYNAMIC if d in varying[i] else size for d, size in enumerate(r.shape)))
            for i, r in enumerate(results)
        )
        return Signature(inputs, outputs)

    def reference(self, model: TorchSource, inputs: dict[str, np.ndarray], signature: Signature) -> dict[str, np.ndarray]:
        import torch

        ordered = [torch.from_numpy(np.ascontiguousarray(inputs[spec.name])) for spec in signature.inputs]
        with torch.no_grad():
            result = model.module(*ordered)
        return by_position(signature, [r.detach().numpy() for r in _flat_outputs(result)])


def _load_program(probe: FileProbe):
    """``torch.export.load``; a program whose outputs are transformers' ``ModelOutput`` types (a
    model exported as-is) loads once those types are registered, which importing their modules does."""
    import torch

    try:
        return torch.export.load(str(probe.path))
    except Exception as exc:
        first = exc
    modules = _transformers_modules(probe)
    if modules:
        try:
            import importlib

            import transformers  # noqa: F401
            for module in modules:
                importlib.import_module(module)
        except ImportError:
            raise BuildError(f"{probe.path.name}: was exported from a transformers model and answers its output types; "
                             "loading it needs the 'transformers' package (pip install 'tritonforge[text]')") from None
        try:
            return torch.export.load(str(probe.path))
        except Exception as exc:
            first = exc
    raise BuildError(f"{probe.path.name}: torch.export cannot load it ({one_line(first)})") from None


def _keyword_only(program) -> bool:
    """Whether the program was exported with keyword arguments only (``export(model, (), {...})``)."""
    example = getattr(program, "example_inputs", None)
    return bool(example) and not example[0] and bool(example[1])


def _by_keyword(module, names: list[str]):
    """A keyword-only program called as every other source is: its tensors in order."""
    def call(*tensors):
        return module(**dict(zip(names, tensors)))
    return call


def _transformers_modules(probe: FileProbe) -> list[str]:
    """Modules of the transformers classes a .pt2 archive names (bounded read of its JSON members)."""
    import re
    import zipfile

    found: set[str] = set()
    try:
        with zipfile.ZipFile(probe.path) as archive:
            for info in archive.infolist():
                if "/models/" in info.filename and info.filename.endswith(".json"):
                    with archive.open(info) as member:
                        text = member.read(64 << 20).decode("utf-8", "replace")
                    found |= {m.rsplit(".", 1)[0] for m in re.findall(r"transformers\.[A-Za-z_][\w.]*\.[A-Z]\w*", text)}
    except (OSError, zipfile.BadZipFile, EOFError, RuntimeError, ValueError):
        return []  # a damaged archive: torch.export's own refusal says more
    return sorted(found)


def _flat_outputs(result) -> list:
    """forward's answer as a list of tensors: one tensor, a tuple or list, or a dict (in its order)."""
    if isinstance(result, dict):
        return list(result.values())
    if isinstance(result, (list, tuple)):
        return list(result)
    return [result]


def _output_names(module, example: tuple) -> list[str]:
    """'output' for one tensor, 'output_<i>' for a tuple, the keys for a dict."""
    import torch

    with torch.no_grad():
        result = module(*example)
    if isinstance(result, dict):
        names = [tensor_name(str(k)) for k in result]
        if len(set(names)) == len(names):
            return names
    count = len(_flat_outputs(result))
    return ["output"] if count == 1 and not isinstance(result, (list, tuple, dict)) else [f"output_{i}" for i in range(count)]


def _exported_inputs(program) -> tuple[TensorSpec, ...]:
    from torch.export.graph_signature import InputKind

    user = [s.arg.name for s in program.graph_signature.input_specs if s.kind == InputKind.USER_INPUT]
    values = {n.name: n.meta.get("val") for n in program.graph.nodes if n.op == "placeholder"}
    specs = []
    for name in user:
        value = values[name]
        shape = tuple(int(d) if str(d).isdigit() else DYNAMIC for d in value.shape)
        specs.append(TensorSpec(name, np.dtype(str(value.dtype).removeprefix("torch.")), shape))
    return tuple(specs)


def _declared_inputs(name: str, sidecar: Sidecar, what: str) -> tuple[TensorSpec, ...]:
    if not sidecar.inputs:
        raise BuildError(f"{name}: a {what} records no input shapes; give them in the sidecar, e.g. "
                         "inputs: [{name: image, shape: [-1, 3, 224, 224], dtype: float32}]")
    return tuple(TensorSpec(i.name, i.dtype, i.shape) for i in sidecar.inputs)


def _with_overrides(name: str, specs: tuple[TensorSpec, ...], sidecar: Sidecar) -> tuple[TensorSpec, ...]:
    if len(sidecar.inputs) != len(specs):
        raise BuildError(f"{name}: the sidecar gives {len(sidecar.inputs)} inputs, the program takes {len(specs)}")
    return tuple(TensorSpec(o.name, o.dtype, o.shape) for o in sidecar.inputs)


def _example(spec: TensorSpec, grow: int = 0) -> np.ndarray:
    """An example input: the batch at EXAMPLE_ROWS, other dynamic axes at EXAMPLE_LENGTH (plus ``grow``)."""
    shape = tuple((EXAMPLE_ROWS if i == 0 else EXAMPLE_LENGTH) + grow if d == DYNAMIC else d for i, d in enumerate(spec.shape))
    rng = np.random.default_rng(0)
    if spec.dtype.kind == "f":
        return rng.standard_normal(shape).astype(spec.dtype)
    return rng.integers(0, 2, shape).astype(spec.dtype)


def _positional(module, dynamic: dict[str, dict]) -> dict | tuple:
    """torch.export wants dynamic_shapes keyed by forward's own argument names."""
    import inspect

    params = [p for p in inspect.signature(module.forward).parameters if p != "self"]
    return dict(zip(params, dynamic.values())) if len(params) == len(dynamic) else tuple(dynamic.values())


def _export_or_none(model: TorchSource, example: tuple, dynamic: dict):
    """torch.export of a module; None where it pins a dynamic axis that is not the batch (an RNN's
    sequence length: 'Constraints violated ... specialized it to be a constant'), so that the
    TorchScript-based exporter, which keeps the axes the sidecar declares, takes it instead."""
    import torch

    try:
        return torch.export.export(model.module, example, dynamic_shapes=_positional(model.module, dynamic))
    except Exception as exc:
        if "Constraints violated" in str(exc) and any(DYNAMIC in spec.shape[1:] for spec in model.inputs):
            return None
        raise


def _varying_output_axes(model: TorchSource, example: tuple) -> list[set[int]]:
    """Per output, the axes whose size follows the inputs' dynamic axes: the module run with every
    dynamic input axis grown by 2, and the output shapes compared. A TorchScript archive or a
    pickled module says nothing of its outputs' shapes; this asks it."""
    import torch

    grown = tuple(torch.from_numpy(_example(spec, grow=2)) for spec in model.inputs)
    with torch.no_grad():
        first, second = _flat_outputs(model.module(*example)), _flat_outputs(model.module(*grown))
    return [{d for d, (a, b) in enumerate(zip(x.shape, y.shape)) if a != b} for x, y in zip(first, second)]


def _legacy_export(model: TorchSource, example: tuple, names: list[str], opset: int):
    """TorchScript archives cannot go through torch.export; the TorchScript-based exporter takes them."""
    import io

    import onnx
    import torch

    buffer = io.BytesIO()
    varying = _varying_output_axes(model, example)
    outputs = [f"output_{i}" for i in range(len(varying))]
    axes = {n: {d: "batch" if d == 0 else f"{tensor_name(n)}_{d}" for d, size in enumerate(s.shape) if size == DYNAMIC}
            for n, s in zip(names, model.inputs)}
    axes.update({o: {d: "batch" if d == 0 else f"{o}_{d}" for d in varying[i]} for i, o in enumerate(outputs)})
    axes = {name: dims for name, dims in axes.items() if dims}
    torch.onnx.export(model.module, example, buffer, dynamo=False, input_names=names, output_names=outputs,
                      dynamic_axes=axes, opset_version=opset)
    return onnx.load_model_from_string(buffer.getvalue())

