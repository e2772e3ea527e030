"""A user step: a plain Python function from the user's own file, served as a Python-backend model.

The function takes the whole batch (every row of every request Triton hands over at once) as a
dict of numpy arrays keyed by the step's input names, and returns a dict keyed by its output
names, each with the same number of rows. Raising ValueError answers those requests with a 400.

Config parameter ``tritonforge_step`` (JSON)::

    {"file": "user_step.py", "function": "prepare",
     "inputs": ["TEXT"], "outputs": ["input"], "requirements": ["pillow"]}
"""
import importlib.util
import json
import os

import numpy as np

STEP_PARAMETER = "tritonforge_step"


def load_function(folder, spec):
    path = os.path.join(folder, spec["file"])
    module_spec = importlib.util.spec_from_file_location("tritonforge_user_step", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return getattr(module, spec["function"])


def call(function, batch, spec, names=None):
    """Run the user's function on one batch and check what it gives back (``names``: the set of spec's outputs)."""
    rows = len(next(iter(batch.values())))
    result = function(batch)
    if not isinstance(result, dict) or result.keys() != (names or set(spec["outputs"])):
        raise TypeError(f"{spec['function']} must return a dict with keys {spec['outputs']}")
    out = {}
    for name in spec["outputs"]:
        value = np.asarray(result[name])
        if len(value) != rows:
            raise TypeError(f"{spec['function']} returned {len(value)} rows for '{name}', expected {rows}")
        out[name] = value
    return out


class TritonPythonModel:
    def initialize(self, args):
        global pb_utils
        import triton_python_backend_utils as pb_utils

        config = json.loads(args["model_config"])
        self.spec = json.loads(config["parameters"][STEP_PARAMETER]["string_value"])
        folder = os.path.join(args["model_repository"], args["model_version"])
        self.function = load_function(folder, self.spec)  # once, not per request
        self.inputs = self.spec["inputs"]
        self.names = set(self.spec["outputs"])

    def _read(self, request):
        if len(self.inputs) == 1:  # a request carries exactly the step's inputs: with one, no lookup by name
            return {self.inputs[0]: request.inputs()[0].as_numpy()}
        return {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.inputs}

    def execute(self, requests):
        if len(requests) == 1:  # nothing to join or split
            return [self._alone(self._read(requests[0]))]
        batches = [self._read(r) for r in requests]
        first = self.inputs[0]
        counts = [len(b[first]) for b in batches]
        joined = {name: np.concatenate([b[name] for b in batches]) for name in self.inputs}
        try:
            result = call(self.function, joined, self.spec, self.names)
        except Exception:
            # One call for the whole batch: on a bad row, retry each request alone so that only
            # the requests at fault fail.
            return [self._alone(batch) for batch in batches]
        responses, offset = [], 0
        for count in counts:
            end = offset + count
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, v[offset:end]) for n, v in result.items()]))
            offset = end
        return responses

    def _alone(self, batch):
        try:
            result = call(self.function, batch, self.spec, self.names)
        except ValueError as exc:  # the user's function refuses the input: the client's fault
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(_one_line(exc), pb_utils.TritonError.INVALID_ARG))
        except Exception as exc:  # anything else is the step's fault: one line, no traceback
            message = f"{self.spec['function']} failed: {type(exc).__name__}: {_one_line(exc)}"
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INTERNAL))
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, v) for n, v in result.items()])


def _one_line(exc):
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
