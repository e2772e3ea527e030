"""Triton Python-based backend for platform ``pytorch_libtorch`` (CPU, TorchScript).

Tensors follow the libtorch backend's convention: inputs ``<name>__<index>`` (or the forward
method's argument names), outputs ``<name>__<index>`` into the tuple ``forward`` returns.
TorchScript declares no dtypes or shapes, so the config is checked by a trial run at load on
zeros of the configured dtypes and dims (batch 2 when the model batches), with the wording of
Triton's ONNX Runtime backend. Parameters ``INTRA_OP_THREAD_COUNT`` and
``INTER_OP_THREAD_COUNT`` are read as the libtorch backend reads them.
"""
import re

import numpy as np

from tritonforge.serving.backends.common import (
    BatchedModel, ConfigRefused, ModelArgs, _compare_dims, _config_dims, refuse, shape_str,
)
from tritonforge.repository import config_type, numpy_dtype
from tritonforge.repository.dtypes import config_types

_INDEXED = re.compile(r"^.+__(\d+)$")
_TRIAL_TYPES = ("TYPE_FP32", "TYPE_FP64", "TYPE_FP16", "TYPE_INT64", "TYPE_INT32", "TYPE_BOOL")


def _triton_type(tensor) -> str:
    """The config type of a tensor's dtype, or torch's name for one Triton has none for."""
    import torch

    names = {torch.bool: "bool", torch.uint8: "uint8", torch.int8: "int8", torch.int16: "int16",
             torch.int32: "int32", torch.int64: "int64", torch.float16: "float16", torch.float32: "float32",
             torch.float64: "float64"}
    return config_type(names[tensor.dtype]) if tensor.dtype in names else str(tensor.dtype)


class TritonPythonModel:
    def initialize(self, args):
        import torch

        try:
            margs = ModelArgs.parse(args)
            self.margs = margs
            intra = margs.parameter("INTRA_OP_THREAD_COUNT")
            inter = margs.parameter("INTER_OP_THREAD_COUNT")
            if intra is not None and int(intra) > 0:
                torch.set_num_threads(int(intra))
            if inter is not None and int(inter) > 0:
                try:
                    torch.set_num_interop_threads(int(inter))
                except RuntimeError:
                    pass  # only settable before the first parallel work
            self.module = torch.jit.load(margs.artifact("model.pt"), map_location="cpu").eval()
            self.input_order = self._map_inputs()
            self.output_index = self._map_outputs()
            self._trial()
        except Exception as exc:
            raise refuse(exc) from None
        self.model = BatchedModel(margs, self._run)

    # ---- config checks ---------------------------------------------------------------
    def _forward_args(self):
        try:
            return [a.name for a in self.module.forward.schema.arguments[1:]]
        except Exception:
            return []

    def _map_inputs(self):
        m = self.margs
        inputs = m.inputs()
        fwd = self._forward_args()
        if fwd and len(inputs) != len(fwd):
            raise ConfigRefused(
                f"unable to load model '{m.name}', configuration expects {len(inputs)} inputs, "
                f"model provides {len(fwd)}"
            )
        order = [None] * len(inputs)
        allowed = ", ".join([f"INPUT__{i}" for i in range(len(fwd) or len(inputs))] + fwd)
        for io in inputs:
            name, dtype = io["name"], io["data_type"]
            match = _INDEXED.match(name)
            if name in fwd:
                pos = fwd.index(name)
            elif match and int(match.group(1)) < len(order):
                pos = int(match.group(1))
            else:
                raise ConfigRefused(f"unexpected inference input '{name}', allowed inputs are: {allowed}")
            if dtype not in config_types() or dtype == "TYPE_STRING":
                raise ConfigRefused(f"unsupported datatype {dtype} for input '{name}' for model '{m.name}'")
            order[pos] = name
        return order

    def _map_outputs(self):
        index = {}
        for io in self.margs.outputs():
            match = _INDEXED.match(io["name"])
            if not match:
                raise ConfigRefused(
                    f"unexpected inference output '{io['name']}', allowed outputs are: "
                    "names of the form <name>__<index>"
                )
            index[io["name"]] = int(match.group(1))
        return index

    def _zeros(self, io, dtype, batch):
        dims = [1 if d < 0 else d for d in _config_dims(io)]
        shape = ([batch] if self.margs.max_batch_size > 0 else []) + dims
        return np.zeros(shape, dtype=numpy_dtype(dtype))

    def _trial_run(self, dtypes, batch):
        by_name = {io["name"]: io for io in self.margs.inputs()}
        arrays = {n: self._zeros(by_name[n], dtypes[n], batch) for n in self.input_order}
        return self._forward(arrays)

    def _trial(self):
        m = self.margs
        configured = {io["name"]: io["data_type"] for io in m.inputs()}
        batch = 2 if m.max_batch_size > 1 else 1
        try:
            outputs = self._trial_run(configured, batch)
        except Exception as exc:
            self._explain_failure(configured, batch, exc)
        if len(outputs) <= max(self.output_index.values(), default=-1):
            raise ConfigRefused(
                f"unable to load model '{m.name}', configuration expects "
                f"{max(self.output_index.values()) + 1} outputs, model provides {len(outputs)}"
            )
        for io in m.outputs():
            value = outputs[self.output_index[io["name"]]]
            provided = _triton_type(value)
            if provided != io["data_type"]:
                raise ConfigRefused(
                    f"unable to load model '{m.name}', configuration expects datatype "
                    f"{io['data_type']} for output '{io['name']}', model provides {provided}"
                )
            shape = list(value.shape)
            if m.max_batch_size > 0:
                if not shape or shape[0] != batch:
                    raise ConfigRefused(
                        f"model '{m.name}', tensor '{io['name']}': for the model to support batching "
                        "the shape should have at least 1 dimension and the first dimension must be "
                        f"-1; but shape expected by the model is {shape_str(shape)}"
                    )
                shape[0] = -1
            _compare_dims(m.name, io["name"], shape, _config_dims(io), m.max_batch_size, exact=False)

    def _explain_failure(self, configured, batch, exc):
        m = self.margs
        # Which input's dtype would make it run? Then say it as the ONNX Runtime backend does.
        for name in self.input_order:
            for candidate in _TRIAL_TYPES:
                if candidate == configured[name]:
                    continue
                try:
                    self._trial_run({**configured, name: candidate}, batch)
                except Exception:
                    continue
                raise ConfigRefused(
                    f"unable to load model '{m.name}', configuration expects datatype "
                    f"{configured[name]} for input '{name}', model provides {candidate}"
                ) from None
        if batch > 1:
            try:
                self._trial_run(configured, 1)
            except Exception:
                pass
            else:
                raise ConfigRefused(
                    f"model '{m.name}': for the model to support batching the first dimension "
                    "must be -1; but the model runs only on a batch of 1 (max_batch_size "
                    f"{m.max_batch_size})"
                ) from None
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ConfigRefused(
            f"unable to load model '{m.name}', the model fails on inputs of the configured "
            f"dtypes and dims: {first}"
        ) from None

    # ---- execution -------------------------------------------------------------------
    def _forward(self, arrays):
        import torch

        tensors = [torch.from_numpy(np.array(arrays[n])) for n in self.input_order]
        with torch.inference_mode():
            out = self.module(*tensors)
        if isinstance(out, torch.Tensor):
            out = (out,)
        return list(out)

    def _run(self, arrays):
        outputs = self._forward(arrays)
        return {name: outputs[i].numpy() for name, i in self.output_index.items()}

    def execute(self, requests):
        return self.model.execute(requests)
