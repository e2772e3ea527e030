"""``user``: the user's own function over the whole batch (dict of numpy arrays in, dict out).

It is its own reference: there is no other implementation to compare with.
"""
from __future__ import annotations

import importlib.util
import re
from typing import Any

import numpy as np

from tritonforge.errors import BuildError
from tritonforge.repository import DYNAMIC, STRING, TensorSpec
from tritonforge.sidecar import tensor_list

from .base import Arrays, ModelFacts, Step, StepModel, load_template

STEP_FILE = "user_step.py"  # the user's file, copied beside model.py


class UserStep(Step):
    name = "user"
    role = "either"
    allowed = {"file": None, "function": None, "inputs": None, "outputs": None, "requirements": [], "samples": None}

    def configure(self, where: str, raw: dict, facts: ModelFacts, role: str) -> StepModel:
        settings = self.settings(where, raw)
        if not settings["file"] or not settings["function"]:
            raise BuildError(f"{where}: a user step needs 'file' (a .py beside the model) and 'function'")
        path = facts.folder / settings["file"]
        if not path.is_file():
            raise BuildError(f"{where}: user step file '{settings['file']}' does not exist")
        requirements = [str(r) for r in settings["requirements"] or []]
        missing = [r for r in requirements if importlib.util.find_spec(_module_of(r)) is None]
        if missing:
            raise BuildError(f"{where}: the user step needs {', '.join(missing)}, which is not installed here, so it cannot be verified")
        if role == "preprocess":
            if not settings["inputs"]:
                raise BuildError(f"{where}: a user preprocess step needs 'inputs' (what clients send)")
            inputs, outputs = _tensors(where, "inputs", settings["inputs"]), facts.signature.inputs
        else:
            if not settings["outputs"]:
                raise BuildError(f"{where}: a user postprocess step needs 'outputs' (what clients get)")
            inputs, outputs = facts.signature.outputs, _tensors(where, "outputs", settings["outputs"])
        template = load_template(self.name)
        try:
            template.load_function(str(path.parent), {"file": path.name, "function": settings["function"]})
        except Exception as exc:
            raise BuildError(f"{where}: cannot load {settings['function']} from {settings['file']} ({type(exc).__name__}: {exc})") from None
        step = {"file": STEP_FILE, "function": settings["function"], "inputs": [t.name for t in inputs],
                "outputs": [t.name for t in outputs], "requirements": requirements}
        samples = _samples(where, settings["samples"], inputs) if role == "preprocess" and settings["samples"] else None
        return StepModel(self, role, inputs, outputs, step, files=((STEP_FILE, path),), samples=samples)

    def run(self, module, inputs: Arrays, step: StepModel) -> Arrays:
        _, path = step.files[0]
        function = module.load_function(str(path.parent), {"file": path.name, "function": step.settings["function"]})
        return module.call(function, {name: inputs[name] for name in step.settings["inputs"]}, step.settings)


def _tensors(where: str, key: str, raw: Any) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(i.name, i.dtype, i.shape) for i in tensor_list(f"{where} {key}", raw))


def _samples(where: str, raw: Any, inputs: tuple[TensorSpec, ...]) -> Arrays:
    """Inline sample rows for a user preprocess step: {input name: [row, row, ...]}."""
    names = [t.name for t in inputs]
    if not isinstance(raw, dict) or set(raw) != set(names) or not all(isinstance(v, list) and v for v in raw.values()):
        raise BuildError(f"{where}: 'samples' must map each input ({', '.join(names)}) to a list of rows")
    arrays = {}
    for spec in inputs:
        rows = raw[spec.name]
        dtype = object if spec.dtype == STRING else spec.dtype
        value = np.array([r.encode() if isinstance(r, str) else r for r in rows] if dtype is object else rows, dtype=dtype)
        arrays[spec.name] = value.reshape((len(rows),) + tuple(1 if d == DYNAMIC else d for d in spec.shape[1:]))
    if len({len(v) for v in arrays.values()}) != 1:
        raise BuildError(f"{where}: 'samples' lists need the same number of rows")
    return arrays


def _module_of(requirement: str) -> str:
    """The import name of a requirement such as 'Pillow>=10' (a few differ from the package name)."""
    name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].strip().lower()
    return {"pillow": "PIL", "scikit-learn": "sklearn", "opencv-python": "cv2", "pyyaml": "yaml"}.get(name, name.replace("-", "_"))
